"""One module per ``patchwise`` subcommand: ``add_parser(subparsers)`` and ``run(args)``."""
