"""How the dock tells the user something: napari notifications, one line each.

Every part of the dock shows errors and notices through this module (tests replace
``show_error`` / ``show_info`` here to record them). Every line goes through
:func:`.words.dock_line`: the dock's hint where the core gave one, no command-line flags.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning

from ...errors import PatchwiseError
from ..jobs.background import TrainingFailed
from .words import dock_line

#: The dock's answer to an action that needs a slide while none is open.
OPEN_AN_IMAGE = "open an image first (File > Open, or File > Open Sample)"


def one_line(exc: BaseException) -> str:
    """The one notification line for an error from a background job.

    :class:`PatchwiseError` and :class:`TrainingFailed` already are that line; anything
    else is named by its type with its message on one line.
    """
    if isinstance(exc, PatchwiseError | TrainingFailed):
        return dock_line(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"Patchwise: {type(exc).__name__}: {text}"


def error(text: str | BaseException) -> None:
    """Show ``text`` (or an error's :func:`one_line`) as an error notification."""
    show_error(one_line(text) if isinstance(text, BaseException) else dock_line(text))


def warning(text: str) -> None:
    """Show ``text`` as a warning notification."""
    show_warning(dock_line(text))


def info(text: str) -> None:
    """Show ``text`` as an information notification."""
    show_info(dock_line(text))
