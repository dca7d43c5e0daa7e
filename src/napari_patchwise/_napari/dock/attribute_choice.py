"""The dock's attribute choice: which per-patch attribute forms the groups (docs/attributes.md).

The combo box sits in :class:`.tuning.TuningBox` above the threshold slider (tau for
``tissue_ratio``, the paper's attribute; the attribute's own units otherwise). Choosing an
attribute regroups the current slide's patches in the grid job: the column is computed
chunk by chunk when the table lacks it (:func:`.workers.with_attribute`: mean/std
intensity per channel, border fraction), then :func:`.workers.prepare` rebuilds the
groups overlay, the evaluator behind the counts and metrics, and the histograms' view
(no tau marker for another attribute). Each slide remembers the threshold of every
attribute it was grouped by. Training from the Model tab uses the same groups.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QObject

from ...errors import PatchwiseError
from ...groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, numeric_attribute_columns
from ...schema import BORDER_COLUMN, intensity_columns
from . import notify
from .state import SlideSettings, SlideState


def attribute_choices(state: SlideState | None) -> list[str]:
    """tissue_ratio, the table's numeric attribute columns, then those the dock can compute."""
    names = [DEFAULT_ATTRIBUTE]
    if state is None:
        return names
    if state.data is not None:
        names += [c for c in numeric_attribute_columns(state.data.table) if c not in names]
    for name in (*intensity_columns(state.slide.channel_names), BORDER_COLUMN):
        if name not in names:
            names.append(name)
    return names


def group_options(model) -> dict:
    """The :class:`~napari_patchwise.training.loop.TrainConfig` options of the dock's groups.

    ``model``: the dock's :class:`.model.DockModel`. The attribute is the current slide's
    setting, the one source of truth (tissue_ratio without a slide); the threshold is the
    model's ``tau`` (the tau / threshold slider).
    """
    state = model.current
    attribute = (state.settings.attribute if state is not None else "") or DEFAULT_ATTRIBUTE
    value = float(model.settings.tau)
    if attribute == DEFAULT_ATTRIBUTE:
        return {"tau": value}
    return {"tau": DEFAULT_TAU, "attribute": attribute, "attribute_threshold": value}


def threshold_text(model) -> str:
    """How the Model tab shows the groups training will use."""
    options = group_options(model)
    if "attribute" not in options:
        return f"{options['tau']:.3f} (the dock's tau slider)"
    return f"{options['attribute']} >= {options['attribute_threshold']:g} (the dock's groups)"


class AttributeChoice(QObject):
    """Regroups the current slide when another attribute is chosen.

    ``model``: the dock's :class:`.model.DockModel`; the attribute combo box and the
    Debias tab's ranking ask through its ``group_requested`` event; the grid job
    regroups; ``groups_changed`` tells the Model tab, ``slide_settings_changed`` the
    sliders.
    """

    def __init__(self, model, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.thresholds: dict[tuple[str, str], float] = {}  # (slide key, attribute) -> t
        model.group_requested.connect(self._on_requested)
        model.applied.connect(self._sync_overlay)

    def _sync_overlay(self) -> None:
        """A table was shown: put the groups overlay's step at the settled threshold (a
        loaded table without the chosen column falls back to tissue_ratio and its tau)."""
        state = self.model.current
        if state is not None and state.data is not None and state.overlays is not None:
            state.overlays.set_tau(state.data.overlay_threshold(state.settings.tau))

    def _on_requested(self, attribute: str, threshold: float) -> None:
        state = self.model.current
        if state is not None and math.isfinite(threshold):
            self.thresholds[(state.key, attribute)] = float(threshold)
        self.choose(attribute)

    def choose(self, attribute: str) -> None:
        """Group the current slide by ``attribute`` (at its remembered threshold, else
        tau's default for tissue_ratio and the median for any other attribute)."""
        model, state = self.model, self.model.current
        if state is None or attribute == state.settings.attribute:
            return
        s = state.settings
        self.thresholds[(state.key, s.attribute)] = s.tau
        s.attribute = attribute
        default = SlideSettings.tau if attribute == DEFAULT_ATTRIBUTE else math.nan
        s.tau = self.thresholds.get((state.key, attribute), default)
        model.groups_changed.emit()
        if state.data is None or not model.jobs.idle():  # the next computed table is grouped so
            s.tau = s.tau if math.isfinite(s.tau) else SlideSettings.tau
            model.slide_settings_changed.emit(state)
            return
        try:
            job = self._job(state, attribute)
        except PatchwiseError as exc:  # a bad mask map
            notify.error(exc)
            return
        model.grid_job.start(
            job,
            returned=lambda result, st=state: self._apply(st, result),
            description=f"Groups of {state.slide.name} by {attribute}",
        )

    def _job(self, state: SlideState, attribute: str):
        from dataclasses import replace

        from ...patches.table import resolved_settings
        from ..jobs.grid_work import prepare, with_attribute
        from ..reader.layer_slide import with_mask_layer, with_own_mask

        table, base = state.patch_table(), state.slide
        settings = state.settings.patch
        mask_layer = self.model.actions.mask_layer()
        mask_map = self.model.actions.mask_map()  # read on the main thread

        # the table's grid, counted with the form's tissue settings
        table = replace(table, settings=resolved_settings(settings, base))

        def job(*, cancel, progress):  # noqa: ARG001 - dask stops at Cancel through progress
            if attribute not in table.frame:
                if mask_layer is None:
                    slide = with_own_mask(base, mask_map)
                else:
                    slide = with_mask_layer(base, mask_layer, mask_map=mask_map)
                full = with_attribute(table, slide, attribute, progress)
                return prepare(full.frame, full.grid, attribute)
            return prepare(table.frame, table.grid, attribute)

        return job

    def _apply(self, state: SlideState, result) -> None:
        values = result.data.attribute_values
        if not math.isfinite(state.settings.tau):
            finite = values[np.isfinite(values)]
            state.settings.tau = float(np.median(finite)) if finite.size else 0.0
        self.model.actions.apply_result(state, result)
        self.model.groups_changed.emit()
