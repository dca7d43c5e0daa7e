"""The list of misclassified patches, most confident mistakes first.

The top :data:`MAX_ROWS` by confidence are listed (a slide can hold hundreds of
thousands of errors; nobody scrolls those and a Qt table of that size is slow to fill);
the line above the list says how many are shown of how many, and "Export errors…"
(:mod:`.errors_export`) saves all of them. Each row gives the patch's position in µm
(pixels without a pixel size) and a *reviewed* tick kept in the slide's state
(``SlideState.reviewed``). Columns sort by clicking their header; choosing a row emits
the patch's table position (the dock centres on it and outlines it). From the canvas,
Alt+Right / Alt+Left step to the next / previous error of the list (:data:`NEXT_KEY`).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...groups import GROUP_NAMES, group_ids, group_names
from ...patches.predictions import TOP_ERRORS, top_errors
from ..dock.state import SlideState
from .errors_export import ErrorsExport

MAX_ROWS = TOP_ERRORS
NO_PREDICTIONS = "load predictions to list misclassified patches"
# the tick and the position before the (wide) group name: in view in a narrow dock
COLUMNS = ("row", "col", "error", "prob", "confidence", "reviewed", "y", "x", "group")
REVIEWED = COLUMNS.index("reviewed")
#: Viewer keys that step through the errors (napari binds neither by default).
NEXT_KEY, PREVIOUS_KEY = "Alt-Right", "Alt-Left"


class NumberItem(QTableWidgetItem):
    """An item that sorts by its number, not its text."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = float(value)
        self.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, NumberItem):
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
    """Misclassified patches; ``patch_chosen`` carries the chosen patch's table position.

    ``reviewed`` is the shown slide's set of reviewed ``(row, col)`` cells: ticking a
    row's *reviewed* box adds its cell, unticking removes it.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(COLUMNS, parent)
        self.n_errors = 0
        self.reviewed: set[tuple[int, int]] = set()
        self.itemChanged.connect(self._on_item_changed)

    def show_errors(
        self,
        positions: np.ndarray,
        confidence: np.ndarray,
        *,
        table,
        prob: np.ndarray,
        label: np.ndarray,
        tissue_ratio: np.ndarray,
        tau: float,
        n_errors: int,
        names: tuple[str, ...] = GROUP_NAMES,
        pixel_size: tuple[float, float] | None = None,
        reviewed: set[tuple[int, int]] | None = None,
    ) -> None:
        """Fill the list (``positions`` index ``table``'s rows and the per-patch arrays;
        ``tissue_ratio`` and ``tau``: the groups' attribute and threshold, ``names`` their
        group names; ``pixel_size`` (y, x) µm gives the positions in µm)."""
        self.n_errors = int(n_errors)
        self.reviewed = set() if reviewed is None else reviewed
        unit = "µm" if pixel_size else "px"
        self.setHorizontalHeaderLabels([{"y": f"y ({unit})", "x": f"x ({unit})"}.get(c, c)
                                        for c in COLUMNS])  # fmt: skip
        scale = pixel_size or (1.0, 1.0)
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.clearContents()
        self.setRowCount(positions.size)
        groups = group_ids(label[positions], tissue_ratio[positions], tau).tolist()
        rows, cols = (table[c].to_numpy()[positions].tolist() for c in ("row", "col"))
        ys, xs = (table[c].to_numpy()[positions] * f for c, f in zip("yx", scale, strict=True))
        entries = zip(positions.tolist(), confidence.tolist(), groups, rows, cols, strict=True)
        for i, (pos, conf, group, r, c) in enumerate(entries):
            tick = QTableWidgetItem()
            tick.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            checked = (r, c) in self.reviewed
            tick.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            cells = (
                NumberItem(r, str(r)),
                NumberItem(c, str(c)),
                QTableWidgetItem("FN" if label[pos] else "FP"),
                NumberItem(prob[pos], f"{prob[pos]:.3f}"),
                NumberItem(conf, f"{conf:.3f}"),
                tick,
                NumberItem(ys[i], f"{ys[i]:,.1f}" if pixel_size else f"{ys[i]:,.0f}"),
                NumberItem(xs[i], f"{xs[i]:,.1f}" if pixel_size else f"{xs[i]:,.0f}"),
                NumberItem(group, names[group]),
            )
            cells[0].setData(Qt.ItemDataRole.UserRole, int(pos))
            for j, item in enumerate(cells):
                self.setItem(i, j, item)
        self.setSortingEnabled(True)
        self.sortItems(COLUMNS.index("confidence"), Qt.SortOrder.DescendingOrder)
        self.blockSignals(False)

    def cell_at(self, row: int) -> tuple[int, int]:
        """Grid ``(row, col)`` of the patch in list row ``row``."""
        return int(self.item(row, 0).text()), int(self.item(row, 1).text())

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != REVIEWED:
            return
        cell = self.cell_at(item.row())
        if item.checkState() == Qt.CheckState.Checked:
            self.reviewed.add(cell)
        else:
            self.reviewed.discard(cell)

    def step(self, delta: int) -> None:
        """Choose the next (``delta=1``) or previous (``-1``) error in the list's order."""
        if self.rowCount() == 0:
            return
        rows = self.selectionModel().selectedRows()
        current = rows[0].row() if rows else (-1 if delta > 0 else self.rowCount())
        self.selectRow(min(max(current + delta, 0), self.rowCount() - 1))
        self.scrollToItem(self.item(self.currentRow(), 0))


class ErrorsPage(QWidget):
    """The "Errors" tab: how many patches are wrong and how many are listed, the list,
    and "Export errors…".

    ``patch_chosen`` carries the table position of the patch chosen in the list.
    """

    patch_chosen = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.state: SlideState | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(NO_PREDICTIONS)
        self.label.setWordWrap(True)
        self.errors = ErrorList()
        self.errors.patch_chosen.connect(self.patch_chosen)
        self.export_button = ErrorsExport(lambda: self.state)
        top = QHBoxLayout()
        top.addWidget(self.label, 1)
        top.addWidget(self.export_button)
        layout.addLayout(top)
        layout.addWidget(self.errors)

    def attach(self, viewer, inspector) -> None:
        """The chosen error pinned in ``inspector`` (outlined on the canvas, after the dock
        centred on it), and Alt+Right / Alt+Left on the canvas step to the next / previous
        listed error."""
        self.patch_chosen.connect(inspector.pin)
        viewer.bind_key(NEXT_KEY, lambda _viewer: self.errors.step(1), overwrite=True)
        viewer.bind_key(PREVIOUS_KEY, lambda _viewer: self.errors.step(-1), overwrite=True)

    def show_state(self, state: SlideState | None) -> None:
        """List ``state``'s misclassified patches at its tau and threshold (top MAX_ROWS)."""
        self.state = state
        self.export_button.setEnabled(
            state is not None and state.data is not None and state.data.prob is not None
        )
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
            table=d.table,
            prob=d.prob,
            label=d.label,
            tissue_ratio=d.attribute_values,
            tau=s.tau,
            n_errors=fp + fn,
            names=group_names(d.attribute),
            pixel_size=state.slide.pixel_size,
            reviewed=state.reviewed,
        )
        self.label.setText(shown_text(positions.size, fp + fn))


def shown_text(shown: int, n_errors: int) -> str:
    """The line above the list: how many errors, how many of them listed."""
    if shown < n_errors:
        return (
            f"{n_errors:,} misclassified patches; the {shown:,} most confident are listed "
            "(Export errors… saves all); click one to go there, Alt+Right / Alt+Left step"
        )
    return f"{n_errors:,} misclassified patches; click one to go there, Alt+Right / Alt+Left step"
