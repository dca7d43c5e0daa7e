"""The Patchwise dock widget: compute the patch grid, tune tau and the threshold, inspect.

Data flow
---------
* **Compute** reads the form into the current slide's :class:`SlideSettings` and runs
  ``grid.patch_stats`` in a napari generator worker (progress bar, Cancel). Everything
  O(N) — per-patch arrays, overlay rasters, histogram bins — is prepared in the worker;
  the ``returned`` callback (main thread) only hands the arrays to the layers.
* **tau / threshold sliders**: one contrast-limit change on one overlay layer, one
  O(log N) evaluation (:mod:`.slider_eval`) and new text in 16 table cells. The
  histograms follow at most every ``HISTOGRAM_THROTTLE_MS`` (a matplotlib blit and its Qt
  repaint cost more than all the rest) and the error list (a top-N selection over all
  patches) after a short debounce, so dragging never waits for either.
* **Several slides**: settings and results live in a :class:`SlideState` per slide,
  swapped when another image layer is chosen (or selected in the layer list).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..errors import PatchwiseError
from ..groups import GROUP_NAMES
from .errors_list import ErrorList, top_errors
from .form import MaskMapField, SettingsForm
from .histograms import Figure1Canvas
from .layer_slide import align_mask_layer, slide_of_layer, with_mask_layer, with_own_mask
from .overlays import SlideOverlays, overlay_transform
from .predictions import full_table_for, predictions_for
from .state import SlideState, slide_key
from .workers import Cancelled, ComputeResult, compute_table, prepare, run_in_thread

OWN_MASK = "(the slide's own mask)"
CANCELLED = "Patchwise: computation cancelled"
ERRORS_DEBOUNCE_MS = 150
HISTOGRAM_THROTTLE_MS = 120


def _slider(value: float) -> QLabeledDoubleSlider:
    slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    slider.setRange(0.0, 1.0)
    slider.setDecimals(3)
    slider.setSingleStep(0.001)
    slider.setValue(value)
    return slider


class PatchwiseWidget(QWidget):
    """Dock widget over the core library (npe2 widget contribution).

    ``applied`` is emitted once a computed or loaded table is fully shown.
    """

    applied = Signal()

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.states: dict[str, SlideState] = {}
        self._layer_slides: dict[int, tuple[object, object]] = {}  # id(layer) -> (layer, slide)
        self._pending_steps: list = []
        self.current: SlideState | None = None
        self._worker = None
        self._cancel: threading.Event | None = None
        self._progress = None
        self._build_ui()
        self._errors_timer = QTimer(self)
        self._errors_timer.setSingleShot(True)
        self._errors_timer.setInterval(ERRORS_DEBOUNCE_MS)
        self._errors_timer.timeout.connect(self._refresh_errors)
        # The histograms follow a drag at most every HISTOGRAM_THROTTLE_MS (a Qt repaint of
        # the matplotlib canvas costs more than the rest of a slider change together).
        self._histogram_timer = QTimer(self)
        self._histogram_timer.setSingleShot(True)
        self._histogram_timer.setInterval(HISTOGRAM_THROTTLE_MS)
        self._histogram_timer.timeout.connect(self._sync_histograms)

        layers = self.viewer.layers
        layers.events.inserted.connect(self._refresh_layer_choices)
        layers.events.removed.connect(self._refresh_layer_choices)
        layers.selection.events.active.connect(self._on_active_layer)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self._refresh_layer_choices()

    # -- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        # Everything sits in a scroll area so the dock never forces the viewer to shrink.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        root = QVBoxLayout(content)
        content.setMinimumWidth(430)
        self.setMinimumWidth(450)
        self.scroll = scroll
        source = QGroupBox("Slide")
        form = QFormLayout(source)
        self.image_combo = QComboBox()
        self.mask_combo = QComboBox()
        self.mask_map_field = MaskMapField()
        form.addRow("image", self.image_combo)
        form.addRow("mask", self.mask_combo)
        form.addRow("mask map", self.mask_map_field)
        root.addWidget(source)
        self.image_combo.currentIndexChanged.connect(self._on_image_chosen)
        self.mask_combo.currentIndexChanged.connect(self.align_mask)

        grid_box = QGroupBox("Patch grid and tissue")
        grid_layout = QVBoxLayout(grid_box)
        self.form = SettingsForm()
        grid_layout.addWidget(self.form)
        buttons = QHBoxLayout()
        self.compute_button = QPushButton("Compute patch grid")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        grid_layout.addLayout(buttons)
        root.addWidget(grid_box)

        tune = QGroupBox("Groups and decision threshold")
        tune_layout = QFormLayout(tune)
        self.tau_slider = _slider(0.1)
        self.tau_slider.setToolTip("tau: a patch has large tissue when tissue_ratio >= tau")
        self.threshold_slider = _slider(0.5)
        self.threshold_slider.setToolTip("a patch is predicted tumor when prob >= threshold")
        tune_layout.addRow("tau", self.tau_slider)
        tune_layout.addRow("threshold", self.threshold_slider)
        self.tau_slider.valueChanged.connect(self._on_tau)
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        from .stats_panel import StatsPanel

        self.stats = StatsPanel()
        tune_layout.addRow(self.stats)
        root.addWidget(tune)

        self.tabs = QTabWidget()
        self.histograms = Figure1Canvas()
        self.histograms.setMinimumSize(280, 420)
        self.histograms.bin_clicked.connect(self.highlight_bin)
        self.tabs.addTab(self.histograms, "Histograms")
        errors_page = QWidget()
        errors_layout = QVBoxLayout(errors_page)
        errors_layout.setContentsMargins(0, 0, 0, 0)
        self.errors_label = QLabel("load predictions to list misclassified patches")
        self.errors = ErrorList()
        self.errors.patch_chosen.connect(self.go_to_patch)
        errors_layout.addWidget(self.errors_label)
        errors_layout.addWidget(self.errors)
        self.tabs.addTab(errors_page, "Errors")
        from .model_panel import ModelPanel

        self.model_panel = ModelPanel(self)
        self.tabs.addTab(self.model_panel, "Model")
        root.addWidget(self.tabs, stretch=1)

        files = QGridLayout()
        self.load_button = QPushButton("Load predictions…")
        self.save_table_button = QPushButton("Save table…")
        self.save_geojson_button = QPushButton("Save GeoJSON…")
        self.load_button.clicked.connect(self._ask_load_predictions)
        self.save_table_button.clicked.connect(self._ask_save_table)
        self.save_geojson_button.clicked.connect(self._ask_save_geojson)
        files.addWidget(self.load_button, 0, 0, 1, 2)
        files.addWidget(self.save_table_button, 1, 0)
        files.addWidget(self.save_geojson_button, 1, 1)
        root.addLayout(files)

    # -- layer choices and slide states ---------------------------------------------------
    def _image_layers(self) -> list[Image]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata
        ]

    def _mask_layers(self) -> list[Labels]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and "patchwise_overlay" not in layer.metadata
        ]

    def _refresh_layer_choices(self, event=None) -> None:  # noqa: ARG002
        chosen = self.image_combo.currentText()
        chosen_mask = self.mask_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems([layer.name for layer in self._image_layers()])
        if chosen:
            self.image_combo.setCurrentText(chosen)
        self.image_combo.blockSignals(False)
        self.mask_combo.clear()
        self.mask_combo.addItems([OWN_MASK] + [layer.name for layer in self._mask_layers()])
        if chosen_mask:
            self.mask_combo.setCurrentText(chosen_mask)
        elif self.mask_combo.count() > 1:
            self.mask_combo.setCurrentIndex(1)
        if self.image_combo.currentText() != chosen or self.current is None:
            self._on_image_chosen()

    def _on_active_layer(self, event=None) -> None:  # noqa: ARG002
        layer = self.viewer.layers.selection.active
        if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata:
            self.image_combo.setCurrentText(layer.name)

    def image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        return next((la for la in self._image_layers() if la.name == name), None)

    def mask_layer(self) -> Labels | None:
        name = self.mask_combo.currentText()
        return next((la for la in self._mask_layers() if la.name == name), None)

    def align_mask(self, index: int = -1) -> bool:  # noqa: ARG002
        """Draw the chosen mask in the chosen image's world coordinates.

        The mask takes the image layer's scale (times its integer factor for a
        downsampled mask) and translate, so a plain TIFF mask without a pixel size lies on
        a slide whose pixel size is 0.5 um. Returns False when there is nothing to align
        or the sizes do not fit (computing then reports the mismatch).
        """
        image, mask = self.image_layer(), self.mask_layer()
        if image is None or mask is None:
            return False
        return align_mask_layer(mask, image)

    def _on_image_chosen(self, index: int = -1) -> None:  # noqa: ARG002
        layer = self.image_layer()
        if self.current is not None:
            self._remember_form(self.current)
        if layer is None:
            self.current = None
            return
        try:
            slide = self._slide_of(layer)
        except PatchwiseError as exc:
            show_error(str(exc))
            return
        key = slide_key(slide)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = SlideState(key=key, slide=slide)
        self._activate(state)

    def _remember_form(self, state: SlideState) -> None:
        self.form.read(state.settings)
        state.settings.tau = self.tau_slider.value()
        state.settings.threshold = self.threshold_slider.value()
        state.settings.mask_layer = self.mask_combo.currentText()

    def _activate(self, state: SlideState) -> None:
        """Show ``state``'s settings and results."""
        self.current = state
        s = state.settings
        self.form.show_settings(s)
        if s.mask_layer:
            self.mask_combo.setCurrentText(s.mask_layer)
        self.align_mask()
        for slider, value in ((self.tau_slider, s.tau), (self.threshold_slider, s.threshold)):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)
        if state.data is not None and state.panels is not None:
            self.histograms.set_panels(
                state.panels,
                has_predictions=state.data.prob is not None,
                tau=s.tau,
                threshold=s.threshold,
            )
        self._update_stats()
        self._refresh_errors()

    # -- compute --------------------------------------------------------------------------
    def compute(self) -> None:
        """Compute the current slide's patch table in a background worker."""
        if self._worker is not None:
            show_info("Patchwise: a computation is already running")
            return
        state = self.current
        if state is None:
            show_error("Patchwise: open an image first (File > Open, or File > Open Sample)")
            return
        self._remember_form(state)
        mask_layer = self.mask_layer()
        settings = state.settings
        base = state.slide
        if mask_layer is None and base.mask is None:
            show_error(f"{base.name}: no mask — add the tumor mask as a Labels layer and pick it")
            return
        try:
            mask_map = self.mask_map_field.mask_map()
        except PatchwiseError as exc:
            show_error(str(exc))
            return
        self.align_mask()

        def job(*, cancel, progress):
            if mask_layer is None:
                slide = with_own_mask(base, mask_map)
            else:
                slide = with_mask_layer(base, mask_layer, mask_map=mask_map)
            return compute_table(slide, settings, cancel=cancel, progress=progress)

        self._start(job, state, f"Patch grid of {base.name}")

    def _start(self, job, state: SlideState, desc: str) -> None:
        """Run ``job(cancel=, progress=)`` in a generator worker; apply its result to ``state``."""
        from napari.qt.threading import create_worker

        self._cancel = threading.Event()
        # Errors are ours to report (one-line notification), not re-raised into Qt.
        worker = create_worker(
            run_in_thread, job, cancel=self._cancel, _start_thread=False, _ignore_errors=True
        )
        self._progress = napari_progress(total=0, desc=desc)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result, st=state: self._apply_result(st, result))
        worker.errored.connect(self._on_worker_error)
        # Cancel ends either at the generator's next yield (aborted) or as Cancelled raised
        # from the computation (errored) — whichever comes first; both say the same.
        worker.aborted.connect(lambda: show_info(CANCELLED))
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        self.compute_button.setEnabled(False)
        self.load_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self._worker is not None:
            self._worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if self._progress is not None and total:
            if self._progress.total != total:
                self._progress.total = total
            self._progress.n = done
            self._progress.refresh()

    def _on_worker_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            show_info(CANCELLED)
        else:
            show_error(_one_line(exc))

    def busy(self) -> bool:
        """A computation runs or its result is still being handed to the layers."""
        return self._worker is not None or bool(self._pending_steps)

    def _on_worker_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._progress = None
        self._worker = None
        self._cancel = None
        self.compute_button.setEnabled(True)
        self.load_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _apply_result(self, state: SlideState, result: ComputeResult) -> None:
        """Main thread: hand the prepared rasters to the layers and refresh the views.

        Each layer is added in its own event-loop turn (adding a napari layer costs tens
        of milliseconds), so the viewer keeps repainting in between.
        """
        if self._cancel is not None and self._cancel.is_set():
            return
        state.data = result.data
        state.panels = result.panels
        state.geometry = (result.origin, result.stride)
        layer = self._layer_of(state)
        image_scale = tuple(layer.scale[-2:]) if layer is not None else (1.0, 1.0)
        image_translate = tuple(layer.translate[-2:]) if layer is not None else (0.0, 0.0)
        scale, translate = overlay_transform(
            result.origin, result.stride, image_scale=image_scale, image_translate=image_translate
        )
        if state.overlays is None:
            state.overlays = SlideOverlays(self.viewer, state.slide.name, scale, translate)
        state.overlays.scale, state.overlays.translate = scale, translate
        steps = list(
            state.overlays.set_table_steps(
                result.rasters, tau=state.settings.tau, threshold=state.settings.threshold
            )
        )
        if state is self.current:
            steps.append(lambda: self._activate(state))
        self._pending_steps = steps
        self._run_next_step()

    def _run_next_step(self) -> None:
        if not self._pending_steps:
            return
        self._pending_steps.pop(0)()
        if self._pending_steps:
            QTimer.singleShot(0, self._run_next_step)
        else:
            self.applied.emit()

    def _slide_of(self, layer):
        cached = self._layer_slides.get(id(layer))
        if cached is None or cached[0] is not layer:
            cached = self._layer_slides[id(layer)] = (layer, slide_of_layer(layer))
        return cached[1]

    def _layer_of(self, state: SlideState) -> Image | None:
        """The image layer showing ``state``'s slide (its transform places the overlays)."""
        for layer in self._image_layers():
            try:
                if slide_key(self._slide_of(layer)) == state.key:
                    return layer
            except PatchwiseError:
                continue
        return None

    # -- sliders --------------------------------------------------------------------------
    def _on_tau(self, value: float) -> None:
        state = self.current
        if state is None:
            return
        state.settings.tau = float(value)
        if state.overlays is not None:
            state.overlays.set_tau(value)
        self._update_stats()
        self._schedule_histograms()
        if state.data is not None and state.data.prob is not None:
            self._errors_timer.start()

    def _on_threshold(self, value: float) -> None:
        state = self.current
        if state is None:
            return
        state.settings.threshold = float(value)
        if state.overlays is not None:
            state.overlays.set_threshold(value)
        self._update_stats()
        self._schedule_histograms()
        if state.data is not None and state.data.prob is not None:
            self._errors_timer.start()

    def _schedule_histograms(self) -> None:
        if not self._histogram_timer.isActive():
            self._histogram_timer.start()

    def _sync_histograms(self) -> None:
        """Bring the histograms to the current tau and threshold (one blit)."""
        state = self.current
        if state is not None:
            self.histograms.set_view(state.settings.tau, state.settings.threshold)

    def _update_stats(self) -> None:
        state = self.current
        if state is None or state.data is None:
            self.stats.show_evaluation(None)
            return
        s = state.settings
        self.stats.show_evaluation(state.data.evaluator.evaluate(s.tau, s.threshold))

    # -- errors, histogram bins, hover ----------------------------------------------------
    def _refresh_errors(self) -> None:
        state = self.current
        if state is None or state.data is None or state.data.prob is None:
            self.errors.setRowCount(0)
            self.errors_label.setText("load predictions to list misclassified patches")
            return
        d, s = state.data, state.settings
        positions, confidence = top_errors(
            d.label, d.prob, d.tissue_ratio, tau=s.tau, threshold=s.threshold
        )
        tn, fp, fn, tp = d.evaluator.evaluate(s.tau, s.threshold).confusion
        self.errors.show_errors(
            positions,
            confidence,
            rows=d.raster.rows,
            cols=d.raster.cols,
            prob=d.prob,
            label=d.label,
            tissue_ratio=d.tissue_ratio,
            tau=s.tau,
            n_errors=fp + fn,
        )
        shown = f" (the {positions.size} most confident)" if positions.size < fp + fn else ""
        self.errors_label.setText(
            f"{fp + fn:,} misclassified patches{shown}; click one to go there"
        )

    def go_to_patch(self, position: int) -> None:
        """Centre and zoom the view on the patch at table position ``position``."""
        state = self.current
        if state is None or state.data is None:
            return
        table = state.data.table
        y, x = (int(table[c].iat[position]) for c in ("y", "x"))
        h, w = (int(table[c].iat[position]) for c in ("height", "width"))
        layer = self._layer_of(state)
        p = np.asarray(layer.scale[-2:] if layer is not None else (1.0, 1.0), dtype=float)
        t = np.asarray(layer.translate[-2:] if layer is not None else (0.0, 0.0), dtype=float)
        centre = t + p * np.array([y + (h - 1) / 2.0, x + (w - 1) / 2.0])
        camera = viewer_camera(self.viewer)
        camera.center = tuple(float(v) for v in centre)
        canvas = min(self.viewer.canvas.size) if hasattr(self.viewer, "canvas") else 600
        camera.zoom = float(canvas) / (4.0 * max(h * p[0], w * p[1]))

    def highlight_bin(self, panel: int, b: int) -> None:
        """Mark the patches of histogram ``panel``'s bin ``b`` in the viewer (-1 clears)."""
        state = self.current
        if state is None or state.data is None or state.overlays is None:
            return
        raster = state.data.raster
        if panel < 0:
            state.overlays.set_highlight(None, raster.shape)
            self.histograms.select(-1, -1)
            return
        members = state.panels[panel].members(b)
        mask = np.zeros(raster.shape, dtype=bool)
        mask[raster.rows[members], raster.cols[members]] = True
        state.overlays.set_highlight(mask, raster.shape)
        self.histograms.select(panel, b)

    def patch_status(self, world_position) -> str | None:
        """Status-bar text for the patch under ``world_position`` (None: no patch there)."""
        state = self.current
        if state is None or state.data is None or state.overlays is None:
            return None
        row, col = state.overlays.world_to_cell(world_position)
        pos = state.data.raster.lookup(row, col)
        if pos < 0:
            return None
        d, s = state.data, state.settings
        table = d.table
        label = int(d.label[pos])
        ratio = float(d.tissue_ratio[pos])
        group = GROUP_NAMES[2 * label + (ratio >= s.tau)]
        tumor = float(table["tumor_ratio"].iat[pos])
        tumor_tissue = float(table["tumor_tissue_ratio"].iat[pos])
        text = (
            f"patch ({row}, {col}) at y={int(table['y'].iat[pos])} x={int(table['x'].iat[pos])}: "
            f"{group} · tissue {ratio:.3f} · tumor {tumor:.3f} · "
            f"tumor/tissue {'—' if math.isnan(tumor_tissue) else f'{tumor_tissue:.3f}'}"
        )
        if d.prob is not None and not math.isnan(d.prob[pos]):
            pred = d.prob[pos] >= s.threshold
            outcome = ("TN", "FP", "FN", "TP")[2 * label + int(pred)]
            text += f" · prob {d.prob[pos]:.3f} ({outcome})"
        return text

    def _on_cursor(self, event=None) -> None:  # noqa: ARG002
        text = self.patch_status(self.viewer.cursor.position)
        if text is not None:
            self.viewer.status = text

    # -- tables ---------------------------------------------------------------------------
    def load_predictions(self, path: str | Path) -> bool:
        """Attach a prediction table file (``prob`` per patch) to the current slide.

        Returns False (after a notification) when the table does not fit the slide.
        """
        try:
            from ..io.tables import read_table

            table = read_table(path, required=("row", "col", "prob"))
        except PatchwiseError as exc:
            show_error(str(exc))
            return False
        return self.set_predictions(table, source=path)

    def load_table(self, path: str | Path) -> bool:
        """Show a complete patch table file (``patchwise stats``/``predict``) for the slide."""
        try:
            from ..grid import TABLE_COLUMNS
            from ..io.tables import read_table

            table = read_table(path, required=TABLE_COLUMNS)
        except PatchwiseError as exc:
            show_error(str(exc))
            return False
        return self.show_table(table, source=path)

    def show_table(self, table: pd.DataFrame, *, source="table") -> bool:
        """Show a complete patch table (with or without ``prob``) instead of computing one."""
        if self._worker is not None:
            show_info("Patchwise: wait for the running computation (or cancel it)")
            return False
        try:
            state = self._require_state()
            table, origin, stride = full_table_for(state, table, source)
        except PatchwiseError as exc:
            show_error(str(exc))
            return False
        # the form shows the table's grid
        state.settings.patch_size = int(table["height"].max())
        state.settings.stride = 0 if stride == state.settings.patch_size else stride

        def job(*, cancel, progress):  # noqa: ARG001 - O(N log N): bins, rasters
            return prepare(table, origin, stride)

        self._start(job, state, f"Patch table of {state.slide.name}")
        return True

    def set_predictions(self, predictions: pd.DataFrame, *, source="predictions") -> bool:
        """Attach an in-memory prediction table (``row, col, prob``; ``slide`` optional)."""
        if self._worker is not None:
            show_info("Patchwise: wait for the running computation (or cancel it)")
            return False
        try:
            state = self._require_state()
            merged, origin, stride = predictions_for(state, predictions, source)
        except PatchwiseError as exc:
            show_error(str(exc))
            return False

        def job(*, cancel, progress):  # noqa: ARG001 - O(N log N): bins, rasters
            return prepare(merged, origin, stride)

        self._start(job, state, f"Predictions for {state.slide.name}")
        return True

    def current_table(self) -> pd.DataFrame:
        """The current slide's table; ``pred`` follows the current threshold."""
        state = self._require_state()
        if state.data is None:
            raise PatchwiseError(
                f"{state.slide.name}: no patch table yet — compute the patch grid first"
            )
        table = state.data.table
        if state.data.prob is not None:
            table = table.copy()
            prob = state.data.prob
            table["pred"] = np.where(np.isnan(prob), -1, prob >= state.settings.threshold).astype(
                np.int8
            )
        return table

    def save_table(self, path: str | Path) -> None:
        from ..io.tables import write_table

        try:
            write_table(self.current_table(), path)
        except PatchwiseError as exc:
            show_error(str(exc))

    def save_geojson(self, path: str | Path) -> None:
        from ..io.tables import write_geojson

        try:
            state = self._require_state()
            write_geojson(
                self.current_table(),
                path,
                pixel_size=state.slide.pixel_size,
                tau=state.settings.tau,
            )
        except PatchwiseError as exc:
            show_error(str(exc))

    def _require_state(self) -> SlideState:
        if self.current is None:
            raise PatchwiseError("open an image first (File > Open, or File > Open Sample)")
        return self.current

    def _ask_load_predictions(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load predictions", "", "Patch tables (*.parquet *.csv)"
        )
        if path:
            self.load_predictions(path)

    def _ask_save_table(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save patch table", "patches.parquet", "Patch tables (*.parquet *.csv)"
        )
        if path:
            self.save_table(path)

    def _ask_save_geojson(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save GeoJSON", "patches.geojson", "GeoJSON (*.geojson *.json)"
        )
        if path:
            self.save_geojson(path)


def viewer_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, PatchwiseError):
        return str(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"Patchwise: {type(exc).__name__}: {text}"
