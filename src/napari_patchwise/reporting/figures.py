"""Figures and tables of the analysis: the paper's Figure 1 and group counts per split.

Pure functions: tables in, numbers or :class:`matplotlib.figure.Figure` out. Figures are
built without pyplot (no global state, safe on headless machines and inside napari's Qt
canvas). The viewer reuses :func:`figure1_data` and :func:`figure1_rows` for its live
histograms and click-to-highlight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import palette
from ..errors import PatchwiseError
from ..groups import DEFAULT_TAU, GROUP_NAMES, group_ids
from ..schema import DEFAULT_THRESHOLD

# (column, class the panel conditions on, x-axis label) of Figure 1's three panels.
#: Histogram bins of each Figure-1 panel (the report and the dock's histograms).
FIGURE1_BINS = 20

FIGURE1_PANELS: tuple[tuple[str, int, str], ...] = (
    ("tumor_ratio", 1, "tumor ratio | y = 1 (tumor)"),
    ("tumor_tissue_ratio", 1, "tumor-to-tissue ratio | y = 1 (tumor)"),
    ("tissue_ratio", 0, "tissue ratio | y = 0 (non-tumor)"),
)
CORRECT_COLOR, INCORRECT_COLOR, ALL_COLOR = (  # the one palette (palette.py)
    palette.CORRECT_COLOR,
    palette.INCORRECT_COLOR,
    palette.ALL_COLOR,
)


@dataclass(frozen=True)
class HistogramPanel:
    """One panel of Figure 1: a histogram of ``column`` over patches of class ``label``.

    ``correct`` and ``incorrect`` count patches per bin (``incorrect`` is all zero when
    there are no predictions); ``fraction_*`` divide them by ``n``, the panel's patches,
    so the stacked bars of a panel sum to 1 (a normalised histogram, as in the paper).
    """

    column: str
    label: int
    title: str
    edges: np.ndarray  # (bins + 1,)
    correct: np.ndarray  # (bins,) int64
    incorrect: np.ndarray  # (bins,) int64
    n: int  # patches in the panel (NaN values excluded)

    @property
    def counts(self) -> np.ndarray:
        return self.correct + self.incorrect

    @property
    def fraction_correct(self) -> np.ndarray:
        return self.correct / self.n if self.n else np.zeros_like(self.correct, dtype=float)

    @property
    def fraction_incorrect(self) -> np.ndarray:
        return self.incorrect / self.n if self.n else np.zeros_like(self.correct, dtype=float)


@dataclass(frozen=True)
class Figure1Data:
    """The numbers behind Figure 1 at one tau and threshold."""

    panels: tuple[HistogramPanel, ...]
    tau: float
    threshold: float
    has_predictions: bool


def bin_indices(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each value in ``bins`` equal-width bins over [0, 1] (1.0 in the last bin).

    NaN values get ``-1``.
    """
    values = np.asarray(values, dtype=np.float64)
    index = np.full(values.shape, -1, dtype=np.intp)
    ok = ~np.isnan(values)
    index[ok] = np.minimum((np.clip(values[ok], 0.0, 1.0) * bins).astype(np.intp), bins - 1)
    return index


def correct_mask(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray | None:
    """Per-patch ``prediction == label`` (``prob >= threshold`` if ``prob`` exists, else
    ``pred``); ``None`` when the table has no predictions."""
    label = table["label"].to_numpy() != 0
    if "prob" in table:
        return (table["prob"].to_numpy() >= threshold) == label
    if "pred" in table:
        return (table["pred"].to_numpy() != 0) == label
    return None


def figure1_data(
    table: pd.DataFrame,
    *,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = FIGURE1_BINS,
) -> Figure1Data:
    """Bin edges and per-bin correct / incorrect counts of Figure 1's three panels.

    Parameters
    ----------
    table : pandas.DataFrame
        Patch table (``label`` and the three ratios; ``prob`` or ``pred`` optional).
    tau : float
        Tissue-size threshold (kept for the tau marker; NaN draws none, for groups by
        another attribute).
    threshold : float
        Decision threshold on ``prob``.
    bins : int
        Equal-width bins over [0, 1].
    """
    _check_table(table)
    if bins < 1:
        raise PatchwiseError(f"bins must be at least 1, got {bins}")
    label = table["label"].to_numpy()
    right = correct_mask(table, threshold)
    edges = np.linspace(0.0, 1.0, bins + 1)
    panels = []
    for column, cls, title in FIGURE1_PANELS:
        index = bin_indices(table[column].to_numpy(), bins)
        keep = (label == cls) & (index >= 0)
        idx = index[keep]
        total = np.bincount(idx, minlength=bins).astype(np.int64)
        if right is None:
            correct = total
        else:
            correct = np.bincount(idx, weights=right[keep], minlength=bins).astype(np.int64)
        panels.append(
            HistogramPanel(
                column=column,
                label=cls,
                title=title,
                edges=edges,
                correct=correct,
                incorrect=total - correct,
                n=int(total.sum()),
            )
        )
    return Figure1Data(tuple(panels), float(tau), float(threshold), right is not None)


def figure1_rows(
    table: pd.DataFrame,
    panel: int,
    bin_index: int,
    *,
    bins: int = FIGURE1_BINS,
    which: str = "all",
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Positions (0-based row numbers) of the patches in bin ``bin_index`` of ``panel``.

    Parameters
    ----------
    panel : int
        0, 1 or 2 (order of :data:`FIGURE1_PANELS`).
    bin_index : int
        Bin in ``0..bins-1``.
    which : {"all", "correct", "incorrect"}
        Restrict to correctly or incorrectly classified patches (needs predictions).
    """
    if not 0 <= panel < len(FIGURE1_PANELS):
        raise PatchwiseError(f"panel must be 0, 1 or 2, got {panel}")
    if not 0 <= bin_index < bins:
        raise PatchwiseError(f"bin must be in 0..{bins - 1}, got {bin_index}")
    column, cls, _ = FIGURE1_PANELS[panel]
    hit = (table["label"].to_numpy() == cls) & (
        bin_indices(table[column].to_numpy(), bins) == bin_index
    )
    if which != "all":
        right = correct_mask(table, threshold)
        if right is None:
            raise PatchwiseError("the table has no predictions (prob or pred)")
        hit &= right if which == "correct" else ~right
    return np.flatnonzero(hit)


def figure1(
    table: pd.DataFrame,
    *,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = FIGURE1_BINS,
    title: str | None = None,
    figsize: tuple[float, float] = (13.0, 3.8),
):
    """The paper's Figure 1: three normalised histograms, bins split by correctness.

    Panels: ``tumor_ratio | y=1``, ``tumor_tissue_ratio | y=1`` (patches without tissue
    excluded) and ``tissue_ratio | y=0`` with ``tau`` marked. Each bar stacks the share
    of correctly (bottom) and incorrectly (top) classified patches when the table has
    predictions.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    data = figure1_data(table, tau=tau, threshold=threshold, bins=bins)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, len(data.panels))
    draw_figure1(axes, data)
    if title:
        fig.suptitle(title)
    return fig


def draw_figure1(axes: Sequence, data: Figure1Data) -> None:
    """Draw :func:`figure1_data` onto three existing matplotlib axes (the viewer's canvas)."""
    for ax, panel in zip(axes, data.panels, strict=True):
        ax.clear()
        left = panel.edges[:-1]
        width = np.diff(panel.edges)
        if data.has_predictions:
            ax.bar(
                left,
                panel.fraction_correct,
                width,
                align="edge",
                color=CORRECT_COLOR,
                edgecolor="white",
                linewidth=0.5,
                label="correct",
            )
            ax.bar(
                left,
                panel.fraction_incorrect,
                width,
                bottom=panel.fraction_correct,
                align="edge",
                color=INCORRECT_COLOR,
                edgecolor="white",
                linewidth=0.5,
                hatch=palette.INCORRECT_HATCH,
                label="incorrect",
            )
        else:
            ax.bar(
                left,
                panel.fraction_correct,
                width,
                align="edge",
                color=ALL_COLOR,
                edgecolor="white",
                linewidth=0.5,
                label="patches",
            )
        if panel.column == "tissue_ratio" and np.isfinite(data.tau):  # NaN: other groups
            ax.axvline(data.tau, color="black", linestyle="--", linewidth=1.2)
            ax.annotate(
                f"tau = {data.tau:g}",
                (data.tau, 0.97),
                xycoords=("data", "axes fraction"),
                xytext=(4, 0),
                textcoords="offset points",
                va="top",
            )
        ax.set_xlim(0, 1)
        top = float((panel.fraction_correct + panel.fraction_incorrect).max(initial=0.0))
        ax.set_ylim(0, max(top * 1.1, 0.05))  # headroom for the legend and tau label
        ax.set_xlabel(panel.title)
        ax.set_ylabel("share of patches")
        ax.set_title(f"n = {panel.n}", fontsize="small")
        ax.legend(
            loc="upper right" if panel.column != "tissue_ratio" else "center right",
            fontsize="small",
            frameon=False,
        )


def group_count_table(
    table: pd.DataFrame, tau: float = DEFAULT_TAU, *, by: str | None = "split"
) -> pd.DataFrame:
    """Patches per tissue-size group, one row per value of ``by`` plus a ``total`` row.

    Columns are :data:`~napari_patchwise.groups.GROUP_NAMES` and ``total``. Without a
    ``by`` column (or ``by=None``) there is a single ``all`` row.
    """
    _check_table(table, ("label", "tissue_ratio"))
    ids = group_ids(table["label"].to_numpy(), table["tissue_ratio"].to_numpy(), tau)
    if by is None or by not in table:
        keys = np.zeros(len(table), dtype=np.intp)
        names = ["all"]
    else:
        codes, uniques = pd.factorize(table[by], sort=True)
        keys, names = codes, [str(u) for u in uniques]
    flat = np.bincount(keys * len(GROUP_NAMES) + ids, minlength=len(names) * len(GROUP_NAMES))
    counts = pd.DataFrame(
        flat.reshape(len(names), len(GROUP_NAMES)), index=names, columns=list(GROUP_NAMES)
    )
    if len(names) > 1:
        counts.loc["total"] = counts.sum(axis=0)
    counts["total"] = counts.sum(axis=1)
    counts.index.name = by if (by is not None and by in table) else None
    return counts


def _check_table(table: pd.DataFrame, required: Sequence[str] | None = None) -> None:
    required = required or ("label", *(c for c, _, _ in FIGURE1_PANELS))
    missing = [c for c in required if c not in table]
    if missing:
        raise PatchwiseError(
            f"table lacks column(s) {', '.join(missing)}",
            hint="use a table written by 'patchwise stats'",
        )


#: Height of one row of the legend strip under an overlay image, in pixels (at 100 dpi).
LEGEND_ROW_PX = 20


def legend_layout(entries: Sequence[tuple[str, str]], width: int) -> tuple[int, int]:
    """Columns of the legend under a ``width``-pixel image, and the strip's height (px)."""
    if not entries:
        return 0, 0
    entry_px = 36 + 6 * max(len(name) for name, _ in entries)  # box, gap, 8-pt text
    ncol = max(1, min(len(entries), width // entry_px))
    rows = -(-len(entries) // ncol)
    return ncol, 8 + LEGEND_ROW_PX * rows


def overlay_with_legend(image: np.ndarray, entries: Sequence[tuple[str, str]], *, dpi: int = 100):
    """An overlay image (already cropped to the slide) with its legend in a strip below.

    The figure is exactly the image's width: the image fills the top, pixel for pixel,
    and one filled box per class (its colour, from :mod:`.palette`) with the class name
    sits in a white strip under it. Saved with ``fig.savefig(path, dpi=dpi)``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3 or 4)
        The viewer's rendering of the slide's extent (``export_figure``).
    entries : sequence of (name, "#RRGGBB")
        The legend of the overlay shown.
    dpi : int
        Dots per inch the figure is sized for (one image pixel per dot).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    height, width = image.shape[:2]
    ncol, strip = legend_layout(entries, width)
    fig = Figure(figsize=(width / dpi, (height + strip) / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0.0, strip / (height + strip), 1.0, height / (height + strip)))
    ax.imshow(image, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if entries:
        handles = [
            Patch(facecolor=colour, edgecolor="none", label=name) for name, colour in entries
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=ncol,
            frameon=False,
            fontsize=8,
            handlelength=1.6,
            handleheight=1.2,
            columnspacing=1.0,
            bbox_to_anchor=(0.5, 0.0),
            borderaxespad=0.2,
        )
    return fig
