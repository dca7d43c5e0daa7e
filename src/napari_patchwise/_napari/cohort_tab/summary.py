"""The cohort browser's tables: the slide list, and the current slide beside the cohort.

:class:`SlideList`: one row per manifest slide (split, patches, tumor patches,
accuracy and WGA at the dock's tau and threshold). :class:`CohortSummary` rows: patches, the four groups' counts (every patch, at tau), then accuracy, BCA and
WGA over the patches with a prediction (at tau and the threshold). Cells are created
once; a slider move only changes their text.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ...analysis.metrics import Evaluation
from ...cohort.manifest import CohortEntry
from ...groups import GROUP_NAMES
from ...training.cohort_summary import SlideSummary
from ..dock import words

ROWS: tuple[str, ...] = ("patches", *GROUP_NAMES, "predicted", "accuracy", "BCA", "WGA")
COLUMNS: tuple[str, ...] = ("this slide", "cohort")
LIST_COLUMNS: tuple[str, ...] = ("slide", "split", "patches", "tumor", "accuracy", "WGA")
LIST_ROWS = (3, 12)  # the slide list shows this many rows at least, at most (then scrolls)
NONE = "—"


def fmt(value: float | None) -> str:
    """A metric as the dock writes them (:func:`.words.fmt`: a percentage)."""
    return words.fmt(value, "percent")


def with_interval(text: str, interval) -> str:
    """``81.2% [70.1%, 88.0%]``: a value and its slide-level interval (when there is one)."""
    if interval is None or text == NONE:
        return text
    return f"{text} [{fmt(interval.low)}, {fmt(interval.high)}]"


def column_texts(
    counts: Evaluation | None, metrics: Evaluation | None, intervals=None
) -> list[str]:
    """The texts of one column (see :data:`ROWS`) from a count and a metric evaluation;
    ``intervals`` (a :class:`~napari_patchwise.analysis.intervals.BootstrapResult`) adds the
    slide-level 95 % intervals of BCA and WGA."""
    if counts is None:
        return [NONE] * len(ROWS)
    texts = [f"{counts.n:,}"] + [f"{int(n):,}" for n in counts.group_counts]
    if metrics is None:
        return [*texts, "0", NONE, NONE, NONE]
    bca, wga = fmt(metrics.bca), fmt(metrics.wga)
    if intervals is not None:
        bca, wga = with_interval(bca, intervals.bca), with_interval(wga, intervals.wga)
    return [*texts, f"{metrics.n:,}", fmt(metrics.accuracy), bca, wga]


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
        self, column: int, counts: Evaluation | None, metrics: Evaluation | None, intervals=None
    ) -> None:
        texts = column_texts(counts, metrics, intervals)
        for row, text in zip(self.cells, texts, strict=True):
            row[column].setText(text)
        tip = (
            "95 % slide-level bootstrap interval: the predicted slides resampled with "
            "replacement, 2,000 draws"
            if intervals is not None
            else "no interval: it needs at least two slides with predictions"
        )
        for name in ("BCA", "WGA"):
            self.cells[ROWS.index(name)][column].setToolTip(tip)

    def text(self, row: str, column: int) -> str:
        """The text of cell ``row`` (a name of :data:`ROWS`) in ``column`` (tests, scripts)."""
        return self.cells[ROWS.index(row)][column].text()


class SlideList(QTableWidget):
    """The manifest's slides, one row each; a click on a row opens the slide."""

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(LIST_COLUMNS), parent)
        self.setHorizontalHeaderLabels(LIST_COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._fit()

    def fill(self, entries: list[CohortEntry]) -> None:
        """One row per slide: its id and split; counts to come."""
        self.setRowCount(len(entries))
        for i, entry in enumerate(entries):
            for j, text in enumerate((entry.slide, entry.split, "…", "…", NONE, NONE)):
                item = QTableWidgetItem(text)
                item.setToolTip(str(entry.image))
                self.setItem(i, j, item)
        self._fit()

    def show_slide(self, i: int, summary: SlideSummary, metrics: Evaluation | None) -> None:
        """Row ``i``: the slide's counts, and accuracy/WGA when it has predictions."""
        texts = (f"{summary.n_patches:,}", f"{summary.n_tumor:,}")
        texts += (NONE, NONE) if metrics is None else (fmt(metrics.accuracy), fmt(metrics.wga))
        for j, text in enumerate(texts, start=2):
            self.item(i, j).setText(text)
        self.item(i, 2).setToolTip(f"{summary.source}: {summary.n_scored:,} predicted")

    def show_error(self, i: int, text: str) -> None:
        """Row ``i`` could not be counted: "error", the message as its tooltip."""
        self.item(i, 2).setText("error")
        self.item(i, 2).setToolTip(text)

    def _fit(self) -> None:
        """As tall as the rows (within :data:`LIST_ROWS`); longer lists scroll."""
        rows = min(max(self.rowCount(), LIST_ROWS[0]), LIST_ROWS[1])
        row_height = self.verticalHeader().defaultSectionSize()
        self.setFixedHeight(self.horizontalHeader().height() + 4 + rows * row_height)
