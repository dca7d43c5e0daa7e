"""Group counts, per-group accuracy and the summary metrics, with the overlay legends.

Cells are created once and only their text changes on a slider move (a few microseconds).
"""

from __future__ import annotations

import html
import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGridLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...analysis.metrics import Evaluation, group_size_warnings
from ...groups import GROUP_NAMES, N_ATTRIBUTES, group_names
from ..canvas.overlays import LEGENDS
from .words import fmt

COLUMNS = ("group", "n", "share of class", "accuracy")


def legend(kind: str, title: str) -> QWidget:
    """Colour swatches with names (the overlay's legend), two per row."""
    box = QWidget()
    layout = QGridLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setHorizontalSpacing(6)
    layout.setVerticalSpacing(2)
    layout.addWidget(QLabel(f"<b>{title}</b>"), 0, 0)
    for i, (name, color) in enumerate(LEGENDS[kind]):
        row, col = divmod(i, 2)
        swatch = QLabel()
        swatch.setFixedSize(14, 14)
        swatch.setStyleSheet(f"background-color: {color}; border: 1px solid #222;")
        layout.addWidget(swatch, row, 1 + 2 * col)
        layout.addWidget(QLabel(name), row, 2 + 2 * col)
    layout.setColumnStretch(5, 1)
    return box


def _fmt(value: float | None) -> str:
    """An accuracy as the dock writes metrics (:func:`.words.fmt`, a percentage)."""
    return fmt(value, "percent")


class StatsPanel(QWidget):
    """The four groups' n, share of their class and accuracy; accuracy, BCA, WGA, confusion."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.legend_labels = legend("labels", "labels")
        self.legend_groups = legend("groups", "groups")
        self.legend_correctness = legend("correctness", "outcome")
        # The shown overlay's legend is drawn on the canvas (overlay_choice.CanvasLegend);
        # these stay as the dock's record of the names (hidden: a 768 px screen needs the
        # room for the sliders, metrics and tabs).
        self.legends = QWidget()
        legends = QGridLayout(self.legends)
        legends.setContentsMargins(0, 0, 0, 0)
        legends.addWidget(self.legend_labels, 0, 0)
        legends.addWidget(self.legend_groups, 1, 0)
        legends.addWidget(self.legend_correctness, 2, 0)
        self.legends.setVisible(False)
        layout.addWidget(self.legends)
        self.table = QTableWidget(len(GROUP_NAMES), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cells: list[list[QTableWidgetItem]] = []
        for g, name in enumerate(GROUP_NAMES):
            row = [QTableWidgetItem(name)] + [QTableWidgetItem("—") for _ in COLUMNS[1:]]
            for item in row[1:]:
                item.setTextAlignment(
                    int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                )
            for j, item in enumerate(row):
                self.table.setItem(g, j, item)
            self.cells.append(row)
        self.table.resizeColumnsToContents()
        height = self.table.horizontalHeader().height() + 4
        height += sum(self.table.rowHeight(r) for r in range(len(GROUP_NAMES)))
        self.table.setFixedHeight(height)
        layout.addWidget(self.table)
        self.metrics = QLabel("compute the patch grid to see counts")
        self.metrics.setWordWrap(True)
        self.metrics.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.metrics)
        # Empty groups drop out of WGA and tiny ones make it noisy: say so next to it.
        self.group_warning = QLabel()
        self.group_warning.setWordWrap(True)
        self.group_warning.setStyleSheet("color: #e8a33d;")
        self.group_warning.setVisible(False)
        layout.addWidget(self.group_warning)

    def _rename_groups(self, names: tuple[str, ...]) -> None:
        """Another attribute: low/high instead of small/large, in the table and legend."""
        index = {n: i for known in (GROUP_NAMES, group_names("any")) for i, n in enumerate(known)}
        for name, row in zip(names, self.cells, strict=True):
            row[0].setText(name)
        for label in self.legend_groups.findChildren(QLabel):
            if label.text() in index:
                label.setText(names[index[label.text()]])

    def show_evaluation(self, ev: Evaluation | None) -> None:
        if ev is None:
            for row in self.cells:
                for item in row[1:]:
                    item.setText("—")
            self.group_warning.setVisible(False)
            self.metrics.setText("compute the patch grid to see counts")
            return
        class_counts = ev.class_counts
        if self.cells[0][0].text() != ev.group_names[0]:
            self._rename_groups(ev.group_names)
        for g, row in enumerate(self.cells):
            n = int(ev.group_counts[g])
            n_class = int(class_counts[g // N_ATTRIBUTES])
            row[1].setText(f"{n:,}")
            row[2].setText(fmt(n / n_class if n_class else math.nan))  # a ratio
            row[3].setText(_fmt(float(ev.per_group_accuracy[g])))
        self._show_group_warnings(ev)
        if not ev.has_predictions:
            self.metrics.setText(
                f"{ev.n:,} patches · load predictions for accuracy, BCA, WGA and errors"
            )
            return
        tn, fp, fn, tp = ev.confusion
        self.metrics.setText(
            f"accuracy <b>{_fmt(ev.accuracy)}</b> · BCA <b>{_fmt(ev.bca)}</b> · "
            f"WGA <b>{_fmt(ev.wga)}</b> ({ev.worst_group or '—'})<br>"
            f"TN {fmt(tn, 'count')} · FP {fmt(fp, 'count')} · FN {fmt(fn, 'count')} · "
            f"TP {fmt(tp, 'count')}"
        )

    def _show_group_warnings(self, ev: Evaluation) -> None:
        """The empty/tiny groups under WGA (only with predictions: no WGA, no warning)."""
        lines = group_size_warnings(ev.group_counts, ev.group_names) if ev.has_predictions else []
        self.group_warning.setText("<br>".join(f"⚠ {html.escape(line)}" for line in lines))
        self.group_warning.setVisible(bool(lines))
