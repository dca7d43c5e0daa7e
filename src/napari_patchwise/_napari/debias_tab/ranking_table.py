"""The Debias tab's attribute ranking: which attribute the model may be relying on.

"Rank attributes" runs :func:`napari_patchwise.analysis.attribute_ranking.rank_attributes` over the
current slide's patches with a prediction, in a background job: every numeric attribute
column of the table, plus the per-channel mean/std intensity and the border fraction,
computed chunk by chunk when the table lacks them (:mod:`napari_patchwise.patches.attributes`).
Each attribute is scored by its worst-group accuracy gap at the threshold where the gap
is largest, beside its noise floor (the 95th percentile of that largest gap over 100
seeded shuffles of the attribute: what an attribute with as many values finds by chance)
and whether the gap is above it; the table is ordered by the gap's excess over the floor
(docs/attributes.md). Clicking a row groups the slide by that attribute at
that threshold (the dock's attribute choice and threshold slider).
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QLabel,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...errors import PatchwiseError
from ..dock import notify
from ..dock.row_table import row_table

COLUMNS = ("attribute", "threshold", "gap", "noise floor", "above noise", "WGA", "worst group")


def ranking_job(model):
    """A ``job(cancel=, progress=)`` ranking the current slide's attributes (read the
    dock's model on the main thread, compute in the worker)."""
    from dataclasses import replace

    from ...patches.table import resolved_settings
    from ..reader.layer_slide import with_mask_layer, with_own_mask

    state = model.require_state()
    data = state.data
    if data is None or data.prob is None or not np.isfinite(data.prob).any():
        raise PatchwiseError(
            f"{state.slide.name}: no predictions to rank attributes by — predict the slide "
            "(Model tab) or retrain a head first"
        )
    base = state.slide
    # the shown table's grid, counted with the form's tissue settings
    patch = replace(state.patch_table(), settings=resolved_settings(state.settings.patch, base))
    mask_layer, mask_map = model.actions.mask_layer(), model.actions.mask_map()
    threshold = state.settings.threshold

    def job(*, cancel, progress):  # noqa: ARG001 - dask stops at Cancel through progress
        from ...analysis.attribute_ranking import rank_attributes
        from ...patches.attributes import attribute_columns
        from ...patches.table import with_attributes

        kinds = [k for k in ("intensity", "border")
                 if not set(attribute_columns([k], base.channel_names)) <= set(patch.frame)]  # fmt: skip
        full = patch.frame
        if kinds:
            slide = (
                with_own_mask(base, mask_map)
                if mask_layer is None
                else with_mask_layer(base, mask_layer, mask_map=mask_map)
            )
            full = with_attributes(patch, slide, kinds, progress=progress).frame
        scored = full[np.isfinite(full["prob"].to_numpy(np.float64))]
        return rank_attributes(scored, threshold=threshold)

    return job


class RankingTable(QWidget):
    """A "Rank attributes" button over the ranking; ``chosen(AttributeRank)`` on a click
    (``model``: the dock's :class:`.model.DockModel`)."""

    chosen = Signal(object)

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.ranks: list = []
        self.job = model.jobs.job("the ranking", "Patchwise: ranking cancelled", parent=self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.rank_button = QPushButton("Rank attributes")
        self.rank_button.setToolTip(
            "score every attribute by the worst-group accuracy gap of the current predictions "
            "(each at its largest-gap threshold), beside its noise floor (95th percentile over "
            "100 shuffles of the attribute); click a row to group by it"
        )
        self.rank_button.clicked.connect(self.rank)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.table = row_table(COLUMNS, min_height=150, stretch_last=True)
        self.table.cellClicked.connect(self._on_clicked)
        self.job.busy_changed.connect(lambda busy: self.rank_button.setEnabled(not busy))
        for widget in (self.rank_button, self.label, self.table):
            layout.addWidget(widget)

    def busy(self) -> bool:
        return self.job.running

    def rank(self) -> bool:
        """Rank the current slide's attributes in a worker (False after a notification)."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return False
        try:
            job = ranking_job(self.model)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        self.label.setText("ranking…")
        self.job.start(job, returned=self.show_ranks, description="Ranking attributes")
        return True

    def show_ranks(self, ranks: list) -> None:
        """Fill the table (largest gap first)."""
        self.ranks = list(ranks)
        self.table.setRowCount(len(self.ranks))
        for i, r in enumerate(self.ranks):
            ok = not math.isnan(r.gap)
            cells = (
                r.attribute,
                f"{r.threshold:.4g}" if ok else "-",
                f"{100 * r.gap:.1f}%" if ok else "-",
                "-" if math.isnan(r.noise_floor) else f"{100 * r.noise_floor:.1f}%",
                ("yes" if r.above_noise else "no") if ok else "-",
                f"{100 * r.wga:.1f}%" if ok else "-",
                (r.worst_group or "-") if ok else "(groups too small)",
            )
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.label.setText(
            f"{len(self.ranks)} attributes, {sum(r.above_noise for r in self.ranks)} above their "
            "noise floor; click one to group the slide by it at its threshold"
        )

    def _on_clicked(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.ranks):
            self.chosen.emit(self.ranks[row])
