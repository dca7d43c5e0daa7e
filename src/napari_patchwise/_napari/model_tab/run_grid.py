"""A run's own patch grid: the patch size a run was trained on is the one the dock cuts.

A model sees patches of one size; predicting it on a grid of another size would put
its probabilities on patches it never saw. Rather than refusing, the dock takes the
run's patch size (and stride) into its one patch-size field and cuts the slide again
before predicting: :meth:`RunGrid.ready`. When a run is chosen while the slide has no
grid yet, the field simply defaults to the run's size (:meth:`RunGrid.follow`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import QObject

from ...errors import PatchwiseError
from ..dock.words import size_text


def run_grid_settings(run_dir: str | Path) -> tuple[int, int]:
    """``(patch size, stride)`` a run cut its slides with (stride 0: the patch size).

    From the run's ``config.json``; a checkpoint copied out of its run gives its patch
    size from the checkpoint's meta and tiles the slide.
    """
    from ...training.runs import read_run_config
    from ..jobs.training_work import checkpoint_patch_size

    config = read_run_config(run_dir, required=False)
    if config is None:
        return checkpoint_patch_size(run_dir), 0
    return int(config.patch.patch_size), int(config.patch.stride or 0)


def grid_patch_size(state) -> int | None:
    """The patch size of ``state``'s computed grid (None: no grid yet)."""
    if state is None or state.data is None or not len(state.data.table):
        return None
    return int(state.data.table["height"].max())


class RunGrid(QObject):
    """Keeps the dock's patch grid on the run's patch size (``model``: the dock's model)."""

    def __init__(self, model, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self._pending: tuple[object, int, Callable[[], None]] | None = None
        model.applied.connect(self._on_applied)

    def follow(self, run_dir: str | Path) -> None:
        """A run was chosen: the patch-size field takes its size while there is no grid
        to keep (no error when the run cannot be read yet: Predict will say)."""
        if grid_patch_size(self.model.current) is not None:
            return
        try:
            patch, stride = run_grid_settings(run_dir)
        except (PatchwiseError, OSError):
            return
        self.model.settings.patch_size, self.model.settings.stride = patch, stride

    def ready(self, state, run_dir: str | Path, then: Callable[[], None]) -> str | None:
        """None when ``state``'s grid has the run's patch size; else start cutting it
        (``then`` is called once it is shown) and return what the dock is doing."""
        patch, stride = run_grid_settings(run_dir)
        if grid_patch_size(state) == patch:
            return None
        self.model.settings.patch_size = patch  # the window's one patch size
        self.model.settings.stride = stride
        self._pending = (state, patch, then)
        if not self.model.compute():  # refused (a notification said why)
            self._pending = None
            return "the patch grid could not be cut"
        size = size_text(patch, state.slide.pixel_size)
        return f"cutting {state.slide.name} into the run's {size} patches first…"

    def _on_applied(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        state, patch, then = pending
        if state is self.model.current and grid_patch_size(state) == patch:
            then()
