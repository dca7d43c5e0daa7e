"""The dock's "Save session…" / "Open session…" buttons (file format: ``..session``).

Saving reads the dock's own state model — one :class:`.state.SlideState` per slide
(settings, where its table and predictions came from, reviewed patches when the errors
list keeps them), the mask map, the Compare tab's two runs, the overlay shown — plus the
layers' visibility and the camera, and writes them with
:func:`napari_patchwise.io.session.write_session`.

Opening replays what the user did, one step at a time on the event loop: open each slide
(and its mask file) through the Patchwise reader, put its settings in the form and
sliders, compute the grid or load its table, attach its predictions, then compare the two
runs, choose the overlay, set the layers' visibility and the camera. Each step waits for
the dock's background work of the previous one; ``restored`` is emitted at the end. A
step that fails stops the replay with its one-line notification.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QWidget

from ...errors import PatchwiseError
from ...io.session import (
    SESSION_SUFFIX,
    Comparison,
    LayerView,
    Session,
    SessionSlide,
    read_session,
    write_session,
)
from ..canvas.navigation import viewer_camera
from ..reader.layer_slide import align_mask_layer, layer_slide_key
from . import notify
from .state import SlideState

SESSION_FILTER = f"Patchwise sessions (*{SESSION_SUFFIX} *.json)"
OVERLAY_KINDS = ("labels", "groups", "correctness", "probability", "comparison")


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


class SessionBox(QWidget):
    """Save and reopen the dock's session.

    ``model``: the dock's :class:`.model.DockModel` (the slides' states, the settings,
    the runner that queues the steps; ``model.actions`` opens tables and shows slides);
    ``viewer``: the napari viewer the session's layers and camera live in.
    """

    restored = Signal()

    def __init__(self, model, viewer) -> None:
        super().__init__()
        self.model, self.viewer = model, viewer
        self._steps: list = []
        self.job = model.jobs.job(
            "opening the session", "Patchwise: opening the session cancelled", parent=self
        )
        self._restoring = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.save_button = QPushButton("Save session…")
        self.save_button.setToolTip(
            "save the slides, masks, settings, sliders, predictions and comparison to a "
            "small file, to reopen them later"
        )
        self.open_button = QPushButton("Open session…")
        self.open_button.setToolTip("reopen a saved session: the same layers, settings and metrics")
        self.save_button.clicked.connect(self._ask_save)
        self.open_button.clicked.connect(self._ask_open)
        layout.addWidget(self.save_button)
        layout.addWidget(self.open_button)

    # -- saving ---------------------------------------------------------------------------
    def session(self) -> Session:
        """What the dock shows now (see :func:`dock_session`)."""
        return dock_session(self.model, self.viewer)

    def save_session(self, path: str | Path) -> Path | None:
        """Write the session file (None after a notification when it cannot be saved)."""
        try:
            written = write_session(self.session(), path)
        except PatchwiseError as exc:
            notify.error(exc)
            return None
        except OSError as exc:
            notify.error(f"{path}: {exc.strerror or exc} — choose another folder")
            return None
        notify.info(f"Patchwise: saved the session to {written}")
        return written

    # -- opening --------------------------------------------------------------------------
    def restoring(self) -> bool:
        """A session is being reopened (its steps still run)."""
        return self._restoring

    def open_session(self, path: str | Path) -> bool:
        """Reopen a session file; ``restored`` is emitted once everything is shown.

        False (after a notification) when the file is bad or the dock is busy.
        """
        if self.restoring():
            notify.info("Patchwise: a session is being opened — wait for it")
            return False
        if not self.model.jobs.admit():  # the runner said what runs
            return False
        try:
            session = read_session(path)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        self._path = Path(path)
        self._steps = self._plan(session)
        self._restoring = True
        self.model.jobs.when_idle(self._next_step)
        return True

    def _plan(self, session: Session) -> list:
        steps: list = []
        if session.mask_map:
            steps.append(lambda: setattr(self.model.settings, "mask_map", session.mask_map))
        for slide in session.slides:
            steps += self._slide_steps(slide)
        comparison = session.comparison
        if comparison is not None:
            steps.append(lambda: self._choose(session.slides[comparison.slide]))
            steps.append(
                lambda: self.model.actions.compare(comparison.a, comparison.b, comparison.names)
            )
        steps.append(lambda: self._choose(session.slides[session.current]))
        steps.append(lambda: self._finish(session))
        return steps

    def _slide_steps(self, slide: SessionSlide) -> list:
        actions = self.model.actions
        steps = [lambda: self._open_slide(slide)]
        if slide.table is not None:
            steps.append(lambda: actions.load_table(slide.table))
        elif slide.computed:
            steps.append(self.model.compute)
        if slide.predictions is not None:
            steps.append(lambda: self._load_predictions(slide.predictions))
        if slide.reviewed is not None:
            steps.append(lambda: self._set_reviewed(slide.reviewed))
        return steps

    def _next_step(self) -> None:
        """Run the next step (the runner calls it once the previous one's work is done)."""
        if not self._steps:
            self._restoring = False
            return
        step = self._steps.pop(0)
        try:
            ok = step()
        except PatchwiseError as exc:
            notify.error(exc)
            ok = False
        if ok is False:  # the step said why (one notification); the rest would not fit
            self._steps = []
            self._restoring = False
            return
        self.model.jobs.when_idle(self._next_step)

    # -- the steps ------------------------------------------------------------------------
    def _layers_of(self, path: Path) -> list:
        return [
            layer
            for layer in self.model.actions.image_layers()
            if _same_file(layer_slide_key(layer), path)
        ]

    def _open_slide(self, slide: SessionSlide) -> bool:
        """Open the slide and its mask (unless open already), choose it, show its settings."""
        viewer = self.viewer
        images = self._layers_of(slide.image)
        if not images:
            viewer.open(slide.image, plugin="napari-patchwise")
            images = self._layers_of(slide.image)
        if not images:
            raise PatchwiseError("the Patchwise reader opened no slide", path=slide.image)
        mask_name = None
        if slide.mask is not None:
            masks = [
                m
                for m in self.model.actions.mask_layers()
                if _same_file(m.metadata.get("patchwise_path", ""), slide.mask)
            ]
            if not masks:
                masks = viewer.open(slide.mask, plugin="napari-patchwise")
            align_mask_layer(masks[0], images[0])
            mask_name = masks[0].name
        self.model.actions.choose_image(images[0])
        state = self.model.current
        if state is None:
            return False
        apply_session_settings(state.settings, slide.settings, state.slide.background)
        if mask_name is not None:
            state.settings.mask_layer = mask_name
        self.model.actions.show_state(state)  # the form, the mask choice, the sliders
        return True

    def _choose(self, slide: SessionSlide) -> bool:
        images = self._layers_of(slide.image)
        if images:
            self.model.actions.choose_image(images[0])
        return True

    def _load_predictions(self, path: Path) -> bool:
        """A prediction table as "Load predictions…"; a run folder or checkpoint in a worker
        (its predictions.parquet, or predicted again as the Model tab did)."""
        from ..compare_tab.data import TABLE_SUFFIXES, read_source

        if path.is_file() and path.name.endswith(TABLE_SUFFIXES):
            return self.model.actions.load_predictions(path)
        state = self.model.require_state()
        slide, table = state.slide, state.patch_table()

        def job(*, cancel, progress):
            return read_source(path, slide, table, cancel=cancel, progress=progress)

        self.job.start(
            job,
            returned=lambda table: self.model.actions.set_predictions(table, source=path),
            description=f"Predictions of {path.name} for {state.slide.name}",
        )
        return True

    def _set_reviewed(self, reviewed: list[tuple[int, int]]) -> bool:
        """The errors list's reviewed patches, as ``state.reviewed`` (a set of (row, col))."""
        state = self.model.current
        if state is not None:
            state.reviewed = set(reviewed)
            self.model.actions.show_lists(state)
        return True

    def _finish(self, session: Session) -> bool:
        viewer = self.viewer
        if session.overlay:
            self.model.actions.choose_overlay(session.overlay)
        for view in session.layers:
            for layer in viewer.layers:
                kind = layer.metadata.get("patchwise_overlay")
                if layer.name == view.name and kind not in OVERLAY_KINDS:
                    layer.visible, layer.opacity = view.visible, view.opacity
        if session.camera is not None:
            camera = viewer_camera(viewer)
            center = tuple(camera.center)
            camera.center = (*center[: len(center) - 2], *session.camera["center"][-2:])
            camera.zoom = session.camera["zoom"]
        notify.info(f"Patchwise: opened the session {self._path}")
        self.restored.emit()
        return True

    # -- dialogs --------------------------------------------------------------------------
    def default_name(self) -> str:
        """``<slide>.patchwise-session.json`` in the current slide's folder."""
        state = self.model.current
        if state is None or state.slide.path is None:
            return f"patchwise{SESSION_SUFFIX}"
        return str(Path(state.slide.path).parent / f"{state.slide.name}{SESSION_SUFFIX}")

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save session", self.default_name(), SESSION_FILTER
        )
        if path:
            self.save_session(path)

    def _ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", SESSION_FILTER)
        if path:
            self.open_session(path)


def dock_session(model, viewer) -> Session:
    """What the dock shows now, as a :class:`Session` (raises :class:`PatchwiseError`).

    Read from the dock's model (``model``): its slide states, mask map, overlay shown
    and the Compare tab's sources; the ``viewer``'s layers and camera.
    """
    model.actions.remember_form()  # the form's values into the current state
    states = [s for s in model.states.values() if model.layer_showing(s.key) is not None]
    if not states:
        raise PatchwiseError("no slide to save: open a slide first")
    masks = model.actions.mask_layers()
    slides = [_session_slide(masks, state) for state in states]
    current = states.index(model.current) if model.current in states else 0
    view = viewer_camera(viewer)
    camera = {"center": [float(v) for v in view.center[-2:]], "zoom": float(view.zoom)}
    return Session(
        slides=slides,
        current=current,
        mask_map=model.settings.mask_map,
        overlay=model.settings.overlay,
        comparison=_comparison(model, states),
        layers=[LayerView(la.name, bool(la.visible), float(la.opacity)) for la in viewer.layers],
        camera=camera,
    )


def _session_slide(masks: list, state: SlideState) -> SessionSlide:
    name = state.slide.name
    if state.slide.path is None:
        raise PatchwiseError(
            f"slide '{name}' was not opened from a file; a session reopens files only",
            hint="save the image (File > Save Selected Layers) and open that file",
        )
    mask = None
    layer = next(
        (m for m in masks if m.name == state.settings.mask_layer),
        None,
    )
    if layer is not None and not _is_own_mask(layer, state):
        mask = layer.metadata.get("patchwise_path")
        if mask is None and state.computed:
            raise PatchwiseError(
                f"mask layer '{layer.name}' of slide '{name}' is not a file",
                hint="save it (File > Save Selected Layers), open that file and pick it",
            )
    settings = session_settings(state.settings, state.slide.background)
    reviewed = getattr(state, "reviewed", None)  # the errors list's flags, if it keeps them
    return SessionSlide(
        image=Path(state.slide.path).absolute(),
        mask=None if mask is None else Path(mask).absolute(),
        table=state.table_source,
        computed=state.computed,
        predictions=state.predictions_source,
        settings=settings,
        reviewed=None if reviewed is None else sorted((int(r), int(c)) for r, c in reviewed),
    )


def _comparison(model, states: list[SlideState]) -> Comparison | None:
    """The Compare tab's comparison (its fields' sources and names), if one is shown."""
    data, s = model.comparison, model.settings
    if data is None:
        return None
    keys = [state.key for state in states]
    a, b = s.compare_a.strip(), s.compare_b.strip()
    if data.key not in keys or not (Path(a).exists() and Path(b).exists()):
        return None
    return Comparison(
        a=Path(a).absolute(),
        b=Path(b).absolute(),
        names=tuple(s.compare_names),
        slide=keys.index(data.key),
    )


def _is_own_mask(layer, state: SlideState) -> bool:
    """Whether a mask layer is the one the reader opened with the slide itself."""
    own = (layer.metadata or {}).get("patchwise_slide")
    if own is None:
        return False
    return own is state.slide or getattr(own, "path", None) == state.slide.path


# -- the session file's flat settings ----------------------------------------------------
# A session file keeps one flat dict per slide (session.SETTING_TYPES) in which the
# automatic values are written as the form shows them: stride 0 ("= patch size"), tissue
# threshold 0.0 ("auto (Otsu)"), the background by name. These two functions are the one
# place that converts between that file format and SlideSettings.
_VIEW_KEYS = ("attribute", "tau", "threshold")


def session_settings(settings, own_background: str) -> dict:
    """``settings`` as a session file stores them (keys of ``session.SETTING_TYPES``)."""
    p = settings.patch
    return {
        "patch_size": int(p.patch_size),
        "stride": int(p.stride or 0),
        "keep_edges": bool(p.keep_edges),
        "tissue": p.tissue,
        "tissue_threshold": float(p.tissue_threshold or 0.0),
        "background": p.background or own_background,
        **{k: getattr(settings, k) for k in _VIEW_KEYS},
    }


def apply_session_settings(settings, values: dict, own_background: str) -> None:
    """Set ``settings`` from a session file's flat ``values`` (absent keys kept)."""
    from dataclasses import replace

    patch = {k: v for k, v in values.items() if k not in _VIEW_KEYS}
    if "stride" in patch:
        patch["stride"] = patch["stride"] or None
    if "tissue_threshold" in patch:
        patch["tissue_threshold"] = patch["tissue_threshold"] or None
    if patch.get("background") == own_background:
        patch["background"] = None
    settings.patch = replace(settings.patch, **patch)
    for key in _VIEW_KEYS:
        if key in values:
            setattr(settings, key, values[key])
