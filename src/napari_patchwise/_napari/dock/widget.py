"""The Patchwise dock widget: compute the patch grid, tune tau and the threshold, inspect.

The dock is assembled from parts with one concern each; this module keeps the slides'
states and hands results to the layers.

* :class:`.slide_picker.SlidePicker` — image and mask layers, mask map.
* :class:`.form.GridBox` — patch grid and tissue settings, Compute / Cancel; the grid is
  computed by :func:`.workers.compute_table` in a :class:`.jobs.BackgroundJob`
  (progress bar, Cancel). Everything O(N) — per-patch arrays, overlay rasters,
  histogram bins — is prepared in the worker; :meth:`PatchwiseWidget._apply_result`
  (main thread) only hands the arrays to the layers, one layer per event-loop turn.
* :class:`.tuning.TuningBox` — the tau / threshold sliders: one contrast-limit change on
  one overlay layer, one O(log N) evaluation (:mod:`napari_patchwise.analysis.incremental`) and
  new text in 16 table cells per move.
* :class:`.inspect_tabs.InspectTabs` — histograms and error list (throttled while a
  slider is dragged), the Model tab (:class:`.model_panel.ModelPanel`) and the Cohort
  tab (:class:`.cohort_browser.CohortBrowser`).
* :class:`.table_io.TableFiles` — load predictions or a patch table, save table/GeoJSON.
* :class:`.compare_box.CompareBox` — the "Compare" tab: two runs on the slide, patch by
  patch (an overlay) and per group, following the sliders (docs/compare.md).
* :class:`.debias_tab.DebiasTab` — the "Debias" tab: retrain a head on a feature store at
  the current attribute and threshold, accuracy against the threshold, attribute ranking.
* :mod:`.navigation` — go to a patch, mark a histogram bin, the status-bar text.

**Several slides**: settings and results live in a :class:`SlideState` per slide,
swapped when another image layer is chosen (or selected in the layer list).

**The model**: the states, the current slide, the window's settings and the one job
runner live in :attr:`PatchwiseWidget.model` (:class:`.dock_model.DockModel`); the
settings' widgets are bound to it (:mod:`.dock_binding`) and
:meth:`PatchwiseWidget.configure` sets it (``patchwise view``, the demo, tests).
"""

from __future__ import annotations

import pandas as pd
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import QScrollArea, QSplitter, QVBoxLayout, QWidget

from ...errors import PatchwiseError
from ...patches.grid import PatchGrid
from ..canvas.inspector import PatchInspector
from ..canvas.minimap import MiniMapPane
from ..canvas.overlay_choice import OverlayChoice
from ..canvas.overlays import SlideOverlays, overlay_transform
from ..cohort_tab.browser import CohortBrowser
from ..compare_tab.box import CompareBox
from ..debias_tab.tab import DebiasTab
from ..inspect.tabs import InspectTabs
from ..jobs.grid_work import ComputeResult, compute_table, prepare
from ..model_tab.panel import ModelPanel
from ..reader.layer_slide import layer_units, with_mask_layer, with_own_mask
from . import notify
from .attribute_choice import AttributeChoice
from .binding import DockActions, bind_settings, connect_model
from .form import GridBox
from .model import DockModel
from .refit import RefitOnFirstShow
from .session_box import SessionBox
from .slide_picker import SlidePicker
from .state import SlideState, slide_key
from .table_io import TableFiles
from .tuning import TuningBox

CANCELLED = "Patchwise: computation cancelled"


def _pane(*parts: QWidget, stretch: int | None = None) -> QWidget:
    """A widget holding ``parts`` one under the other (the last one stretching)."""
    pane = QWidget()
    layout = QVBoxLayout(pane)
    layout.setContentsMargins(4, 2, 4, 2)
    for i, part in enumerate(parts):
        last = stretch is not None and i == len(parts) - 2
        layout.addWidget(part, stretch=stretch if last else 0)
    return pane


def _scrolling(*parts: QWidget, stretch: int | None = None) -> QScrollArea:
    """``parts`` in a vertical scroll area (never wider than the dock)."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    content = _pane(*parts, stretch=stretch)
    content.setMinimumWidth(430)
    scroll.setWidget(content)
    return scroll


def _splitter(*panes: tuple[QWidget, int, bool]) -> QSplitter:
    """A vertical splitter of ``(pane, height, collapsible)``; the last pane stretches."""
    splitter = QSplitter(Qt.Orientation.Vertical)
    for i, (pane, _height, collapsible) in enumerate(panes):
        splitter.addWidget(pane)
        splitter.setStretchFactor(i, int(i == len(panes) - 1))
        splitter.setCollapsible(i, collapsible)
    splitter.setSizes([height for _pane, height, _c in panes])
    return splitter


def _layout_panes(dock) -> QSplitter:
    """The dock's parts in five panes of a vertical splitter (sets the panes' names)."""
    dock.setup_scroll = _scrolling(dock.picker, dock.grid_box)
    dock.sliders = _pane(dock.tuning, dock.overlay_choice)
    dock.inspector_scroll = _scrolling(dock.inspector)
    files = _pane(dock.table_files, dock.session_box)
    files.layout().setContentsMargins(0, 0, 0, 0)
    dock.scroll = _scrolling(dock.tabs, files, stretch=1)
    dock.scroll.setMinimumHeight(120)
    return _splitter(
        (dock.overview, dock.overview.sizeHint().height(), True),
        (dock.setup_scroll, 120, True),
        (dock.sliders, dock.sliders.sizeHint().height(), False),  # never hidden
        (dock.inspector_scroll, 120, True),
        (dock.scroll, 500, False),  # the tab bar: never hidden; takes what is left
    )


def freeze_startup_heap() -> None:
    """Move every object alive now (napari, Qt, torch, ...) out of the garbage collector's
    reach, once per process.

    A full collection walks every tracked object: with napari and torch loaded that blocked
    the event loop for about 0.5 s (measured while a head retrained, 500-580 ms against
    100-130 ms with the start-up heap frozen), wherever it happened to land. Objects made
    later are collected as usual; the frozen ones are the long-lived start-up state.
    """
    import gc

    if not getattr(freeze_startup_heap, "done", False):
        gc.freeze()
        freeze_startup_heap.done = True


class PatchwiseWidget(DockActions, QWidget):
    """Dock widget over the core library (npe2 widget contribution).

    ``applied`` is emitted once a computed or loaded table is fully shown (so is
    ``model.applied``). Scripts set what the dock shows with :meth:`configure` and read
    it from :attr:`model`; the parts' widgets are attributes too (``image_combo``,
    ``compute_button``, ``tau_slider``, ``histograms``, ``errors``, ``model_panel``, ...)
    for tests that click them as a user would.
    """

    applied = Signal()

    def __init__(self, napari_viewer) -> None:
        freeze_startup_heap()
        super().__init__()
        self.viewer = napari_viewer
        self.model = DockModel()
        self.jobs = self.model.jobs  # the one job runner of every tab
        self._pending_steps: list = []
        self.grid_job = self.jobs.job("the patch grid", CANCELLED, parent=self)
        self._build_ui()
        self._connect()
        self._pull_settings = bind_settings(self, self.model)
        self.picker.refresh()
        RefitOnFirstShow(self, napari_viewer)  # the dock took part of the canvas: fit again

    # -- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        # Five panes in a vertical splitter, so the dock fits a 1366 x 768 screen: the
        # overview minimap, the slide and grid settings (scrolling), the sliders and key
        # metrics (never collapsed, never scrolled away), the patch inspector, the tabs
        # and files.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.setMinimumWidth(450)
        self.picker = SlidePicker(self.viewer)
        self.grid_box = GridBox()
        self.tuning = TuningBox()
        self.tabs = InspectTabs(lambda: self.current)
        self.table_files = TableFiles(self.model)
        self._name_parts()
        self.model_panel = ModelPanel(self.model)  # follows the model's tau
        self.tabs.addTab(self.model_panel, "Model")
        self.cohort_browser = CohortBrowser(self.model, self.viewer)  # one slide shown at a time
        self.tabs.addTab(self.cohort_browser, "Cohort")
        self.compare_box = CompareBox(self.model, self.viewer)  # follows the sliders and runs
        self.tabs.addTab(self.compare_box, "Compare")
        self.debias = DebiasTab(self.model)  # retrain a head, the threshold curve, the ranking
        self.tabs.addTab(self.debias, "Debias")
        self.attribute_choice = AttributeChoice(self.model, parent=self)  # regroups
        self.overlay_choice = OverlayChoice(
            self.model, self.viewer
        )  # one overlay shown, legend on the canvas
        self.inspector = PatchInspector(self.model, self.viewer)  # hovered / pinned patch, outlined
        self.overview = MiniMapPane(
            self.model, self.viewer
        )  # the slide's thumbnail, the view on it, click to go
        self.minimap = self.overview.minimap
        self.session_box = SessionBox(self.model, self.viewer)  # Save / Open session…
        self.splitter = _layout_panes(self)
        outer.addWidget(self.splitter)

    def _name_parts(self) -> None:
        """The parts' widgets under the names scripts and tests use."""
        picker, grid, tuning, tabs = self.picker, self.grid_box, self.tuning, self.tabs
        self.image_combo, self.mask_combo = picker.image_combo, picker.mask_combo
        self.mask_map_field = picker.mask_map_field
        self.form = grid.form
        self.compute_button, self.cancel_button = grid.compute_button, grid.cancel_button
        self.tau_slider, self.threshold_slider = tuning.tau_slider, tuning.threshold_slider
        self.stats = tuning.stats
        self.histograms = tabs.histograms
        self.errors, self.errors_label = tabs.errors_page.errors, tabs.errors_page.label
        self.load_button = self.table_files.load_button

    def _connect(self) -> None:
        connect_model(self, self.model)  # actions on the model, the pickers' events relayed
        for chosen in (self.picker.layers_changed, self.picker.image_chosen):
            chosen.connect(lambda *_: self.model.show_slide_layers(self.image_combo.layers()))
        self.picker.layers_changed.connect(self._on_layers_changed)
        self.picker.image_chosen.connect(self._on_image_chosen)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        self.jobs.busy_changed.connect(self._on_busy)
        self.grid_job.busy_changed.connect(self.cancel_button.setEnabled)
        self.tau_slider.valueChanged.connect(self._on_tau)
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        self.histograms.bin_clicked.connect(self.highlight_bin)
        self.tabs.errors_page.patch_chosen.connect(self.go_to_patch)
        self.tabs.errors_page.attach(self.viewer, self.inspector)  # outline, Alt+Right/Left

    # -- the model ------------------------------------------------------------------------
    @property
    def states(self) -> dict[str, SlideState]:
        """The slides' states by key (``model.states``)."""
        return self.model.states

    @property
    def current(self) -> SlideState | None:
        """The current slide's state (``model.current``)."""
        return self.model.current

    @current.setter
    def current(self, state: SlideState | None) -> None:
        self.model.current = state

    # -- slide states ---------------------------------------------------------------------
    def _on_layers_changed(self, image_changed: bool) -> None:
        if image_changed or self.current is None:
            self._on_image_chosen()

    def _on_image_chosen(self) -> None:
        layer = self.picker.image_layer()
        if self.current is not None:
            self._remember_form(self.current)
        if layer is None:
            self.current = None
            return
        try:
            slide = self.picker.slide_of(layer)
        except PatchwiseError as exc:
            notify.error(exc)
            return
        key = slide_key(slide)
        state = self.states.get(key)
        if state is None:  # the patch size etc. the user set on the previous slide carry over
            state = self.states[key] = SlideState.after(self.current, key=key, slide=slide)
        self._activate(state)

    def _remember_form(self, state: SlideState) -> None:
        self.form.read(state.settings, state.slide.background)
        self.tuning.read(state.settings)
        state.settings.mask_layer = self.mask_combo.currentText()

    def _activate(self, state: SlideState) -> None:
        """Show ``state``'s settings and results."""
        self.current = state
        s = state.settings
        self.form.show_settings(s.patch, state.slide.background)
        self.form.set_pixel_size(state.slide.pixel_size)  # µm beside the px fields
        self.picker.follow_mask(s.mask_layer)  # this slide's mask, never the previous one's
        self.picker.align_mask()
        self.tuning.show_settings(s, state)
        self.tabs.show_state(state)
        self.tuning.show_evaluation(state)
        self.inspector.refresh()
        self.overlay_choice.apply()
        if hasattr(self, "_pull_settings"):  # the widgets were filled with signals blocked
            self._pull_settings()

    def require_state(self) -> SlideState:
        """The current slide's state (raises :class:`PatchwiseError` without a slide)."""
        if self.current is None:
            raise PatchwiseError(notify.OPEN_AN_IMAGE)
        return self.current

    # -- computing and showing tables -----------------------------------------------------
    def compute(self) -> bool:
        """Compute the current slide's patch table in a background worker.

        False (after one notification) when it cannot start: another job runs, no slide,
        a mask of another slide, a bad mask map.
        """
        if not self.jobs.admit(self.grid_job):  # the runner said what runs
            return False
        state = self.current
        if state is None:
            notify.error(f"Patchwise: {notify.OPEN_AN_IMAGE}")
            return False
        self._remember_form(state)
        mask_layer, base = self.picker.mask_layer(), state.slide
        problem = self.picker.mask_problem(base, state.key)  # none, or another slide's
        if problem is not None:
            notify.error(problem)
            return False
        try:
            mask_map = self.mask_map_field.mask_map()
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        self.picker.align_mask()
        settings = state.settings
        state.computed, state.table_source, state.predictions_source = True, None, None

        def job(*, cancel, progress) -> ComputeResult:
            if mask_layer is None:
                slide = with_own_mask(base, mask_map)
            else:
                slide = with_mask_layer(base, mask_layer, mask_map=mask_map)
            return compute_table(slide, settings, cancel=cancel, progress=progress)

        return self._start(job, state, f"Patch grid of {base.name}")

    def prepare_table(
        self, state: SlideState, table: pd.DataFrame, grid: PatchGrid, description: str
    ) -> bool:
        """Show a complete ``table`` lying on ``grid`` for ``state`` (bins and rasters
        prepared in a worker); False after the runner's notice when another job runs."""

        def job(*, cancel, progress) -> ComputeResult:  # noqa: ARG001 - O(N log N) only
            return prepare(table, grid, state.settings.attribute)

        return self._start(job, state, description)

    def _start(self, job, state: SlideState, description: str) -> bool:
        return self.grid_job.start(
            job,
            returned=lambda result, st=state: self._apply_result(st, result),
            description=description,
        )

    def cancel(self) -> None:
        """Stop the running computation (at dask's next task)."""
        self.grid_job.cancel()

    def busy(self) -> bool:
        """A job of any tab runs, or a result is still being handed to the layers."""
        return self.jobs.any_running()

    def _on_busy(self, busy: bool) -> None:
        """Exclusive work started or ended (any tab's): Compute and Load follow."""
        self.compute_button.setEnabled(not busy)
        self.load_button.setEnabled(not busy)

    def _apply_result(self, state: SlideState, result: ComputeResult) -> None:
        """Main thread: hand the prepared rasters to the layers and refresh the views.

        Each layer is added in its own event-loop turn (adding a napari layer costs tens
        of milliseconds), so the viewer keeps repainting in between.
        """
        if self.grid_job.cancelled():
            return
        state.data, state.panels = result.data, result.panels
        state.grid = result.grid
        layer = self.picker.layer_showing(state.key)
        scale, translate = overlay_transform(
            result.grid.origin,
            result.grid.step,
            image_scale=tuple(layer.scale[-2:]) if layer is not None else (1.0, 1.0),
            image_translate=tuple(layer.translate[-2:]) if layer is not None else (0.0, 0.0),
        )
        if state.overlays is None:
            units = None if layer is None else layer_units(layer)  # µm for the scale bar
            state.overlays = SlideOverlays(self.viewer, state.slide.name, scale, translate, units)
        state.overlays.scale, state.overlays.translate = scale, translate
        s = state.settings
        steps = list(
            state.overlays.set_table_steps(
                result.rasters, tau=result.data.overlay_threshold(s.tau), threshold=s.threshold
            )
        )
        if state is self.current:
            steps.append(lambda: self._activate(state))
        self._pending_steps = steps
        self.jobs.hold("showing the patch grid")
        self._run_next_step()

    def _run_next_step(self) -> None:
        if self._pending_steps:
            self._pending_steps.pop(0)()
        if self._pending_steps:
            QTimer.singleShot(0, self._run_next_step)
        else:
            self.jobs.release("showing the patch grid")  # what follows may start a job
            self.applied.emit()
            self.model.applied.emit()

    # -- sliders --------------------------------------------------------------------------
    def _on_tau(self, value: float) -> None:
        state = self.current
        if state is None:
            return
        state.settings.tau = float(value)
        if state.overlays is not None:
            state.overlays.set_tau(state.data.overlay_threshold(value))
        self._follow_sliders(state)

    def _on_threshold(self, value: float) -> None:
        state = self.current
        if state is None:
            return
        state.settings.threshold = float(value)
        if state.overlays is not None:
            state.overlays.set_threshold(value)
        self._follow_sliders(state)

    def _follow_sliders(self, state: SlideState) -> None:
        self.tuning.show_evaluation(state)
        self.tabs.follow_sliders()
        self.inspector.refresh()
