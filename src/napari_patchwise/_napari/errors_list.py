"""The list of misclassified patches, most confident mistakes first.

Only the top :data:`MAX_ROWS` by confidence are listed (a slide can hold hundreds of
thousands of errors; nobody scrolls those and a Qt table of that size is slow to fill).
Columns sort by clicking their header; choosing a row emits the patch's table position.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..groups import GROUP_NAMES

MAX_ROWS = 500
COLUMNS = ("row", "col", "error", "prob", "confidence", "group")


def top_errors(
    label: np.ndarray,
    prob: np.ndarray,
    tissue_ratio: np.ndarray,
    *,
    tau: float,
    threshold: float,
    limit: int = MAX_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Table positions of the misclassified patches, most confident first, and confidences.

    Confidence is the probability the model gave its (wrong) answer: ``prob`` for a false
    positive, ``1 - prob`` for a false negative.
    """
    pred = prob >= threshold
    wrong = np.flatnonzero((pred != (label == 1)) & ~np.isnan(prob))
    confidence = np.where(pred[wrong], prob[wrong], 1.0 - prob[wrong])
    if wrong.size > limit:
        keep = np.argpartition(-confidence, limit - 1)[:limit]
        wrong, confidence = wrong[keep], confidence[keep]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order], confidence[order]


class _NumberItem(QTableWidgetItem):
    """An item that sorts by its number, not its text."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = float(value)
        self.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _NumberItem):
            return bool(self.value < other.value)
        return super().__lt__(other)


class ErrorList(QTableWidget):
    """Misclassified patches; ``patch_chosen`` carries the chosen patch's table position."""

    patch_chosen = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setMinimumHeight(220)
        self.itemSelectionChanged.connect(self._on_selection)
        self.n_errors = 0

    def show_errors(
        self,
        positions: np.ndarray,
        confidence: np.ndarray,
        *,
        rows: np.ndarray,
        cols: np.ndarray,
        prob: np.ndarray,
        label: np.ndarray,
        tissue_ratio: np.ndarray,
        tau: float,
        n_errors: int,
    ) -> None:
        """Fill the list (``positions`` index the per-patch arrays)."""
        self.n_errors = int(n_errors)
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.clearContents()
        self.setRowCount(positions.size)
        for i, (pos, conf) in enumerate(zip(positions.tolist(), confidence.tolist(), strict=True)):
            y = int(label[pos])
            group = 2 * y + int(tissue_ratio[pos] >= tau)
            cells = (
                _NumberItem(rows[pos], str(rows[pos])),
                _NumberItem(cols[pos], str(cols[pos])),
                QTableWidgetItem("FN" if y else "FP"),
                _NumberItem(prob[pos], f"{prob[pos]:.3f}"),
                _NumberItem(conf, f"{conf:.3f}"),
                _NumberItem(group, GROUP_NAMES[group]),
            )
            cells[0].setData(Qt.ItemDataRole.UserRole, int(pos))
            for j, item in enumerate(cells):
                self.setItem(i, j, item)
        self.setSortingEnabled(True)
        self.sortItems(COLUMNS.index("confidence"), Qt.SortOrder.DescendingOrder)
        self.blockSignals(False)

    def position_at(self, row: int) -> int:
        """Table position of the patch shown in list row ``row``."""
        return int(self.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def _on_selection(self) -> None:
        rows = self.selectionModel().selectedRows()
        if rows:
            self.patch_chosen.emit(self.position_at(rows[0].row()))
