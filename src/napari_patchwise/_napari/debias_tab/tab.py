"""The dock's "Debias" tab: embed, retrain a head, the WGA curve over the threshold, the ranking.

* :class:`.embed_box.EmbedBox` — features of the open slide (or its cohort) from an
  encoder preset or ``timm:NAME`` with a local weights file, in a background job; the
  store goes into the retrain box.
* :class:`.retrain_box.RetrainBox` — "Retrain head" on a feature store at the dock's
  current attribute and threshold; the slide is then shown with the new head.
* :class:`.threshold_plot.ThresholdCurveCanvas` — worst-group, group-balanced and balanced
  accuracy of the current predictions at every threshold of the groups' attribute
  (:class:`napari_patchwise.analysis.threshold_curve.ThresholdCurve`). The attribute is sorted once
  per shown table (predictions or attribute changed) in a background job; a decision
  threshold change redoes only the O(N) cumulative sums, in the job too, after a pause; the
  marker follows the tau/threshold slider at most every :data:`MARKER_THROTTLE_MS`.
* :class:`.ranking_table.RankingTable` — attributes ranked by their worst-group accuracy
  gap; a click groups the slide by one at its best threshold.
* :class:`.slices_box.SlicesBox` — the slices ``patchwise discover`` found; a click
  outlines one's patches on the slide.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QGroupBox, QVBoxLayout, QWidget

from ..dock import notify
from ..inspect.tabs import single_shot
from .embed_box import EmbedBox
from .ranking_table import RankingTable
from .retrain_box import RetrainBox
from .slices_box import SlicesBox
from .threshold_plot import ThresholdCurveCanvas

MARKER_THROTTLE_MS = 80
CURVE_DEBOUNCE_MS = 150


class DebiasTab(QWidget):
    """The tab's parts (``embed``, ``retrain``, ``curve``, ``ranking``) wired to ``model``
    (the dock's :class:`.model.DockModel`)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.curve_job = model.jobs.job(
            "the threshold curve", "Patchwise: curve cancelled", exclusive=False, parent=self
        )
        self._curve = None  # (PatchData, ThresholdCurve) of the table last sorted
        self._pending = False
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        self.embed = EmbedBox(model)
        root.addWidget(self.embed)
        self.retrain = self.embed.retrain = RetrainBox(model)
        root.addWidget(self.retrain)
        box = QGroupBox("Accuracy against the attribute threshold")
        self.curve = ThresholdCurveCanvas()
        self.curve.setMinimumHeight(240)
        QVBoxLayout(box).addWidget(self.curve)
        root.addWidget(box)
        ranking_box = QGroupBox("Attribute ranking")
        self.ranking = RankingTable(model)
        QVBoxLayout(ranking_box).addWidget(self.ranking)
        root.addWidget(ranking_box, stretch=1)
        slices_box = QGroupBox("Discovered slices")
        self.slices = SlicesBox(model)
        QVBoxLayout(slices_box).addWidget(self.slices)
        root.addWidget(slices_box, stretch=1)
        self.marker_timer = single_shot(self, MARKER_THROTTLE_MS, self._move_marker)
        self.curve_timer = single_shot(self, CURVE_DEBOUNCE_MS, self.refresh_curve)
        model.applied.connect(self.refresh_curve)
        # after the dock has switched slides (it does so in its own slot)
        model.image_chosen.connect(lambda: QTimer.singleShot(0, self.refresh_curve))
        model.settings.events.tau.connect(self._on_tau)
        model.settings.events.threshold.connect(lambda *_: self.curve_timer.start())
        self.curve_job.busy_changed.connect(self._after_curve)
        self.ranking.chosen.connect(self.group_by)

    # -- the curve ------------------------------------------------------------------------
    def refresh_curve(self, *_args) -> None:
        """Compute the current slide's curve at its decision threshold (in the job)."""
        if self.curve_job.running:
            self._pending = True
            return
        state = self.model.current
        data = None if state is None else state.data
        if data is None or data.prob is None:
            self.curve.clear_curve("no predictions yet")
            return
        kept = self._curve if self._curve is not None and self._curve[0] is data else None
        threshold = state.settings.threshold

        def job(*, cancel, progress):  # noqa: ARG001 - O(N log N) once, then O(N)
            curve = kept[1] if kept is not None else _curve_of(data)
            return data, curve, curve.points(threshold)

        self.curve_job.start(job, returned=self._show_curve)

    def _show_curve(self, result) -> None:
        data, curve, points = result
        self._curve = (data, curve)
        state = self.model.current
        if state is None or state.data is not data:
            self._pending = True  # the slide or its table changed meanwhile
            return
        self.curve.set_points(points, data.attribute, state.settings.tau)

    def _after_curve(self, busy: bool) -> None:
        if not busy and self._pending:
            self._pending = False
            self.refresh_curve()

    def _on_tau(self, *_args) -> None:
        if not self.marker_timer.isActive():
            self.marker_timer.start()

    def _move_marker(self) -> None:
        state = self.model.current
        if state is not None:
            self.curve.set_marker(state.settings.tau)

    # -- the ranking ----------------------------------------------------------------------
    def group_by(self, rank) -> None:
        """Group the current slide by ``rank.attribute`` at ``rank.threshold``."""
        state = self.model.current
        if state is None:
            return
        if math.isnan(rank.threshold):
            notify.info(f"Patchwise: {rank.attribute} has no threshold with large enough groups")
            return
        if rank.attribute == state.settings.attribute:
            self.model.settings.tau = float(rank.threshold)  # the bound slider moves
            return
        self.model.group_requested.emit(rank.attribute, float(rank.threshold))

    def busy(self) -> bool:
        retrain = self.retrain
        jobs = (self.embed.job, retrain.train_job, retrain.predict_job, self.ranking.job)
        return any(job.running for job in (*jobs, self.curve_job))


def _curve_of(data):
    """The curve over ``data``'s patches with a prediction."""
    from ...analysis.threshold_curve import ThresholdCurve

    scored = np.isfinite(data.prob)
    return ThresholdCurve(
        data.label[scored],
        data.attribute_values[scored],
        data.prob[scored],
        attribute=data.attribute,
    )
