"""The cohort browser's slide in the viewer: open one cohort slide, close the previous one.

Opening reads the slide and its mask through the plugin's reader (:func:`io.open_slide`,
display pyramid and mask check included) in a :class:`.jobs.BackgroundJob`; on the main
thread the previous cohort slide's layers (channels, mask, overlays) are removed, the new
slide's are added — named ``"<slide> <channel>"`` and ``"<slide> mask"``, so every layer
says which slide it shows — and the dock is handed the slide with the cohort's grid
settings. Its patch table, when the browser has counted it, is shown through the dock's
:meth:`~.widget.PatchwiseWidget.prepare_table` (no second count); otherwise the dock
computes the grid as its Compute button does.

Layers the user opened some other way are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ...cohort.manifest import CohortEntry
from ...patches.table import PatchTable
from ...slide import Slide
from ..dock.slide_picker import OWN_MASK
from ..dock.state import SlideSettings, SlideState, slide_key

OPEN_CANCELLED = "Patchwise: opening the slide cancelled"


def open_cohort_slide(
    entry: CohortEntry,
    mask_map: str,
    *,
    cancel,  # noqa: ARG001 - the job signature
    progress,
) -> tuple[Slide, list]:
    """Worker body: the slide (named by its cohort id) and its layer data.

    The display pyramid of a big single-level slide is built here (once, cached), with
    ``progress``; contrast limits come from the smallest level.
    """
    from ...io import open_slide
    from ..reader.layers import slide_layers

    slide = open_slide(entry.image, mask=entry.mask, mask_map=mask_map, progress=progress)
    slide = replace(slide, name=entry.slide)
    layers = []
    for data, kwargs, kind in slide_layers(slide):
        # channel layers carry the slide's name, as its mask does (an RGB layer is named
        # after the slide already)
        if kind == "image" and not kwargs.get("rgb"):
            kwargs = {**kwargs, "name": f"{slide.name} {kwargs['name']}"}
        layers.append((data, kwargs, kind))
    return slide, layers


class CohortSlideViewer:
    """Shows one cohort slide at a time in ``viewer``.

    ``model``: the dock's :class:`.model.DockModel` (the slides' states, the runner; the
    slide is chosen and its table shown through ``model.actions``). ``opened(index)`` is called on the main thread once slide ``index`` is in the viewer
    and its table handed to the dock (or its grid computation started).
    """

    def __init__(self, model, viewer, opened: Callable[[int], None], parent=None) -> None:
        self.model = model
        self.viewer = viewer
        self.opened = opened
        self.job = model.jobs.job("opening a cohort slide", OPEN_CANCELLED, parent=parent)
        self.index: int | None = None  # the cohort slide shown
        self.key: str | None = None  # its dock state key
        self.layers: list = []  # the layers this browser added for it

    def open(
        self,
        index: int,
        entry: CohortEntry,
        mask_map: str,
        settings: SlideSettings,
        table_of: Callable[[], PatchTable | None],
    ) -> bool:
        """Start opening ``entry`` with the dock's grid ``settings``.

        Once the layers are in, ``table_of()`` (the browser's counted table then, or
        None) goes to the dock. Returns False (after a notice) while the dock's grid job
        or another opening runs.
        """
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return False

        def job(*, cancel, progress):
            return open_cohort_slide(entry, mask_map, cancel=cancel, progress=progress)

        def returned(result: tuple[Slide, list]) -> None:
            self._show(index, *result, settings, table_of)

        self.job.start(job, returned=returned, description=f"Opening {entry.slide}")
        return True

    def _show(self, index: int, slide: Slide, layer_data: list, settings, table_of) -> None:
        """Main thread: swap the previous slide's layers for ``slide``'s; show its table."""
        if not self.model.jobs.admit():  # another job started meanwhile
            return
        self.close()
        key = slide_key(slide)
        # the dock finds this state when the new layer is chosen: the cohort's settings
        self.model.states[key] = SlideState(key=key, slide=slide, settings=settings)
        self.layers = [self._add(*data) for data in layer_data]
        self.index, self.key = index, key
        self.model.actions.choose_image(self.layers[0].name)
        self.viewer.reset_view()
        state = self.model.current
        if state is not None and state.key == key:
            show_table(self.model, state, table_of())
        self.opened(index)

    def _add(self, data, kwargs: dict, kind: str):
        from napari.layers import Layer

        return self.viewer.add_layer(Layer.create(data, kwargs, kind))

    def showing(self, index: int) -> bool:
        """Whether slide ``index`` is open (the user may have deleted its layers)."""
        return index == self.index and any(la in self.viewer.layers for la in self.layers)

    def close(self) -> None:
        """Remove the shown cohort slide's layers and overlays (its dock state forgets them)."""
        state = self.model.states.get(self.key) if self.key is not None else None
        if state is not None:
            if state.overlays is not None:
                state.overlays.remove()
            state.overlays = state.data = state.panels = state.grid = None
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers, self.index, self.key = [], None, None


def slide_settings(model, template: SlideSettings) -> SlideSettings:
    """The cohort's grid settings at the model's current tau and threshold (own mask)."""
    return replace(
        template,
        tau=float(model.settings.tau),
        threshold=float(model.settings.threshold),
        mask_layer=OWN_MASK,
    )


def show_table(model, state: SlideState, table: PatchTable | None) -> None:
    """Hand a counted table (``prob`` included when predicted) to the dock, or compute."""
    if table is None:
        model.compute()
        return
    model.actions.prepare_table(
        state, table.frame, table.grid, f"Patch table of {state.slide.name}"
    )
