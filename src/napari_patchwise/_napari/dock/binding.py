"""The dock's widgets bound to its :class:`.dock_model.DockModel`, and ``configure``.

Part of the dock itself (with :mod:`.widget`): the only module besides it that knows the
dock's nested widgets. :func:`bind_settings` ties each field of
:class:`.dock_model.DockSettings` to its widget both ways; :func:`configure` is what
``PatchwiseWidget.configure(...)`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ...io.mask import MaskMap
from ..canvas import navigation
from .model import OWN_MASK, DockModel, PartActions
from .slide_picker import OWN_MASK as OWN_MASK_TEXT


def _binding(dock) -> dict[str, tuple[object, Callable[[], object], Callable[[object], None]]]:
    """Per settings field: (the widget's change signal(s), read the widget, show a value)."""
    picker, tuning, choice = dock.picker, dock.tuning, dock.overlay_choice
    mask, manifest = picker.mask_combo, dock.model_panel.form.manifest_edit
    box = dock.compare_box

    def compare_names() -> tuple[str, str]:
        return (box.name_a.text().strip(), box.name_b.text().strip())

    def show_compare_names(names) -> None:
        box.name_a.setText(names[0])
        box.name_b.setText(names[1])

    def mask_text() -> str:
        text = mask.currentText()
        return OWN_MASK if text in ("", OWN_MASK_TEXT) else text

    def choose_overlay(value) -> None:
        if value:
            choice.choose(value)

    return {
        "patch_size": (
            dock.form.patch_size.valueChanged,
            dock.form.patch_size.value,
            dock.form.patch_size.setValue,
        ),
        "stride": (
            dock.form.stride.valueChanged,
            dock.form.stride.value,
            dock.form.stride.setValue,
        ),
        "tau": (
            tuning.tau_slider.valueChanged,
            tuning.tau_slider.value,
            tuning.tau_slider.setValue,
        ),
        "threshold": (
            tuning.threshold_slider.valueChanged,
            tuning.threshold_slider.value,
            tuning.threshold_slider.setValue,
        ),
        "mask_map": (
            picker.mask_map_field.currentTextChanged,
            picker.mask_map_field.currentText,
            picker.mask_map_field.setCurrentText,
        ),
        "mask_layer": (
            mask.currentTextChanged,
            mask_text,
            lambda value: mask.setCurrentText(value or OWN_MASK_TEXT),
        ),
        "overlay": (choice.combo.currentTextChanged, choice.choice, choose_overlay),
        "manifest": (manifest.textChanged, manifest.text, manifest.setText),
        "compare_a": (
            box.edit_a.textChanged,
            lambda: box.edit_a.text().strip(),
            box.edit_a.setText,
        ),
        "compare_b": (
            box.edit_b.textChanged,
            lambda: box.edit_b.text().strip(),
            box.edit_b.setText,
        ),
        "compare_names": (
            (box.name_a.textChanged, box.name_b.textChanged),
            compare_names,
            show_compare_names,
        ),
    }


def bind_settings(dock, model: DockModel) -> Callable[[], None]:
    """Bind the dock's widgets to ``model.settings`` both ways; returns ``pull()``.

    A field's event shows the value in its widget; the widget's change sets the field
    (psygnal emits only on a real change, so the two never loop). ``pull()`` copies every
    widget's value into the model, for code that filled widgets with signals blocked
    (showing another slide's settings).
    """
    settings = model.settings
    binding = _binding(dock)
    for name, (signal, read, show) in binding.items():

        def to_widget(value, *_old, read=read, show=show) -> None:
            if read() != value:
                show(value)

        def to_model(*_args, name=name, read=read) -> None:
            setattr(settings, name, read())

        getattr(settings.events, name).connect(to_widget)
        for one in signal if isinstance(signal, tuple) else (signal,):
            one.connect(to_model)

    def pull() -> None:
        for name, (_signal, read, _show) in binding.items():
            setattr(settings, name, read())

    pull()
    return pull


def configure(
    dock,
    *,
    image=None,
    mask=None,
    mask_map: MaskMap | str | None = None,
    patch_size: int | None = None,
    tau: float | None = None,
    threshold: float | None = None,
    overlay: str | None = None,
) -> None:
    """Set what the dock shows through its model (see ``PatchwiseWidget.configure``)."""
    model, settings = dock.model, dock.model.settings
    if image is not None:  # a layer or a slide's / layer's name
        dock.picker.image_combo.setCurrentText(getattr(image, "name", image))
    if mask is not None:
        settings.mask_layer = getattr(mask, "name", mask)
    if mask_map is not None:
        if isinstance(mask_map, MaskMap):  # its preset's label when it is one
            dock.picker.mask_map_field.set_mask_map(mask_map)
        else:
            settings.mask_map = mask_map
    if patch_size is not None:
        settings.patch_size = int(patch_size)
    if tau is not None:
        settings.tau = float(tau)
    if threshold is not None:
        settings.threshold = float(threshold)
    if overlay is not None:
        settings.overlay = overlay
        if model.jobs.idle():
            dock.overlay_choice.choose(overlay)  # shown again even when chosen already
        else:  # a table is on its way: show the overlay after it

            def once() -> None:
                model.applied.disconnect(once)
                dock.overlay_choice.choose(overlay)

            model.applied.connect(once)


def connect_model(dock, model: DockModel) -> None:
    """What the dock provides on its model and relays to it (the parts hold the model only)."""
    model.layer_showing = dock.picker.layer_showing
    model.compute = dock.compute
    model.grid_job = dock.grid_job
    model.actions = WidgetActions(dock)
    dock.picker.image_chosen.connect(model.image_chosen.emit)
    dock.picker.layers_changed.connect(model.layers_changed.emit)
    dock.model_panel.trained.connect(model.run_trained.emit)
    combo = dock.tuning.attribute_combo
    combo.activated.connect(
        lambda index: model.group_requested.emit(combo.itemText(index), math.nan)
    )

    def show_slide_settings(state) -> None:
        dock.tuning.show_settings(state.settings, state)
        dock._pull_settings()  # the sliders moved without signals: the model follows

    model.slide_settings_changed.connect(show_slide_settings)


class WidgetActions(PartActions):
    """The dock's side of :class:`.model.PartActions`: what the parts ask of the dock."""

    def __init__(self, dock) -> None:
        self._dock = dock

    def prepare_table(self, state, table, grid, description: str) -> bool:
        """Show a complete table lying on ``grid`` for ``state`` (the grid job)."""
        return self._dock.prepare_table(state, table, grid, description)

    def apply_result(self, state, result) -> None:
        """Hand a grid job's prepared result of ``state`` to the layers and views."""
        self._dock._apply_result(state, result)

    def set_predictions(self, predictions, *, source="predictions") -> bool:
        """Attach a prediction table to the current slide (as "Load predictions…")."""
        return self._dock.set_predictions(predictions, source=source)

    def load_predictions(self, path) -> bool:
        """Attach a prediction table file to the current slide."""
        return self._dock.load_predictions(path)

    def load_table(self, path) -> bool:
        """Show a complete patch table file for the current slide."""
        return self._dock.load_table(path)

    def mask_layer(self):
        """The chosen mask layer (None: the slide's own mask)."""
        return self._dock.picker.mask_layer()

    def mask_map(self):
        """The mask-map field's :class:`~napari_patchwise.io.mask.MaskMap` (raises)."""
        return self._dock.mask_map_field.mask_map()

    def image_layers(self) -> list:
        """The viewer's slide image layers."""
        return self._dock.picker.image_layers()

    def mask_layers(self) -> list:
        """The viewer's mask layers."""
        return self._dock.picker.mask_layers()

    def choose_image(self, layer) -> None:
        """Choose the slide of ``layer`` (a layer, or a layer's name)."""
        combo = self._dock.image_combo
        if isinstance(layer, str):
            combo.setCurrentText(layer)
        else:
            combo.choose_layer(layer)

    def read_form(self, settings, background) -> None:
        """Copy the grid and tissue form's values into ``settings``."""
        self._dock.form.read(settings, background)

    def remember_form(self) -> None:
        """The form's and sliders' values into the current slide's settings."""
        if self._dock.current is not None:
            self._dock._remember_form(self._dock.current)

    def show_state(self, state) -> None:
        """Show ``state``'s settings and results (the form, mask choice, sliders, tabs)."""
        self._dock._activate(state)

    def show_lists(self, state) -> None:
        """Show ``state`` in the histograms and errors list again (reviewed marks)."""
        self._dock.tabs.show_state(state)

    def choose_overlay(self, choice: str) -> None:
        """Show the overlay ``choice`` (again, when it is the one chosen)."""
        self._dock.overlay_choice.choose(choice)

    def compare(self, a, b, names) -> bool:
        """Compare two sources on the current slide (the Compare tab's job)."""
        return self._dock.compare_box.load_tables(a, b, names)


class DockActions:
    """The parts' actions as the dock's public API (mixed into ``PatchwiseWidget``)."""

    def configure(
        self,
        *,
        image=None,
        mask=None,
        mask_map=None,
        patch_size: int | None = None,
        tau: float | None = None,
        threshold: float | None = None,
        overlay: str | None = None,
    ) -> None:
        """Set what the dock shows, through its model (the dock's public settings API).

        Parameters
        ----------
        image : napari layer or str, optional
            The slide to show (an image layer, or its slide's or layer's name).
        mask : napari Labels layer or str, optional
            The mask layer of the slide (``""``: the slide's own mask).
        mask_map : MaskMap or str, optional
            What each mask value means (a :class:`~napari_patchwise.io.mask.MaskMap` or
            the mask-map field's text), for every slide.
        patch_size : int, optional
            The window's one patch size (grid and training), in level-0 pixels.
        tau, threshold : float, optional
            The current slide's attribute threshold and decision threshold.
        overlay : str, optional
            The overlay shown (``groups``, ``outcome``, ``probability``, ``labels``,
            ``comparison``, ``none``); while a table is being computed, once it is shown.

        Each value lands in :attr:`model` (``model.settings``) and the bound widget
        shows it; nothing is computed: call :meth:`compute` or :meth:`show_table`.
        """
        configure(
            self,
            image=image,
            mask=mask,
            mask_map=mask_map,
            patch_size=patch_size,
            tau=tau,
            threshold=threshold,
            overlay=overlay,
        )

    def load_predictions(self, path: str | Path) -> bool:
        """Attach a prediction table file; False (after a notification) if it does not fit."""
        return self.table_files.load_predictions(path)

    def load_table(self, path: str | Path) -> bool:
        """Show a complete patch table file (``patchwise stats``/``predict``) for the slide."""
        return self.table_files.load_table(path)

    def show_table(self, table: pd.DataFrame, *, source="table", grid=None) -> bool:
        """Show a complete patch table (with or without ``prob``) instead of computing one
        (``grid``: the one its file records; else worked out from its rows)."""
        return self.table_files.show_table(table, source=source, grid=grid)

    def set_predictions(self, predictions: pd.DataFrame, *, source="predictions") -> bool:
        """Attach an in-memory prediction table (``row, col, prob``; ``slide`` optional)."""
        return self.table_files.set_predictions(predictions, source=source)

    def save_table(self, path: str | Path) -> None:
        """Write the current table (parquet or CSV)."""
        self.table_files.save_table(path)

    def save_geojson(self, path: str | Path) -> None:
        """Write the current table as QuPath GeoJSON."""
        self.table_files.save_geojson(path)

    def go_to_patch(self, position: int) -> None:
        """Centre and zoom the view on the patch at table position ``position``."""
        state = self.current
        if state is not None and state.data is not None:
            layer = self.picker.layer_showing(state.key)
            navigation.go_to_patch(self.viewer, state, position, layer)

    def highlight_bin(self, panel: int, b: int) -> None:
        """Mark the patches of histogram ``panel``'s bin ``b`` in the viewer (-1 clears)."""
        navigation.highlight_bin(self.current, self.histograms, panel, b)

    def patch_status(self, world_position) -> str | None:
        """Status-bar text for the patch under ``world_position`` (None: no patch there)."""
        return navigation.patch_status(self.current, world_position)
