"""The paper's Figure 1, embedded in the dock and redrawn live.

Three normalised histograms — ``p(tumor_ratio | y=1)``, ``p(tumor_tissue_ratio | y=1)``
and ``p(tissue_ratio | y=0)`` — each bin split into correctly and incorrectly classified
patches; tau is drawn on the tissue-ratio panel. Clicking a bin emits ``bin_clicked``.

Cheap redraws: a bar's total height (its share of the class) does not depend on the
decision threshold, only its correct/incorrect split does. :class:`BinnedScores` sorts
each bin's probabilities once, so the split at any threshold is one binary search per bin
(exact), and the canvas moves the existing bar rectangles and blits them over a cached
background instead of re-rendering the axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt, Signal

from ...palette import INCORRECT_HATCH
from ...reporting.figures import (
    ALL_COLOR,
    CORRECT_COLOR,
    FIGURE1_PANELS,
    INCORRECT_COLOR,
    bin_indices,
)

# Panels, binning and colours are the report's (report.figure1_data), so the dock shows
# exactly the numbers of `patchwise report`; only the live update is done here.
N_BINS = 20
PANELS: tuple[tuple[str, int, str], ...] = FIGURE1_PANELS  # (column, class, title)
TAU_PANEL = 2
NO_PREDICTION_COLOR = ALL_COLOR


@dataclass(frozen=True)
class BinnedScores:
    """One panel's patches grouped by bin, probabilities sorted within each bin.

    Attributes
    ----------
    edges : ndarray, shape (B + 1,)
    positions : ndarray of intp
        Table positions of the panel's patches, grouped by bin (then by probability).
    starts : ndarray of intp, shape (B + 1,)
        ``positions[starts[b]:starts[b + 1]]`` are bin ``b``'s patches.
    sorted_prob : ndarray or None
        Probabilities in the order of ``positions``.
    n_class : int
        Patches of the panel's class (with a finite value), the normaliser.
    """

    edges: np.ndarray
    positions: np.ndarray
    starts: np.ndarray
    sorted_prob: np.ndarray | None
    n_class: int

    @classmethod
    def build(
        cls,
        values: np.ndarray,
        in_class: np.ndarray,
        prob: np.ndarray | None,
        n_bins: int = N_BINS,
    ) -> BinnedScores:
        """Bin ``values`` of the patches where ``in_class`` (NaN values are left out).

        Bins are the report's (:func:`napari_patchwise.reporting.figures.bin_indices`).
        """
        index = bin_indices(np.asarray(values, dtype=np.float64), n_bins)
        keep = np.flatnonzero(in_class & (index >= 0))
        bins = index[keep]
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        if prob is None:
            order = np.argsort(bins, kind="stable")
            sorted_prob = None
        else:
            order = np.lexsort((prob[keep], bins))
            sorted_prob = np.asarray(prob, dtype=np.float64)[keep][order]
        starts = np.searchsorted(bins[order], np.arange(n_bins + 1), side="left")
        return cls(
            edges=edges,
            positions=keep[order],
            starts=starts,
            sorted_prob=sorted_prob,
            n_class=int(keep.size),
        )

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def correct_counts(self, label: int, threshold: float) -> np.ndarray:
        """Correctly classified patches per bin at ``threshold`` (``prob >= t`` = tumor)."""
        if self.sorted_prob is None:
            return self.counts.copy()
        out = np.empty(self.counts.size, dtype=np.int64)
        for b in range(out.size):
            lo, hi = self.starts[b], self.starts[b + 1]
            below = int(np.searchsorted(self.sorted_prob[lo:hi], threshold, side="left"))
            out[b] = (hi - lo - below) if label == 1 else below
        return out

    def members(self, b: int) -> np.ndarray:
        """Table positions of bin ``b``'s patches."""
        return self.positions[self.starts[b] : self.starts[b + 1]]


class Figure1Canvas(FigureCanvasQTAgg):
    """Three linked histograms; ``bin_clicked(panel, bin)`` (``-1, -1`` clears)."""

    bin_clicked = Signal(int, int)

    def __init__(self, parent=None) -> None:
        # Fixed margins: constrained layout re-measures every tick label on each full draw.
        self.figure = Figure(figsize=(4.2, 5.4), dpi=90)
        self.figure.subplots_adjust(left=0.17, right=0.97, top=0.95, bottom=0.08, hspace=0.55)
        super().__init__(self.figure)
        self.setParent(parent)
        # The figure paints every pixel: spare Qt repainting the (styled) parents beneath.
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.axes = self.figure.subplots(len(PANELS), 1)
        self.panels: list[BinnedScores] | None = None
        self.labels = [label for _, label, _ in PANELS]
        self._bars: list[tuple] = []
        self._tau_line = None
        self._background = None
        self.selected: tuple[int, int] | None = None
        self.has_predictions = False
        self.mpl_connect("draw_event", self._on_draw)
        self.mpl_connect("button_press_event", self._on_press)
        for ax, (_, _, title) in zip(self.axes, PANELS, strict=True):
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.text(0.5, 0.5, "compute the patch grid", ha="center", transform=ax.transAxes)

    # data -------------------------------------------------------------------------------
    def set_panels(
        self, panels: list[BinnedScores], *, has_predictions: bool, tau: float, threshold: float
    ) -> None:
        """New table: rebuild the axes once (the only full redraw)."""
        self.panels = panels
        self.has_predictions = has_predictions
        self.selected = None
        self._bars = []
        for ax, panel, (_, _, title) in zip(self.axes, panels, PANELS, strict=True):
            ax.clear()
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=8)
            edges = panel.edges
            widths = np.diff(edges)
            share = panel.counts / max(panel.n_class, 1)
            base_color = CORRECT_COLOR if has_predictions else NO_PREDICTION_COLOR
            correct = ax.bar(edges[:-1], share, widths, align="edge", color=base_color)
            wrong = ax.bar(
                edges[:-1], np.zeros_like(share), widths, bottom=share, align="edge",
                color=INCORRECT_COLOR, hatch=INCORRECT_HATCH, edgecolor="white",
            )  # fmt: skip
            for rect in (*correct, *wrong):
                rect.set_animated(True)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, max(float(share.max(initial=0.0)) * 1.1, 1e-3))
            ax.set_ylabel("share of class", fontsize=8)
            self._bars.append((correct, wrong))
        self._tau_line = self.axes[TAU_PANEL].axvline(
            tau, color="black", linestyle="--", linewidth=1.2, animated=True
        )
        self.axes[TAU_PANEL].set_xlabel("tissue ratio (tau dashed)", fontsize=8)
        if has_predictions:
            from matplotlib.patches import Patch

            self.axes[0].legend(
                handles=[
                    Patch(color=CORRECT_COLOR),
                    Patch(facecolor=INCORRECT_COLOR, hatch=INCORRECT_HATCH, edgecolor="white"),
                ],
                labels=["correct", "incorrect"],
                fontsize=7,
                loc="upper right",
            )
        self._apply_threshold(threshold)
        self._background = None
        self.draw_idle()

    def set_view(self, tau: float, threshold: float) -> None:
        """Move the tau line and split the bars at ``threshold``; one blit."""
        if self.panels is None:
            return
        self._tau_line.set_xdata([tau, tau])
        self._apply_threshold(threshold)
        self._blit()

    def set_tau(self, tau: float) -> None:
        if self._tau_line is not None:
            self._tau_line.set_xdata([tau, tau])
            self._blit()

    def set_threshold(self, threshold: float) -> None:
        if self.panels is not None:
            self._apply_threshold(threshold)
            self._blit()

    def select(self, panel: int, b: int) -> None:
        """Outline bin ``b`` of ``panel`` (``-1`` clears)."""
        self.selected = None if panel < 0 else (panel, b)
        for p, (correct, wrong) in enumerate(self._bars):
            for i, (r1, r2) in enumerate(zip(correct, wrong, strict=True)):
                on = self.selected == (p, i)
                for rect in (r1, r2):
                    rect.set_edgecolor("black" if on else "none")
                    rect.set_linewidth(2.0 if on else 0.0)
        self._blit()

    # drawing ----------------------------------------------------------------------------
    def _apply_threshold(self, threshold: float) -> None:
        for panel, label, (correct, wrong) in zip(
            self.panels, self.labels, self._bars, strict=True
        ):
            n = max(panel.n_class, 1)
            good = panel.correct_counts(label, threshold) / n
            total = panel.counts / n
            for r1, r2, g, t in zip(correct, wrong, good, total, strict=True):
                r1.set_height(g)
                r2.set_y(g)
                r2.set_height(t - g)

    def _animated(self):
        for correct, wrong in self._bars:
            yield from correct
            yield from wrong
        if self._tau_line is not None:
            yield self._tau_line

    def _on_draw(self, event) -> None:  # noqa: ARG002 - matplotlib callback signature
        self._background = self.copy_from_bbox(self.figure.bbox)
        self._draw_animated()

    def _draw_animated(self) -> None:
        for artist in self._animated():
            artist.axes.draw_artist(artist)

    def _blit(self) -> None:
        if self._background is None:
            self.draw_idle()
            return
        self.restore_region(self._background)
        self._draw_animated()
        self.blit(self.figure.bbox)

    def _on_press(self, event) -> None:
        if self.panels is None or event.inaxes is None or event.xdata is None:
            return
        p = list(self.axes).index(event.inaxes)
        edges = self.panels[p].edges
        b = int(np.clip(np.searchsorted(edges, event.xdata, side="right") - 1, 0, edges.size - 2))
        if self.selected == (p, b):
            self.bin_clicked.emit(-1, -1)
        else:
            self.bin_clicked.emit(p, b)


def build_panels(table, prob: np.ndarray | None) -> list[BinnedScores]:
    """The three panels of a patch table (O(N log N); run it off the main thread)."""
    label = table["label"].to_numpy()
    scored = np.ones(label.size, bool) if prob is None else ~np.isnan(prob)
    return [
        BinnedScores.build(table[column].to_numpy(dtype=np.float64), (label == cls) & scored, prob)
        for column, cls, _ in PANELS
    ]
