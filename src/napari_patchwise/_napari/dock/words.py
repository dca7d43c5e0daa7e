"""The dock's words and numbers: errors without command-line flags, one number format.

**Errors.** The core's :class:`~napari_patchwise.errors.PatchwiseError` speaks to the
``patchwise`` command's user ("pass --resume ... or choose another --out"). The dock has
buttons and fields, not flags: :func:`dock_line` rebuilds an error's line with its
``dock_hint`` (the same advice in the dock's words) where the core gave one, and names
any flag left in the text by the dock's field for it (:data:`FLAG_WORDS`), so no
notification the dock shows cites a flag.

**Numbers.** :func:`fmt` is the one format of the dock: probabilities, ratios and
thresholds with 3 decimals (``0.879``), accuracies and other metrics as percentages with
1 decimal (``87.9%``), counts with thousands separators; :func:`size_text` writes a
length in pixels with its µm beside it when the slide has a pixel size.
"""

from __future__ import annotations

import math
import re

from ...errors import PatchwiseError

#: A command-line flag, with a placeholder after it (``--weights PATH``) when one follows.
_FLAG = re.compile(r"(?:\b(pass|give) )?`?--([a-z][a-z0-9-]*)`?(?: [A-Z][A-Z_]*(?:\.[a-z]+)?\b)?")
#: The dock's name for each flag a core message may name (others: the flag's words).
FLAG_WORDS: dict[str, str] = {
    "resume": "Resume run",
    "out": "run folder",
    "overwrite": "a new run folder",
    "features": "a feature store (Debias tab)",
    "patch-size": "patch size",
    "mask": "a mask layer",
    "mask-map": "mask map",
    "weights": "weights",
    "freeze-bn": "frozen BatchNorm statistics",
    "lr": "learning rate",
    "tau": "tau",
    "attribute-threshold": "attribute threshold",
    "cache-dir": "a patch cache folder",
    "table": "a patch table",
    "gerne-train-bn": "the command line's gerne-train-bn option",
}
#: What "pass --FLAG" becomes where "set" + the field's name does not fit.
VERB_WORDS: dict[str, str] = {
    "resume": "press Resume run",
    "overwrite": "choose a new run folder",
}
#: The format of each kind of number (:func:`fmt`).
KINDS = ("prob", "percent", "count")
NONE = "—"


def flag_words(text: str) -> str:
    """``text`` with every command-line flag named as the dock's field for it."""

    def word(match: re.Match) -> str:
        verb, flag = match[1], match[2]
        name = FLAG_WORDS.get(flag, flag.replace("-", " "))
        return VERB_WORDS.get(flag, f"set {name}") if verb else name

    return " ".join(_FLAG.sub(word, text).split())


def dock_line(error: BaseException | str) -> str:
    """The one line the dock shows for ``error`` (a :class:`PatchwiseError`, or its text).

    With a ``dock_hint`` the line is rebuilt as the core builds it (path, message, hint),
    the dock's hint in place of the command's; then any flag is named in words.
    """
    if isinstance(error, PatchwiseError) and getattr(error, "dock_hint", None):
        error = PatchwiseError(error.message, path=error.path, hint=error.dock_hint)
    return flag_words(str(error))


def fmt(value: float | int | None, kind: str = "prob") -> str:
    """One number as the dock writes it (``NONE`` for a missing or NaN value).

    ``kind`` is ``"prob"`` (probabilities, ratios, thresholds: ``0.879``), ``"percent"``
    (accuracies and other metrics given as fractions: ``0.8794`` -> ``87.9%``) or
    ``"count"`` (``12,345``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    if kind == "percent":
        return f"{100 * float(value):.1f}%"
    if kind == "count":
        return f"{int(value):,}"
    return f"{float(value):.3f}"


def size_text(pixels: float, pixel_size) -> str:
    """A length in level-0 pixels with its µm beside it: ``64 px (32.0 µm)``.

    ``pixel_size`` is µm per pixel, one number or the slide's ``(y, x)`` (two different
    ones: ``(32.0 x 16.0 µm)``); without one the pixels alone.
    """
    text = f"{pixels:,.0f} px" if float(pixels).is_integer() else f"{pixels:,.1f} px"
    um = um_text(pixels, pixel_size)
    return f"{text} ({um})" if um else text


def um_text(pixels: float, pixel_size) -> str:
    """``32.0 µm`` for a length in pixels (``""`` without a pixel size)."""
    sizes = tuple(pixel_size) if isinstance(pixel_size, tuple | list) else (pixel_size,)
    if not sizes or any(size is None or not size > 0 for size in sizes):
        return ""
    values = dict.fromkeys(f"{pixels * float(size):,.1f}" for size in sizes)  # y, x once
    return " x ".join(values) + " µm"


def explain(widget, text: str) -> None:
    """Give ``widget`` and every control inside it (a labelled slider's slider and number
    box) the tooltip ``text``."""
    from qtpy.QtWidgets import QWidget

    widget.setToolTip(text)
    for child in widget.findChildren(QWidget):
        child.setToolTip(text)
