"""Live training curves for the dock's Model tab: loss per step, validation WGA / BCA."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class TrainingCurves(FigureCanvasQTAgg):
    """Training loss per step and validation WGA / BCA per evaluation, redrawn live.

    Lines are updated in place (``set_data``) and drawn with ``draw_idle``, which Qt
    coalesces, so a redraw per yielded batch stays cheap.
    """

    def __init__(self) -> None:
        figure = Figure(figsize=(4.2, 3.4), layout="constrained")
        super().__init__(figure)
        self.loss_axes, self.val_axes = figure.subplots(2, 1, sharex=True)
        (self.loss_line,) = self.loss_axes.plot([], [], color="0.3", lw=1.0, label="train loss")
        (self.wga_line,) = self.val_axes.plot([], [], "o-", color="tab:red", ms=3, label="val WGA")
        (self.bca_line,) = self.val_axes.plot([], [], "s-", color="tab:blue", ms=3, label="val BCA")
        self.loss_axes.set_ylabel("loss")
        self.val_axes.set_ylabel("accuracy")
        self.val_axes.set_xlabel("step")
        self.val_axes.set_ylim(0.0, 1.02)
        self.loss_axes.legend(loc="upper right", fontsize="small")
        self.val_axes.legend(loc="lower right", fontsize="small")
        for axes in (self.loss_axes, self.val_axes):
            axes.grid(alpha=0.3)
        self.clear_curves()

    def clear_curves(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.eval_steps: list[int] = []
        self.wga: list[float] = []
        self.bca: list[float] = []
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def add_eval(self, step: int, wga: float, bca: float) -> None:
        self.eval_steps.append(step)
        self.wga.append(wga)
        self.bca.append(bca)

    def redraw(self) -> None:
        self.loss_line.set_data(self.steps, self.losses)
        self.wga_line.set_data(self.eval_steps, self.wga)
        self.bca_line.set_data(self.eval_steps, self.bca)
        last = max(self.steps[-1] if self.steps else 1, 1)
        self.val_axes.set_xlim(0, last * 1.02)
        if self.losses:
            finite = np.asarray(self.losses)[np.isfinite(self.losses)]
            if finite.size:
                top = float(finite.max())
                self.loss_axes.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)
        self.draw_idle()

    def last_eval_text(self) -> str:
        """`` · val WGA … · BCA …`` of the last evaluation ("" before the first)."""
        if not self.eval_steps:
            return ""
        return f" · val WGA {self.wga[-1]:.3f} · BCA {self.bca[-1]:.3f}"
