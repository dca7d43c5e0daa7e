"""A read-only table whose rows are chosen one at a time (the Debias tab's lists)."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget


def row_table(columns: Sequence[str], *, min_height: int, stretch_last: bool = False):
    """A :class:`QTableWidget` with ``columns``, no rows yet, not editable, one row
    selected at a time, no row numbers, columns sized to their contents."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(stretch_last)
    table.setMinimumHeight(min_height)
    return table
