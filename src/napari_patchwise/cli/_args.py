"""Argument types for the ``patchwise`` subcommands: bad values stop at the parser.

Each function here is an ``argparse`` ``type=``: it turns the text of one command-line
value into the value the command uses, or raises :class:`argparse.ArgumentTypeError`
with a message that says what was wrong and what is allowed. argparse then prints one
line (``patchwise CMD: error: argument --flag: ...``, see :mod:`napari_patchwise.cli.main`)
and exits with status 2, before any file is read or written.

The upper bounds are not arbitrary: :data:`MAX_PIXELS` keeps every patch coordinate
exact in int64 arithmetic and is beyond any slide (BigTIFF allows 2**32 - 1 pixels per
side; scanners write well under 2**20); :data:`MAX_TILE` bounds the memory of one row of
tiles while writing; :data:`MAX_SYNTH_SIDE` bounds the synthetic slide's low-resolution
layout, which is computed in memory (about 2.4 GB at 131072 x 131072).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import PatchwiseError
from ..groups import DEFAULT_TAU
from ..reporting.qupath import CLASS_SCHEMES, DEFAULT_SCHEME
from ..schema import DEFAULT_BORDER_MARGIN

MAX_PIXELS = 2**31 - 1
MAX_TILE = 8192
TILE_MULTIPLE = 16  # the TIFF specification's rule for tile sides
MAX_SYNTH_SIDE = 131_072
MIN_SYNTH_SIDE = 16
# A synthetic slide never compresses below about this many bytes per level-0 pixel on
# disk (image and mask; measured: 1.7 for the slide alone at 4096 x 4096, plus the
# scratch copy while it is written), so a disk with less free space cannot hold it.
SYNTH_MIN_BYTES_PER_PIXEL = 1.0

_SCHEDULER = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9a-f:]+\]|[^\s:/\[\]]+):(\d+)$", re.I)


def _integer(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_range(low: int, high: int | None = None, *, what: str = "") -> Callable[[str], int]:
    """An argparse type accepting whole numbers in ``[low, high]``.

    Parameters
    ----------
    low, high : int
        Inclusive bounds (``high=None``: no upper bound).
    what : str
        Why the bounds are what they are, added to the message (e.g. ``"pixels"``).
    """

    def parse(text: str) -> int:
        value = _integer(text)
        extra = f" ({what})" if what else ""
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small: must be at least {low}{extra}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is too large: must be at most {high}{extra}")
        return value

    return parse


#: Counts and sizes: ``1`` or more (``--workers``, ``--batch-size``, ``--patch-size``...).
positive_int = int_range(1, MAX_PIXELS)
#: ``0`` or more (``--origin``, ``--num-workers``).
non_negative_int = int_range(0, MAX_PIXELS)
#: A side length or position in level-0 pixels.
pixels = int_range(1, MAX_PIXELS, what="pixels")
#: A position in level-0 pixels (``--origin``).
offset = int_range(0, MAX_PIXELS, what="pixels")
#: Random seeds: numpy refuses negative seeds.
seed = int_range(0, 2**63 - 1)
#: Side of a synthetic slide.
synth_side = int_range(
    MIN_SYNTH_SIDE, MAX_SYNTH_SIDE, what="pixels per side: the synthetic layout is built in memory"
)


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` are refused)."""
    return _number(text)


def positive_finite_float(text: str) -> float:
    """A finite number above zero (a pixel size, a learning rate)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number, zero or above (a weight decay, a momentum)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or above")
    return value


def probability(text: str) -> float:
    """A finite number in ``[0, 1]`` (tau, decision thresholds, shares)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is outside [0, 1]")
    return value


def tile_side(text: str) -> int:
    """A TIFF tile / zarr chunk side: a multiple of 16 up to :data:`MAX_TILE`."""
    value = _integer(text)
    if not TILE_MULTIPLE <= value <= MAX_TILE or value % TILE_MULTIPLE:
        raise argparse.ArgumentTypeError(
            f"{value} is not a multiple of {TILE_MULTIPLE} between {TILE_MULTIPLE} and "
            f"{MAX_TILE} (TIFF tiles are multiples of 16; e.g. 512)"
        )
    return value


def scheduler_address(text: str) -> str:
    """A dask scheduler address: ``[protocol://]host:port``, e.g. ``tcp://10.0.0.5:8786``."""
    match = _SCHEDULER.match(str(text).strip())
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a scheduler address: use HOST:PORT or tcp://HOST:PORT "
            "(e.g. tcp://10.0.0.5:8786)"
        )
    return str(text).strip()


def check_free_space(path: str | os.PathLike, needed: float, *, what: str) -> None:
    """Refuse, before writing, an output that cannot fit on its disk.

    Parameters
    ----------
    path : path-like
        The output; the free space of its nearest existing parent folder is checked.
    needed : float
        A lower bound of the bytes the output takes.
    what : str
        What needs the space, for the message (e.g. ``"a 100000 x 100000 slide"``).

    Raises
    ------
    PatchwiseError
        When the disk has less free space than ``needed``.
    """
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # no statistics for this file system: let the write try
        return
    if needed > free:
        raise PatchwiseError(
            f"{what} needs at least {_size(needed)} on disk, {_size(free)} free",
            path=path,
            hint="free space, write elsewhere or make it smaller",
        )


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def attribute_kinds(text: str) -> tuple[str, ...]:
    """``--attributes``: comma-separated kinds of extra per-patch attributes
    (``intensity,border,slide``; docs/attributes.md)."""
    from ..patches.attributes import parse_kinds

    try:
        return parse_kinds(text)
    except PatchwiseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_attribute_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--attributes KINDS`` and ``--border-margin N`` (``stats`` and ``predict``)."""

    p.add_argument(
        "--attributes",
        type=attribute_kinds,
        default=(),
        metavar="KINDS",
        help=f"{what}, comma-separated: intensity (mean_<channel>, std_<channel>), border "
        "(border_fraction: share of tissue pixels within --border-margin of background), "
        "slide (slide_index: 0-based position of the slide in the command line or "
        "manifest); see docs/attributes.md",
    )
    p.add_argument(
        "--border-margin",
        type=pixels,
        default=DEFAULT_BORDER_MARGIN,
        metavar="N",
        help=f"margin of border_fraction in level-0 pixels (default {DEFAULT_BORDER_MARGIN})",
    )


def add_geojson_arguments(p: argparse.ArgumentParser, *, predictions: bool = False) -> None:
    """``--geojson-classes``, ``--errors-only`` and ``--tau``: the QuPath class scheme
    (docs/annotations.md) of a command's ``--geojson`` export."""

    p.add_argument(
        "--geojson-classes",
        choices=CLASS_SCHEMES,
        default=DEFAULT_SCHEME,
        help="what a patch's QuPath class means: tumor/non-tumor (label, the default), the "
        "four label x tissue-size groups (group), or TP/FP/FN/TN (outcome"
        + ("" if predictions else ", needs predictions: patchwise predict")
        + ")",
    )
    p.add_argument(
        "--errors-only",
        action="store_true",
        help="--geojson: only the misclassified patches (FP and FN)"
        + ("" if predictions else "; needs predictions"),
    )
    p.add_argument(
        "--tau",
        type=probability,
        default=DEFAULT_TAU,
        help=f"--geojson group classes: the tissue-ratio threshold ({DEFAULT_TAU})",
    )
