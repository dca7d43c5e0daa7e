"""The Debias tab's curve: worst-group and balanced accuracy against the attribute threshold."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ...analysis.threshold_curve import CurvePoints


class ThresholdCurveCanvas(FigureCanvasQTAgg):
    """WGA and group-balanced accuracy at every threshold of the groups' attribute, BCA as
    a flat reference, and the dock's current threshold as a vertical line.

    The lines are updated in place and drawn with ``draw_idle`` (Qt coalesces the draws),
    and only while the canvas is shown: a hidden tab's draw (about 100 ms for a
    constrained-layout figure) waits until the tab is opened, so it never delays the
    viewer while other parts work.
    """

    def __init__(self) -> None:
        figure = Figure(figsize=(4.2, 2.6), layout="constrained")
        super().__init__(figure)
        self.axes = axes = figure.subplots()
        style = {"drawstyle": "steps-pre", "lw": 1.4}
        (self.wga_line,) = axes.plot([], [], color="tab:red", label="worst-group acc.", **style)
        (self.gba_line,) = axes.plot(
            [], [], color="tab:orange", label="group-balanced acc.", **style
        )
        self.bca_line = axes.axhline(math.nan, color="tab:blue", ls="--", lw=1.0, label="BCA")
        self.marker = axes.axvline(math.nan, color="0.15", lw=1.0)
        self.marker_text = axes.text(
            0.01, 0.03, "", transform=axes.transAxes, fontsize="small", va="bottom"
        )
        axes.set_ylim(0.0, 1.02)
        axes.set_ylabel("accuracy")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
        self.points: CurvePoints | None = None
        self._stale = False
        self.clear_curve("no predictions yet")

    def clear_curve(self, message: str = "") -> None:
        """No curve (no predictions): empty lines and ``message`` in the title."""
        self.points = None
        for line in (self.wga_line, self.gba_line):
            line.set_data([], [])
        self.bca_line.set_ydata([math.nan, math.nan])
        self.axes.set_title(message, fontsize="small")
        self.marker_text.set_text("")
        self.redraw()

    def set_points(self, points: CurvePoints, attribute: str, threshold: float) -> None:
        """Draw a new curve (another run, attribute or decision threshold)."""
        self.points = points
        x, wga, gba = points.display()
        self.wga_line.set_data(x, wga)
        self.gba_line.set_data(x, gba)
        self.bca_line.set_ydata([points.bca, points.bca])
        if x.size:
            lo, hi = float(x[0]), float(x[-1])
            pad = 0.02 * (hi - lo) if hi > lo else 0.5
            self.axes.set_xlim(lo - pad, hi + pad)
        shown = np.concatenate([wga, gba, [points.bca]])
        shown = shown[np.isfinite(shown)]
        # from a little below the lowest value: the differences that matter are a few %
        bottom = max(0.0, float(shown.min()) - 0.05) if shown.size else 0.0
        self.axes.set_ylim(math.floor(bottom * 10) / 10, 1.02)
        self.axes.set_xlabel(f"{attribute} threshold")
        self.axes.set_title(f"decision threshold {points.decision_threshold:.3f}", fontsize="small")
        self.set_marker(threshold)

    def set_marker(self, threshold: float) -> None:
        """Mark ``threshold`` and write the WGA there."""
        self.marker.set_xdata([threshold, threshold])
        points = self.points
        k = None if points is None else points.at(threshold)
        if k is not None and np.isfinite(points.wga[k]):
            self.marker_text.set_text(f"at {threshold:.3g}: WGA {points.wga[k]:.3f}")
        else:
            self.marker_text.set_text("")
        self.redraw()

    def redraw(self) -> None:
        """Draw now if shown, else when next shown."""
        if self.isVisible():
            self.draw_idle()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._stale = False
            self.draw_idle()
