"""The cohort browser's comparison table: the current slide beside the cohort.

Rows: patches, the four groups' counts (every patch, at tau), then accuracy, BCA and
WGA over the patches with a prediction (at tau and the threshold). Cells are created
once; a slider move only changes their text.
"""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ..groups import GROUP_NAMES
from ..metrics import Evaluation

ROWS: tuple[str, ...] = ("patches", *GROUP_NAMES, "predicted", "accuracy", "BCA", "WGA")
COLUMNS: tuple[str, ...] = ("this slide", "cohort")
NONE = "—"


def fmt(value: float | None) -> str:
    return NONE if value is None or math.isnan(value) else f"{value:.3f}"


def column_texts(counts: Evaluation | None, metrics: Evaluation | None) -> list[str]:
    """The texts of one column (see :data:`ROWS`) from a count and a metric evaluation."""
    if counts is None:
        return [NONE] * len(ROWS)
    texts = [f"{counts.n:,}"] + [f"{int(n):,}" for n in counts.group_counts]
    if metrics is None:
        return [*texts, "0", NONE, NONE, NONE]
    return [*texts, f"{metrics.n:,}", fmt(metrics.accuracy), fmt(metrics.bca), fmt(metrics.wga)]


class CohortSummary(QTableWidget):
    """Two columns, "this slide" and "cohort" (its header names the split shown)."""

    def __init__(self, parent=None) -> None:
        super().__init__(len(ROWS), len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setVerticalHeaderLabels(ROWS)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cells = [[QTableWidgetItem(NONE) for _ in COLUMNS] for _ in ROWS]
        align = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for r, row in enumerate(self.cells):
            for c, item in enumerate(row):
                item.setTextAlignment(align)
                self.setItem(r, c, item)
        height = self.horizontalHeader().height() + 4
        self.setFixedHeight(height + sum(self.rowHeight(r) for r in range(len(ROWS))))

    def set_cohort_title(self, title: str) -> None:
        """Name the cohort column (e.g. ``"cohort (test)"``)."""
        self.horizontalHeaderItem(1).setText(title)

    def show_column(
        self, column: int, counts: Evaluation | None, metrics: Evaluation | None
    ) -> None:
        for row, text in zip(self.cells, column_texts(counts, metrics), strict=True):
            row[column].setText(text)

    def text(self, row: str, column: int) -> str:
        """The text of cell ``row`` (a name of :data:`ROWS`) in ``column`` (tests, scripts)."""
        return self.cells[ROWS.index(row)][column].text()
