"""The dock's table files: load predictions or a whole patch table, save the table or GeoJSON.

A loaded table is checked against the open slide by :mod:`napari_patchwise.patches.predictions`
(the same checks ``patchwise view --table`` makes) and then prepared like a computed
one, in the dock's background job; bad files are one notification line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
from qtpy.QtWidgets import QCheckBox, QComboBox, QFileDialog, QGridLayout, QPushButton, QWidget

from ...errors import PatchwiseError
from ...patches.grid import PatchGrid
from ...patches.predictions import full_table, merge_predictions, slide_predictions, with_pred
from ...reporting.qupath import CLASS_SCHEMES, DEFAULT_SCHEME
from ..inspect.errors_export import default_path
from . import notify
from .state import SlideState

TABLE_FILTER = "Patch tables (*.parquet *.csv)"
WAIT = "Patchwise: wait for the running computation (or cancel it)"


def predictions_for(
    state: SlideState, predictions: pd.DataFrame, source
) -> tuple[pd.DataFrame, PatchGrid]:
    """``state``'s patch table with ``prob`` from ``predictions``, and its grid.

    Without a computed grid, a complete patch table (all statistics columns) is used as
    it is (:func:`~napari_patchwise.patches.predictions.full_table`).
    """
    name = state.slide.name
    predictions = slide_predictions(predictions, name, source=source)
    if state.data is None:
        return full_table(predictions, name, state.slide.shape[1:], source=source)
    merged = merge_predictions(
        state.data.table, state.data.raster.index, predictions, slide=name, source=source
    )
    return merged, state.grid


def file_source(source) -> Path | None:
    """``source`` as a path when it names a file or folder (what a session reopens)."""
    if isinstance(source, (str, Path)) and Path(source).exists():
        return Path(source).absolute()
    return None


class TableFiles(QWidget):
    """The "Load predictions…", "Save table…" and "Save GeoJSON…" buttons.

    ``model``: the dock's :class:`.model.DockModel` (the current slide, the runner, the
    grid job; a table is shown through ``model.actions.prepare_table``).
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.load_button = QPushButton("Load predictions…")
        self.save_table_button = QPushButton("Save table…")
        self.save_geojson_button = QPushButton("Save GeoJSON…")
        self.load_button.setToolTip(
            "Load a run's tumor probabilities for this slide (predictions .parquet or .csv)"
        )
        self.save_table_button.setToolTip("Save every patch's numbers as a table (.parquet, .csv)")
        self.save_geojson_button.setToolTip("Save the patches as QuPath objects (.geojson)")
        self.export_job = model.jobs.job(
            "the export",
            "Patchwise: export cancelled, no file written",
            exclusive=False,
            parent=self,
        )
        self.export_job.busy_changed.connect(
            lambda busy: self.save_geojson_button.setEnabled(not busy)
        )
        self.load_button.clicked.connect(self._ask_load_predictions)
        self.save_table_button.clicked.connect(self._ask_save_table)
        self.save_geojson_button.clicked.connect(self._ask_save_geojson)
        # what the QuPath class of a patch means (docs/annotations.md), and errors only
        self.geojson_classes = QComboBox()
        self.geojson_classes.addItems(CLASS_SCHEMES)
        self.geojson_classes.setCurrentText(DEFAULT_SCHEME)
        self.geojson_classes.setToolTip(
            "QuPath class of each patch: tumor / non-tumor (label), the four groups "
            "(group), or TP / FP / FN / TN (outcome, needs predictions)"
        )
        self.errors_only = QCheckBox("only errors")
        self.errors_only.setToolTip("save only the misclassified patches (needs predictions)")
        layout.addWidget(self.load_button, 0, 0, 1, 2)
        layout.addWidget(self.save_table_button, 1, 0)
        layout.addWidget(self.save_geojson_button, 1, 1)
        layout.addWidget(self.geojson_classes, 2, 0)
        layout.addWidget(self.errors_only, 2, 1)

    # -- reading --------------------------------------------------------------------------
    def load_predictions(self, path: str | Path) -> bool:
        """Attach a prediction table file (``prob`` per patch) to the current slide."""
        from ...io.tables import read_table

        try:
            table = read_table(path, required=("row", "col", "prob"))
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        return self.set_predictions(table, source=path)

    def load_table(self, path: str | Path) -> bool:
        """Show a complete patch table file (``patchwise stats``/``predict``) for the slide."""
        from ...io.tables import read_table
        from ...patches.table import read_table_metadata
        from ...schema import TABLE_COLUMNS

        try:
            table = read_table(path, required=TABLE_COLUMNS)
            recorded = read_table_metadata(path)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        return self.show_table(table, source=path, grid=None if recorded is None else recorded[0])

    def show_table(self, table: pd.DataFrame, *, source="table", grid=None) -> bool:
        """Show a complete patch table (with or without ``prob``) instead of computing one.

        ``grid``: the one the table file records (else guessed from its rows)."""
        if not self.model.jobs.admit(self.model.grid_job):  # the runner said what runs
            return False
        try:
            state = self.model.require_state()
            table, grid = full_table(
                table, state.slide.name, state.slide.shape[1:], source=source, grid=grid
            )
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        # the form shows the table's grid
        state.settings.patch = replace(
            state.settings.patch,
            patch_size=grid.patch_size,
            stride=None if grid.step == grid.patch_size else grid.step,
        )
        state.computed, state.predictions_source = False, None
        state.table_source = file_source(source)
        self.model.actions.prepare_table(state, table, grid, f"Patch table of {state.slide.name}")
        return True

    def set_predictions(self, predictions: pd.DataFrame, *, source="predictions") -> bool:
        """Attach an in-memory prediction table (``row, col, prob``; ``slide`` optional)."""
        if not self.model.jobs.admit(self.model.grid_job):  # the runner said what runs
            return False
        try:
            state = self.model.require_state()
            merged, grid = predictions_for(state, predictions, source)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        if state.data is None:  # a complete table with predictions: nothing else to reopen
            state.computed, state.table_source = False, None
        state.predictions_source = file_source(source)
        self.model.actions.prepare_table(state, merged, grid, f"Predictions for {state.slide.name}")
        return True

    # -- writing --------------------------------------------------------------------------
    def current_table(self) -> pd.DataFrame:
        """The current slide's table; ``pred`` follows the current threshold."""
        state = self.model.require_state()
        if state.data is None:
            raise PatchwiseError(
                f"{state.slide.name}: no patch table yet — compute the patch grid first"
            )
        return with_pred(state.data.table, state.data.prob, state.settings.threshold)

    def save_table(self, path: str | Path) -> None:
        """Write the current table (parquet or CSV by extension)."""
        from ...io.tables import write_table

        try:
            write_table(self.current_table(), path)
        except PatchwiseError as exc:
            notify.error(exc)

    def save_geojson(
        self, path: str | Path, *, scheme: str | None = None, errors_only: bool | None = None
    ) -> None:
        """Write the current table as QuPath GeoJSON tiles, in the background.

        ``scheme`` (label, group, outcome) and ``errors_only`` default to the dock's
        choices; the classes and measurements are those of ``patchwise stats --geojson``
        (:func:`napari_patchwise.reporting.qupath.write_patches`). A progress bar in napari's
        activity dock (Cancel leaves no file); when done, a notification says "saved N
        tiles to PATH". ``export_job.wait()`` blocks until then.
        """
        from ...reporting.qupath import write_patches

        if not self.model.jobs.admit(self.export_job):  # one export at a time
            return
        scheme = self.geojson_classes.currentText() if scheme is None else scheme
        errors_only = self.errors_only.isChecked() if errors_only is None else errors_only
        try:
            state = self.model.require_state()
            table = self.current_table()
            if (scheme == "outcome" or errors_only) and "prob" not in table:
                raise PatchwiseError(
                    f"{state.slide.name}: outcome classes and 'only errors' need predictions"
                    " — load predictions first, or save label or group classes"
                )
        except PatchwiseError as exc:
            notify.error(exc)
            return
        s = state.settings
        options = {
            "scheme": scheme,
            "errors_only": errors_only,
            "tau": s.tau,
            "threshold": s.threshold,
            "attribute": state.data.attribute if state.data is not None else s.attribute,
            "pixel_size": state.slide.pixel_size,
        }
        path = Path(path)

        def job(*, cancel, progress) -> int:  # noqa: ARG001 - progress raises on Cancel
            return write_patches(table, path, progress=progress, **options)

        self.export_job.start(
            job,
            returned=lambda n: notify.info(f"Patchwise: saved {n:,} tiles to {path}"),
            description=f"Saving {len(table):,} tiles to {path.name}",
        )

    # -- dialogs --------------------------------------------------------------------------
    def _ask_load_predictions(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load predictions", "", TABLE_FILTER)
        if path:
            self.load_predictions(path)

    def default_name(self, suffix: str) -> str:
        """``<slide>_<suffix>`` (``suffix`` alone without a slide), in the slide's folder."""
        return default_path(self.model.current, suffix)

    def _ask_save_table(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save patch table", self.default_name("patches.parquet"), TABLE_FILTER
        )
        if path:
            self.save_table(path)

    def _ask_save_geojson(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save GeoJSON", self.default_name("patches.geojson"), "GeoJSON (*.geojson *.json)"
        )
        if path:
            self.save_geojson(path)
