"""The list of misclassified patches, most confident mistakes first.

Only the top :data:`MAX_ROWS` by confidence are listed (a slide can hold hundreds of
thousands of errors; nobody scrolls those and a Qt table of that size is slow to fill).
Columns sort by clicking their header; choosing a row emits the patch's table position.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..groups import GROUP_NAMES, group_ids, group_names
from ..slide_table import TOP_ERRORS, top_errors
from .state import SlideState

MAX_ROWS = TOP_ERRORS
NO_PREDICTIONS = "load predictions to list misclassified patches"
COLUMNS = ("row", "col", "error", "prob", "confidence", "group")


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


class PatchList(QTableWidget):
    """A read-only list of patches, one per row, whose first cell holds the patch's table
    position (``Qt.UserRole``); choosing a row emits ``patch_chosen`` with it. The Errors
    tab and the Compare tab's fixed/broken list are both one."""

    patch_chosen = Signal(int)

    def __init__(self, columns, parent=None, *, min_height: int = 220) -> None:
        super().__init__(0, len(columns), parent)
        self.setHorizontalHeaderLabels(list(columns))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setMinimumHeight(min_height)
        self.itemSelectionChanged.connect(self._on_selection)

    def position_at(self, row: int) -> int:
        """Table position of the patch shown in list row ``row``."""
        return int(self.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def _on_selection(self) -> None:
        rows = self.selectionModel().selectedRows()
        if rows:
            self.patch_chosen.emit(self.position_at(rows[0].row()))


class ErrorList(PatchList):
    """Misclassified patches; ``patch_chosen`` carries the chosen patch's table position."""

    def __init__(self, parent=None) -> None:
        super().__init__(COLUMNS, parent)
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
        names: tuple[str, ...] = GROUP_NAMES,
    ) -> None:
        """Fill the list (``positions`` index the per-patch arrays; ``tissue_ratio`` and
        ``tau``: the groups' attribute and threshold, ``names`` their group names)."""
        self.n_errors = int(n_errors)
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.clearContents()
        self.setRowCount(positions.size)
        groups = group_ids(label[positions], tissue_ratio[positions], tau).tolist()
        entries = zip(positions.tolist(), confidence.tolist(), groups, strict=True)
        for i, (pos, conf, group) in enumerate(entries):
            y = int(label[pos])
            cells = (
                _NumberItem(rows[pos], str(rows[pos])),
                _NumberItem(cols[pos], str(cols[pos])),
                QTableWidgetItem("FN" if y else "FP"),
                _NumberItem(prob[pos], f"{prob[pos]:.3f}"),
                _NumberItem(conf, f"{conf:.3f}"),
                _NumberItem(group, names[group]),
            )
            cells[0].setData(Qt.ItemDataRole.UserRole, int(pos))
            for j, item in enumerate(cells):
                self.setItem(i, j, item)
        self.setSortingEnabled(True)
        self.sortItems(COLUMNS.index("confidence"), Qt.SortOrder.DescendingOrder)
        self.blockSignals(False)


class ErrorsPage(QWidget):
    """The "Errors" tab: a line saying how many patches are wrong, and the list.

    ``patch_chosen`` carries the table position of the patch chosen in the list.
    """

    patch_chosen = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(NO_PREDICTIONS)
        self.errors = ErrorList()
        self.errors.patch_chosen.connect(self.patch_chosen)
        layout.addWidget(self.label)
        layout.addWidget(self.errors)

    def show_state(self, state: SlideState | None) -> None:
        """List ``state``'s misclassified patches at its tau and threshold (top MAX_ROWS)."""
        if state is None or state.data is None or state.data.prob is None:
            self.errors.setRowCount(0)
            self.label.setText(NO_PREDICTIONS)
            return
        d, s = state.data, state.settings
        positions, confidence = top_errors(d.label, d.prob, threshold=s.threshold, limit=MAX_ROWS)
        _tn, fp, fn, _tp = d.evaluator.evaluate(s.tau, s.threshold).confusion
        self.errors.show_errors(
            positions,
            confidence,
            rows=d.raster.rows,
            cols=d.raster.cols,
            prob=d.prob,
            label=d.label,
            tissue_ratio=d.attribute_values,
            tau=s.tau,
            n_errors=fp + fn,
            names=group_names(d.attribute),
        )
        shown = f" (the {positions.size} most confident)" if positions.size < fp + fn else ""
        self.label.setText(f"{fp + fn:,} misclassified patches{shown}; click one to go there")
