"""The ``patchwise`` command.

Each subcommand lives in its own module under :mod:`napari_patchwise.cli` and
exposes ``add_parser(subparsers)`` and ``run(args) -> int``. Modules are imported only
when listed here; heavy imports (torch, napari) happen inside ``run``.

Bad input raises :class:`~napari_patchwise.errors.PatchwiseError`: printed as one line on
stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import _thread
import argparse
import errno
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .. import __version__
from .._atomic import user_os_error
from ..errors import PatchwiseError

# Order is the order shown in ``patchwise --help``.
COMMANDS: tuple[str, ...] = (
    "synth",
    "convert",
    "stats",
    "split",
    "metrics",
    "embed",
    "discover",
    "train",
    "sweep",
    "predict",
    "report",
    "demo",
    "view",
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, like every other error.

    argparse prints the whole usage block before the message; in a log or a batch job's
    output that buries the one line that matters. The subcommands' parsers inherit the
    class (``add_subparsers`` uses the parent's class).
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="patchwise",
        description="Patch-wise tumor classification on huge multimodal microscopy images, "
        "with tissue-size group robustness.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``patchwise`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0 on success (and for ``--help``); 2 for bad input, a bad flag value included
    (argparse's exit becomes a return); 130 when interrupted. Only a bug raises.
    """
    try:
        # Building the parser imports every command module: a Ctrl-C here is an
        # interrupt like any other, not a traceback.
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, OneLineParser), --help, --version
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("patchwise: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    # A terminated run (SIGTERM) unwinds like Ctrl-C, so atomic writers and temporary
    # directories clean up instead of leaving partial files beside the outputs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with one_line_warnings(args.command):
            return int(args._run(args) or 0)
    except PatchwiseError as exc:
        print(f"patchwise {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # The file system refused (disk full, permission denied, a file vanished): the
        # user's environment, not a bug, so one line naming the file rather than a trace.
        print(f"patchwise {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"patchwise {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Print warnings as ``patchwise COMMAND: warning: message``, one line each.

    Python's default shows the project's source file and line, then the source line
    itself: two lines naming internals a user cannot act on. Only the format changes,
    so whoever records warnings (pytest, ``catch_warnings(record=True)``) still does.
    """

    def one_line(message, *_args, **_kwargs) -> str:
        return f"patchwise {command}: warning: {' '.join(str(message).split())}\n"

    # catch_warnings restores the filters and showwarning, not formatwarning
    previous, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


#: What to do about the file system's refusals the user can fix (by errno).
_OS_HINTS = {
    errno.EROFS: "the file system is read-only: write to a writable folder (a cohort's "
    "patch cache: --cache-dir DIR)",
    errno.ENOSPC: "no space left on the device: free some, or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or write to another disk",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.EPERM: "not permitted: write to a folder you may write to",
    errno.EEXIST: "a file of that name is in the way of a folder: choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
}


def _os_error_line(exc: OSError) -> str:
    """``file: reason — what to do.`` of an ``OSError`` (the user's path, never a temporary)."""

    exc = user_os_error(exc, [])
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    text = f"{' -> '.join(names)}: {reason}" if names else reason
    if exc.errno in _OS_HINTS:
        text += f" — {_OS_HINTS[exc.errno]}"
    return " ".join(text.split()).rstrip(".") + "."


def reraise_lost_interrupts(unraisable) -> None:
    """``sys.unraisablehook`` of the command: a Ctrl-C is never printed and lost.

    A SIGINT that lands while Python runs a callback it cannot raise from (an import
    lock's weakref callback while the parser imports the commands, a finalizer) would be
    printed as "Exception ignored ... KeyboardInterrupt" with a traceback and then
    dropped, so the command ran on. It is delivered to the main thread again instead,
    where it unwinds as any other interrupt; everything else goes to Python's own hook.
    """
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        _thread.interrupt_main()
        return
    sys.__unraisablehook__(unraisable)


def console_main() -> None:
    """Entry point of the installed ``patchwise`` command."""
    sys.unraisablehook = reraise_lost_interrupts  # this process is the command's own
    code = main()
    if code == EXIT_INTERRUPTED:
        # Cleanup already ran while the interrupt unwound. Exit now: CPython can still
        # turn a handled interrupt into death by SIGINT at shutdown when it landed inside
        # an import, which a caller would read as a crash rather than exit code 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
