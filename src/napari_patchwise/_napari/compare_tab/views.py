"""The Compare tab's two views: both runs' metrics side by side, and the changed patches.

Cells of the metrics table are made once; a slider move only changes their text.
The list shows the top :data:`MAX_ROWS` changed patches by probability change.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGridLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ...analysis.compare import COMPARISON_NAMES, side_by_side
from ...analysis.metrics import Evaluation
from ...groups import GROUP_NAMES, group_ids
from ..dock.words import fmt
from ..inspect.errors_list import NumberItem, PatchList
from .data import COMPARE_COLORS, CompareData

MAX_ROWS = 500
ROW_NAMES = (*GROUP_NAMES, "accuracy", "BCA", "WGA", "worst-class accuracy")
LIST_COLUMNS = ("row", "col", "group", "A", "B", "B − A")  # A, B: the runs' prob


def _fmt(value: float) -> str:
    """An accuracy (:func:`.words.fmt`: a percentage)."""
    return fmt(value, "percent")


def _right(item: QTableWidgetItem) -> QTableWidgetItem:
    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
    return item


def class_legend(names: tuple[str, str] = ("A", "B")) -> tuple[QWidget, list[QLabel]]:
    """Swatches of the four comparison classes (their labels follow the runs' names)."""
    box = QWidget()
    layout = QGridLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setHorizontalSpacing(6)
    labels = []
    for k, color in enumerate(COMPARE_COLORS[1:]):
        row, col = divmod(k, 2)
        swatch = QLabel()
        swatch.setFixedSize(14, 14)
        swatch.setStyleSheet(f"background-color: {color}; border: 1px solid #222;")
        label = QLabel(class_name(k, names))
        layout.addWidget(swatch, row, 2 * col)
        layout.addWidget(label, row, 2 * col + 1)
        labels.append(label)
    layout.setColumnStretch(3, 1)
    return box, labels


def class_name(k: int, names: tuple[str, str]) -> str:
    """ "only ERM right" for class 2 with names ("ERM", "GERNE")."""
    text = COMPARISON_NAMES[k]
    return text.replace(" A ", f" {names[0]} ").replace(" B ", f" {names[1]} ")


class SideBySide(QTableWidget):
    """Per-group accuracy, accuracy, BCA, WGA of runs A and B, and B minus A."""

    def __init__(self, parent=None) -> None:
        super().__init__(len(ROW_NAMES), 5, parent)
        self.set_names(("A", "B"))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cells = []
        for r, name in enumerate(ROW_NAMES):
            row = [QTableWidgetItem(name)] + [_right(QTableWidgetItem("—")) for _ in range(4)]
            for j, item in enumerate(row):
                self.setItem(r, j, item)
            self.cells.append(row)
        self.resizeColumnsToContents()
        height = self.horizontalHeader().height() + 4  # as the dock's stats table
        self.setFixedHeight(height + sum(self.rowHeight(r) for r in range(len(ROW_NAMES))))

    def set_names(self, names: tuple[str, str]) -> None:
        self.setHorizontalHeaderLabels(("", "n", names[0], names[1], "B − A"))
        self.horizontalHeaderItem(4).setToolTip(f"{names[1]} minus {names[0]}")

    def show_evaluations(self, ev_a: Evaluation | None, ev_b: Evaluation | None) -> None:
        if ev_a is None or ev_b is None:
            for row in self.cells:
                for item in row[1:]:
                    item.setText("—")
            return
        for row, (_, n, a, b) in zip(self.cells, side_by_side(ev_a, ev_b), strict=True):
            row[1].setText("" if n is None else f"{n:,}")
            row[2].setText(_fmt(a))
            row[3].setText(_fmt(b))
            row[4].setText("—" if math.isnan(b - a) else f"{b - a:+.3f}")


class ChangedPatches(PatchList):
    """Patches fixed (or broken) by B; ``patch_chosen`` carries the patch's table row."""

    def __init__(self, parent=None) -> None:
        super().__init__(LIST_COLUMNS, parent, min_height=200)

    def show_patches(self, data: CompareData, positions: np.ndarray, tau: float) -> None:
        """List ``positions`` (table rows of ``data``), at most :data:`MAX_ROWS`."""
        positions = positions[:MAX_ROWS]
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.clearContents()
        self.setRowCount(positions.size)
        groups = group_ids(data.label[positions], data.tissue_ratio[positions], tau).tolist()
        rows, cols = data.raster.rows, data.raster.cols
        for i, (pos, group) in enumerate(zip(positions.tolist(), groups, strict=True)):
            pa, pb = data.prob_a[pos], data.prob_b[pos]
            cells = (
                NumberItem(rows[pos], str(rows[pos])),
                NumberItem(cols[pos], str(cols[pos])),
                NumberItem(group, GROUP_NAMES[group]),
                NumberItem(pa, fmt(pa)),
                NumberItem(pb, fmt(pb)),
                NumberItem(abs(pb - pa), f"{pb - pa:+.3f}"),
            )
            cells[0].setData(Qt.ItemDataRole.UserRole, int(pos))
            for j, item in enumerate(cells):
                self.setItem(i, j, item)
        self.setSortingEnabled(True)
        self.sortItems(LIST_COLUMNS.index("B − A"), Qt.SortOrder.DescendingOrder)
        self.blockSignals(False)
