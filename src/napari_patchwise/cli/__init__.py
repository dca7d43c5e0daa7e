"""The ``patchwise`` command: one module per subcommand (``add_parser(subparsers)`` and ``run(args)``)."""

from .main import console_main, main

__all__ = ["console_main", "main"]
