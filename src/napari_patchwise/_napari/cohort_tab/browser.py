"""The dock's "Cohort" tab: browse the slides of a cohort manifest.

* **Open manifest…** reads the manifest (:func:`~napari_patchwise.cohort.manifest.read_manifest`,
  ``image, mask, split[, slide]``) and lists its slides. Every slide's patch table is
  then counted in a :class:`.jobs.BackgroundJob` (progress bar, Cancel) with the dock's
  grid and tissue settings and mask map — reused from the training patch cache beside
  the manifest when ``patchwise train`` counted it with the same settings, else computed
  and stored there (:func:`~napari_patchwise.training.cohort_summary.cohort_slide_table`). Rows
  fill in as slides finish; a slide that cannot be read is one notification naming it.
* **Load predictions…** attaches a table covering the cohort (a run folder's
  ``predictions.parquet``, ``patchwise predict`` / ``stats`` tables with ``prob``): each
  slide it names gets accuracy and WGA in the list.
* **Choosing a slide** opens it in the viewer and closes the previous one's layers
  (:class:`.cohort_slides.CohortSlideViewer`); its counted table (with ``prob``) goes
  to the dock, so the overlays, sliders, histograms and errors follow.
* The comparison table (:class:`.cohort_summary.CohortSummary`) shows the current
  slide's group counts and metrics beside the cohort's (all splits or one), following
  the dock's tau and threshold sliders (every :data:`REFRESH_MS` at most while dragged;
  each slide evaluated once per refresh in O(log N), :mod:`napari_patchwise.analysis.incremental`).
"""

from __future__ import annotations

import queue
from dataclasses import replace
from pathlib import Path

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...cohort.manifest import SPLITS, CohortEntry, read_manifest
from ...errors import PatchwiseError
from ...patches.table import PatchTable
from ...settings import PatchSettings
from ...training.cohort_summary import (
    SlideSummary,
    attach_predictions,
    cohort_slide_table,
    default_cache_dir,
    pooled,
    pooled_interval,
    predictions_by_slide,
    read_predictions,
    slide_evaluations,
)
from ..dock import notify
from ..dock.state import SlideSettings
from .slides import CohortSlideViewer, show_table, slide_settings
from .summary import CohortSummary, SlideList

ALL_SPLITS = "all splits"
REFRESH_MS = 100
COUNT_CANCELLED = "Patchwise: cohort counting cancelled (counted slides are kept)"
BUSY = "Patchwise: wait for the cohort's patch counts or the slide being opened (or cancel)"
MANIFEST_FILTER = "Cohort manifest (*.csv)"
PREDICTIONS_FILTER = "Prediction tables (*.parquet *.csv)"


# -- worker bodies (run off the GUI thread) -------------------------------------------------
def count_slides(
    entries: list[CohortEntry],
    settings: PatchSettings,
    cache_dir: Path,
    results: queue.SimpleQueue,
    *,
    cancel,  # noqa: ARG001 - progress raises Cancelled once it is set
    progress,
) -> int:
    """Count every slide's patches; put ``(index, SlideSummary | None, error)`` in ``results``."""
    scale = 1000  # progress units per slide, so a slide's chunks show within it
    total = scale * len(entries)
    for i, entry in enumerate(entries):

        def slide_progress(done: int, n: int, _i: int = i) -> None:
            if n:
                progress(_i * scale + (scale * done) // n, total)

        try:
            table, source = cohort_slide_table(
                entry, settings, cache_dir=cache_dir, progress=slide_progress
            )
        except (PatchwiseError, OSError) as exc:
            results.put((i, None, notify.one_line(exc)))
        else:
            summary = SlideSummary.from_table(
                entry.slide, entry.split, table.frame, source, table.grid
            )
            results.put((i, summary, None))
        progress((i + 1) * scale, total)
    return len(entries)


def attach_all(
    path: str | Path,
    summaries: dict[int, SlideSummary],
    *,
    cancel,  # noqa: ARG001 - the job signature; progress raises Cancelled
    progress,
) -> dict[int, SlideSummary]:
    """Read a prediction table and attach it to every counted slide it names."""
    predictions, source = read_predictions(path)
    by_slide = predictions_by_slide(
        predictions, [s.slide for s in summaries.values()], source=source
    )
    out = {}
    for k, (i, s) in enumerate(summaries.items()):
        if s.slide in by_slide:
            table = attach_predictions(s.table, by_slide[s.slide], slide=s.slide, source=source)
            out[i] = SlideSummary.from_table(s.slide, s.split, table, s.source, s.grid)
        progress(k + 1, len(summaries))
    return out


#: The tooltips of the browser's controls, by attribute name.
TIPS = {
    "manifest_edit": "The cohort's manifest: a .csv listing each slide's image, mask and split",
    "open_button": "Choose a cohort manifest and count its slides' patches",
    "predictions_button": "Load a run's predictions of the cohort's slides (predictions.parquet)",
    "cancel_button": "Stop counting the cohort's slides",
    "split_combo": "Which of the cohort's slides the open slide is compared with",
}


class CohortBrowser(QWidget):
    """The Cohort tab: ``model`` is the dock's :class:`.model.DockModel` (the settings,
    the runner; tables go through ``model.actions``), ``viewer`` the napari viewer the
    cohort's slides are opened in.

    ``done`` is emitted when a count or attach job ends (finished, cancelled or failed),
    ``predicted`` once predictions are attached, ``slide_opened(index)`` once a slide is
    in the viewer. Parts: ``manifest_edit``, ``open_button``, ``predictions_button``,
    ``recount_button``, ``cancel_button``, ``progress_bar``, ``status_label``, ``slides``
    (the list), ``split_combo``, ``summary``.
    """

    done = Signal()
    predicted = Signal()
    slide_opened = Signal(int)

    def __init__(self, model, viewer) -> None:
        super().__init__()
        self.model = model
        self.manifest: Path | None = None
        self.entries: list[CohortEntry] = []
        self.summaries: dict[int, SlideSummary] = {}
        self.errors: dict[int, str] = {}
        self.template = SlideSettings()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self.job = model.jobs.job("counting", COUNT_CANCELLED, exclusive=False, parent=self)
        self.job.on_error = self._on_error
        self.slide_viewer = CohortSlideViewer(model, viewer, self.slide_opened.emit, parent=self)
        self.refresh_timer = QTimer(self)
        self.refresh_timer.setSingleShot(True)
        self.refresh_timer.setInterval(REFRESH_MS)
        self.refresh_timer.timeout.connect(self.refresh_metrics)
        self._build_ui()
        self._connect()

    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        buttons = QGridLayout()
        self.manifest_edit = QLineEdit()
        self.manifest_edit.setPlaceholderText("cohort.csv (image, mask, split[, slide])")
        self.open_button = QPushButton("Open manifest…")
        self.predictions_button = QPushButton("Load cohort predictions…")
        self.recount_button = QPushButton("Recount")
        self.recount_button.setToolTip("count again with the dock's grid settings and mask map")
        self.cancel_button = QPushButton("Cancel counting")
        buttons.addWidget(self.manifest_edit, 0, 0, 1, 2)
        buttons.addWidget(self.open_button, 0, 2)
        buttons.addWidget(self.predictions_button, 1, 0)
        buttons.addWidget(self.recount_button, 1, 1)
        buttons.addWidget(self.cancel_button, 1, 2)
        root.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("open a cohort manifest")
        self.status_label.setWordWrap(True)
        root.addWidget(self.progress_bar)
        root.addWidget(self.status_label)
        self.slides = SlideList()
        root.addWidget(self.slides)
        split_row = QHBoxLayout()
        split_row.addWidget(QLabel("compare with the cohort of"))
        self.split_combo = QComboBox()
        self.split_combo.addItems([ALL_SPLITS, *SPLITS])
        for name, tip in TIPS.items():
            getattr(self, name).setToolTip(tip)
        split_row.addWidget(self.split_combo, stretch=1)
        root.addLayout(split_row)
        self.summary = CohortSummary()
        root.addWidget(self.summary)
        root.addStretch(1)
        self._set_busy(False)

    def _connect(self) -> None:
        self.open_button.clicked.connect(self._ask_manifest)
        self.manifest_edit.returnPressed.connect(
            lambda: self.open_manifest(self.manifest_edit.text())
        )
        self.predictions_button.clicked.connect(self._ask_predictions)
        self.recount_button.clicked.connect(self.recount)
        self.cancel_button.clicked.connect(self.cancel)
        self.slide_viewer.job.busy_changed.connect(lambda _busy: self._enable_cancel())
        self.job.busy_changed.connect(self._set_busy)
        self.slides.cellClicked.connect(lambda row, _col: self.open_slide(row))
        self.split_combo.currentIndexChanged.connect(lambda _i: self.refresh_metrics())
        for event in (self.model.settings.events.tau, self.model.settings.events.threshold):
            event.connect(self._schedule_refresh)  # the tau and threshold sliders
        self.model.applied.connect(self.refresh_metrics)

    # -- the manifest and its counts ------------------------------------------------------
    def open_manifest(self, path: str | Path) -> bool:
        """List a manifest's slides and count their patches in the background.

        Uses the dock's grid and tissue settings and mask map. False (after a
        notification naming the file) for a manifest that cannot be read.
        """
        if self.working:  # a slide being opened belongs to the manifest open now
            notify.info(BUSY)
            return False
        try:
            entries = read_manifest(path, require_splits=())
            mask_map = str(self.model.actions.mask_map())
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        self.slide_viewer.close()
        self.manifest, self.entries = Path(path), entries
        self.summaries, self.errors = {}, {}
        self.manifest_edit.setText(str(path))
        self.template = SlideSettings()
        current = self.model.current
        background = None if current is None else current.slide.background
        self.model.actions.read_form(self.template, background)
        # counted as training cuts slides: whole patches
        self.template.patch = replace(self.template.patch, keep_edges=False)
        self.slides.fill(entries)
        self._start_count(self._patch_settings(mask_map))
        return True

    def recount(self) -> bool:
        """Count the open manifest again with the dock's current settings."""
        return self.manifest is not None and self.open_manifest(self.manifest)

    def _patch_settings(self, mask_map: str) -> PatchSettings:
        return replace(self.template.patch, mask_map=mask_map)

    def _start_count(self, settings: PatchSettings) -> None:
        # a queue per count: results a cancelled count still delivers are never read
        entries = list(self.entries)
        results = self._results = queue.SimpleQueue()
        cache_dir = default_cache_dir(self.manifest)

        def job(*, cancel, progress) -> int:
            return count_slides(
                entries, settings, cache_dir, results, cancel=cancel, progress=progress
            )

        self.status_label.setText(f"counting the patches of {len(entries)} slides…")
        self.job.start(
            job,
            returned=lambda _n: self._drain(),
            progress=self._on_progress,
            description=f"Counting patches of {self.manifest.name}",
        )

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self._drain()

    def _drain(self) -> None:
        """Main thread: show the slides the count job has finished."""
        changed = False
        while True:
            try:
                i, summary, error = self._results.get_nowait()
            except queue.Empty:
                break
            changed = True
            if summary is not None:
                self.summaries[i] = summary
            else:
                self.errors[i] = error
                notify.error(error)
        if changed:
            self.refresh_metrics()

    # -- predictions ----------------------------------------------------------------------
    def load_predictions(self, path: str | Path) -> bool:
        """Attach a prediction table (or a run folder's) to the counted slides it names."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return False
        if not self.summaries:
            notify.error("Patchwise: open a cohort manifest (and let it count) first")
            return False
        summaries = dict(self.summaries)

        def job(*, cancel, progress) -> dict[int, SlideSummary]:
            return attach_all(path, summaries, cancel=cancel, progress=progress)

        self.job.start(job, returned=self._on_predictions, description="Attaching predictions")
        return True

    def _on_predictions(self, attached: dict[int, SlideSummary]) -> None:
        self.summaries.update(attached)
        shown = self.slide_viewer.index
        state = self.model.current
        is_shown = state is not None and state.key == self.slide_viewer.key
        if shown in attached and is_shown and self.model.jobs.idle():
            show_table(self.model, state, attached[shown].patch_table())
        self.refresh_metrics()
        self.predicted.emit()

    # -- slides ---------------------------------------------------------------------------
    def open_slide(self, index: int) -> bool:
        """Open cohort slide ``index`` in the viewer (closing the previous one's layers)."""
        if not 0 <= index < len(self.entries):
            return False
        if self.slide_viewer.showing(index):
            return True
        try:
            mask_map = str(self.model.actions.mask_map())
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        settings = slide_settings(self.model, self.template)

        def table_of(i: int = index) -> PatchTable | None:
            summary = self.summaries.get(i)
            return None if summary is None else summary.patch_table()

        self.slides.selectRow(index)
        return self.slide_viewer.open(index, self.entries[index], mask_map, settings, table_of)

    def busy(self) -> bool:  # counting, attaching or opening (not the dock's own jobs)
        return self.working

    working = property(lambda self: self.job.running or self.slide_viewer.job.running)

    # -- showing --------------------------------------------------------------------------
    def _schedule_refresh(self, *_args) -> None:
        if not self.refresh_timer.isActive():
            self.refresh_timer.start()

    def refresh_metrics(self) -> None:
        """Update the slide list and the comparison table at the dock's tau and threshold.

        Each slide is evaluated once (O(log N), prepared in the worker); the columns pool
        those (measured: docs/benchmarks.md, "Cohort browser").
        """
        tau = float(self.model.settings.tau)
        threshold = float(self.model.settings.threshold)
        indices = list(self.summaries)
        summaries = [self.summaries[i] for i in indices]
        evaluations = dict(zip(indices, slide_evaluations(summaries, tau, threshold), strict=True))
        for i, summary in self.summaries.items():
            self.slides.show_slide(i, summary, evaluations[i][1])
        for i, error in self.errors.items():
            self.slides.show_error(i, error)
        self._show_summary(evaluations, tau, threshold)
        self._show_status()

    def _show_summary(self, evaluations: dict, tau: float, threshold: float) -> None:
        shown = evaluations.get(self.slide_viewer.index)
        self.summary.show_column(0, *(shown or (None, None)))
        split = self.split_combo.currentText()
        picked = [i for i in evaluations if split in (ALL_SPLITS, self.entries[i].split)]
        chosen = [evaluations[i] for i in picked]
        self.summary.set_cohort_title("cohort" if split == ALL_SPLITS else f"cohort ({split})")
        if chosen:
            names = [self.entries[i].slide for i in picked]
            interval = pooled_interval(chosen, names)  # 2,000 draws: ~1 ms for 100 slides
            self.summary.show_column(1, *pooled(chosen, tau, threshold), interval)
        else:
            self.summary.show_column(1, None, None)

    def _show_status(self) -> None:
        n, done = len(self.entries), len(self.summaries)
        cached = sum(s.source != "computed" for s in self.summaries.values())
        predicted = sum(s.scored is not None for s in self.summaries.values())
        text = f"{done} of {n} slides counted ({cached} from the training cache)"
        if self.errors:
            text += f", {len(self.errors)} unreadable"
        if predicted:
            text += f"; {predicted} with predictions"
        self.status_label.setText(text)

    def cancel(self) -> None:
        """Stop counting (slides counted so far are kept) and opening a slide."""
        self.job.cancel()
        self.slide_viewer.job.cancel()

    def _enable_cancel(self) -> None:
        self.cancel_button.setEnabled(self.working)

    def _set_busy(self, busy: bool) -> None:
        self._enable_cancel()
        for button in (self.open_button, self.predictions_button, self.recount_button):
            button.setEnabled(not busy)
        if not busy:
            self._drain()
            self.done.emit()

    def _on_error(self, text: str) -> None:
        self.status_label.setText(text)

    # -- dialogs --------------------------------------------------------------------------
    def _ask_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open cohort manifest", "", MANIFEST_FILTER)
        if path:
            self.open_manifest(path)

    def _ask_predictions(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load cohort predictions", "", PREDICTIONS_FILTER
        )
        if path:
            self.load_predictions(path)
