"""The patch table's columns and the choices that shape them: one home for each.

A patch table has one row per patch (``grid.patch_stats`` writes it, ``predict`` adds
``prob``/``pred``); see ``docs/numbers.md`` for what each column means. This module holds
names only, so the readers in ``io`` and the computations above them agree without
importing each other.
"""

from __future__ import annotations

#: Where a patch is: enough to draw it and to join predictions onto a table.
GEOMETRY_COLUMNS: tuple[str, ...] = ("slide", "row", "col", "y", "x", "height", "width", "n_pixels")

#: Every column ``patch_stats`` writes, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    *GEOMETRY_COLUMNS,
    "n_tumor",
    "n_healthy",
    "n_tissue",
    "label",
    "tumor_ratio",
    "tissue_ratio",
    "tumor_tissue_ratio",
)

#: What a model adds: the tumor probability and the decision at the run's threshold.
PREDICTION_COLUMNS: tuple[str, ...] = ("prob", "pred")

#: The default decision threshold: ``pred = prob >= DEFAULT_THRESHOLD`` (every
#: ``--threshold`` and ``threshold=`` parameter starts from it).
DEFAULT_THRESHOLD = 0.5

#: What a slide's prediction hands on (to the dock, to a comparison): where each patch
#: is, and its tumor probability.
PREDICTED_PATCH_COLUMNS: tuple[str, ...] = ("slide", "row", "col", "y", "x", "prob")

#: The columns group metrics need (label and the spurious attribute).
METRIC_COLUMNS: tuple[str, ...] = ("label", "tissue_ratio")

#: Integer pixel positions and counts (int64 in every table).
INT_COLUMNS: tuple[str, ...] = (
    "row", "col", "y", "x", "height", "width", "n_pixels", "n_tumor", "n_healthy", "n_tissue",
)  # fmt: skip

#: 0/1 columns, stored as int8.
BINARY_COLUMNS: tuple[str, ...] = ("label", "pred")

#: Ratios and probabilities (float64; ``tumor_tissue_ratio`` is NaN without tissue).
FLOAT_COLUMNS: tuple[str, ...] = ("tumor_ratio", "tissue_ratio", "tumor_tissue_ratio", "prob")

#: Where tissue comes from when a table is computed (``grid.patch_stats``; docs/numbers.md).
TISSUE_MODES: tuple[str, ...] = ("auto", "mask", "intensity")

#: Image background for intensity tissue: dark (fluorescence) or bright (brightfield).
BACKGROUNDS: tuple[str, ...] = ("dark", "bright")

#: Extra per-patch attributes ``patchwise stats --attributes`` adds (docs/attributes.md):
#: per-channel intensity (``mean_<channel>``, ``std_<channel>``), the border fraction and
#: the slide's index.
ATTRIBUTE_KINDS: tuple[str, ...] = ("intensity", "border", "slide")

#: Share of a patch's tissue pixels within ``border_margin`` pixels of background.
BORDER_COLUMN = "border_fraction"

#: The slide's 0-based position in the command line or the manifest (an integer code).
SLIDE_INDEX_COLUMN = "slide_index"

#: Shares of a patch's pixels: every value in [0, 1] (NaN where undefined).
RATIO_COLUMNS: tuple[str, ...] = (
    "tumor_ratio", "tissue_ratio", "tumor_tissue_ratio", BORDER_COLUMN
)  # fmt: skip

#: Default margin of the border fraction, in level-0 pixels (Chebyshev distance).
DEFAULT_BORDER_MARGIN = 16

#: Numeric columns that are never a candidate spurious attribute: where a patch is, what
#: its label is made of, and what a model predicted.
NOT_ATTRIBUTES: tuple[str, ...] = (
    "row", "col", "y", "x", "height", "width", "n_pixels", "n_tumor", "n_healthy",
    "n_tissue", "label", "tumor_ratio", "tumor_tissue_ratio", "prob", "pred",
)  # fmt: skip


def intensity_columns(channel_names) -> tuple[str, ...]:
    """``mean_<name>, std_<name>`` for each channel, in channel order."""
    return tuple(f"{stat}_{name}" for name in channel_names for stat in ("mean", "std"))
