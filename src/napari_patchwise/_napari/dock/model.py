"""The dock's evented model: what the Patchwise dock shows, as data with events.

:class:`DockModel` holds the per-slide states (:class:`.state.SlideState`), the current
slide, the window-wide settings (:class:`DockSettings`: the one patch size, tau, the
decision threshold, the mask map, the mask layer, the overlay shown) and the one
:class:`.job_runner.JobRunner`. Widgets are bound to its fields both ways (a field's
event updates the widget, the widget's change sets the field); scripts, ``patchwise
view``, the demo and tests set the fields through the dock's ``configure(...)`` and read
them back here, never through nested Qt controls.

No layer is drawn here: the model knows no viewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psygnal import Signal, evented

from ...errors import PatchwiseError
from ...groups import DEFAULT_TAU
from ...schema import DEFAULT_THRESHOLD
from ...settings import DEFAULT_PATCH_SIZE
from ..jobs.runner import JobRunner
from .form import MASK_MAP_PRESETS
from .notify import OPEN_AN_IMAGE
from .state import SlideState

#: The mask-layer value that means "the slide's own mask" (no mask layer chosen).
OWN_MASK = ""


@evented
@dataclass
class DockSettings:
    """The window's settings; each field has an event (``settings.events.<field>``).

    ``patch_size`` is the window's one patch size: the grid box's field and the Model
    tab's training both follow it (``stride``: the grid's step, 0 = the patch size). ``tau`` and ``threshold`` are the current slide's
    sliders (each slide keeps its own in its :class:`.state.SlideSettings`); ``mask_map``
    is the mask-map field's text (one map for every slide); ``mask_layer`` the chosen mask
    layer's name (``""``: the slide's own mask); ``overlay`` the overlay shown (``""``:
    the default one, outcome with predictions, else groups); ``manifest`` the Model tab's
    cohort manifest (what the Debias tab's head training and embedding fall back on);
    ``compare_a`` / ``compare_b`` / ``compare_names`` the Compare tab's two sources and
    their names as its fields show them (a session saves them).
    """

    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int = 0  # the form's "= patch size"
    tau: float = DEFAULT_TAU
    threshold: float = DEFAULT_THRESHOLD
    mask_map: str = MASK_MAP_PRESETS[0]
    mask_layer: str = OWN_MASK
    overlay: str = ""
    manifest: str = ""
    compare_a: str = ""
    compare_b: str = ""
    compare_names: tuple[str, str] = ("", "")


class PartActions:
    """What the parts ask of the dock itself: it provides these on the model
    (``model.actions``); the defaults do nothing (a model without a dock).

    The parts never hold the dock: they call these, set the model's fields, emit its
    events. Each method is documented where the dock implements it
    (:class:`.binding.WidgetActions`).
    """

    def prepare_table(self, state, table, grid, description: str) -> bool:  # noqa: ARG002
        return False

    def apply_result(self, state, result) -> None:  # noqa: ARG002
        return None

    def set_predictions(self, predictions, *, source="predictions") -> bool:  # noqa: ARG002
        return False

    def load_predictions(self, path) -> bool:  # noqa: ARG002
        return False

    def load_table(self, path) -> bool:  # noqa: ARG002
        return False

    def mask_layer(self):
        return None

    def mask_map(self):
        raise PatchwiseError(OPEN_AN_IMAGE)

    def image_layers(self) -> list:
        return []

    def mask_layers(self) -> list:
        return []

    def choose_image(self, layer) -> None:  # noqa: ARG002
        return None

    def read_form(self, settings, background) -> None:  # noqa: ARG002
        return None

    def remember_form(self) -> None:
        return None

    def show_state(self, state) -> None:  # noqa: ARG002
        return None

    def show_lists(self, state) -> None:  # noqa: ARG002
        return None

    def choose_overlay(self, choice: str) -> None:  # noqa: ARG002
        return None

    def compare(self, a, b, names) -> bool:  # noqa: ARG002
        return False


class DockModel:
    """The dock's state: slides, the current one, settings, the job runner.

    Events: ``current_changed(state)`` when another slide (or None) becomes current;
    ``applied()`` once a computed or loaded table is fully shown; ``slide_layers_changed
    (layers)`` when the chosen slide's image layers change (another slide, layers added
    or removed); ``compared()`` once a comparison of two runs is shown;
    ``compare_requested(a, b, names)`` asks the Compare tab to compare two runs;
    ``legend_requested(entries)`` asks for a canvas legend of ``(name, colour)`` entries
    (empty: the shown overlay's own legend again); ``image_chosen()`` and
    ``layers_changed(image_changed)`` when the slide picker's choice or layers change
    (the dock switches the slide's state in its own slot: react on the next turn);
    ``group_requested(attribute, threshold)`` asks to group the current slide by
    ``attribute`` (``threshold`` NaN: its remembered one); ``groups_changed()`` once the
    grouping (attribute or its threshold) changed; ``slide_settings_changed(state)`` when
    code changed a slide's own settings (the dock shows them); ``run_trained(run_dir)``
    when the Model tab ends a training run.

    Besides the events: ``comparison`` (the Compare tab's
    :class:`.compare_data.CompareData`, None before one) and ``comparison_layer`` (its
    overlay layer); ``slide_layers`` (the chosen slide's image layers); and
    ``layer_showing(key)``, the image layer that shows the slide ``key`` (None: not
    open), ``compute()``, which cuts the current slide's grid with the settings
    (False after a notice when it cannot start), ``grid_job`` (the runner's job that
    cuts and shows grids) and ``actions`` (:class:`PartActions`): all provided by the dock.
    """

    current_changed = Signal(object)
    applied = Signal()
    slide_layers_changed = Signal(tuple)
    compared = Signal()
    compare_requested = Signal(object, object, tuple)
    legend_requested = Signal(tuple)
    image_chosen = Signal()
    layers_changed = Signal(bool)
    group_requested = Signal(str, float)
    groups_changed = Signal()
    slide_settings_changed = Signal(object)
    run_trained = Signal(object)

    def __init__(self) -> None:
        self.settings = DockSettings()
        self.states: dict[str, SlideState] = {}
        self._current: SlideState | None = None
        self.jobs = JobRunner()
        self.comparison = None
        self.comparison_layer = None
        self.slide_layers: tuple = ()
        self.layer_showing: Callable[[str], object | None] = lambda _key: None
        self.compute: Callable[[], bool] = lambda: False
        self.grid_job = None  # the dock's job of the patch grid (made by ``jobs``)
        self.actions = PartActions()

    @property
    def current(self) -> SlideState | None:
        """The slide shown in the dock (None: no image layer)."""
        return self._current

    @current.setter
    def current(self, state: SlideState | None) -> None:
        if state is self._current:
            return
        self._current = state
        self.current_changed.emit(state)

    def state_for(self, key: str) -> SlideState | None:
        """The remembered state of the slide ``key`` (None: never shown)."""
        return self.states.get(key)

    def require_state(self) -> SlideState:
        """The current slide's state (raises :class:`PatchwiseError` without a slide)."""
        if self._current is None:
            raise PatchwiseError(OPEN_AN_IMAGE)
        return self._current

    def show_slide_layers(self, layers) -> None:
        """The chosen slide's image layers are ``layers`` now (event when they changed)."""
        layers = tuple(layers)
        if layers != self.slide_layers:
            self.slide_layers = layers
            self.slide_layers_changed.emit(layers)
