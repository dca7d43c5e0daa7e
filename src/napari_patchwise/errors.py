"""User-facing errors.

Every problem caused by the user's input (a missing file, a bad mask, a wrong option)
raises :class:`PatchwiseError` with one line that says which file, what is wrong and
what to do. The CLI prints it without a traceback and exits non-zero; the napari
widgets show it as a notification. A hint that names the command's flags can come with
``dock_hint``, the same advice in the dock's words (its buttons and fields), which the
dock shows instead (``_napari/words.py``).
"""

from __future__ import annotations

from os import PathLike


class PatchwiseError(ValueError):
    """A clear, one-line problem with the user's input."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike | None = None,
        hint: str | None = None,
        dock_hint: str | None = None,
    ):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        self.dock_hint = dock_hint
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}:")
        parts.append(message.rstrip("."))
        text = " ".join(parts)
        if hint:
            text += f" — {hint.rstrip('.')}"
        super().__init__(" ".join(text.split()) + ".")


def first_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception, short enough for a one-line error."""
    text = str(exc).strip().splitlines()
    line = text[0].split(". ")[0].rstrip(".") if text else ""
    name = type(exc).__name__
    line = f"{name}: {line}" if line else name
    return line if len(line) <= 100 else line[:97] + "..."
