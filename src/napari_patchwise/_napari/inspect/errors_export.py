"""The Errors tab's "Export errors…": every misclassified patch as CSV or QuPath objects.

All errors of the slide are written, not only the ones the list shows: a CSV
(:func:`napari_patchwise.reporting.qupath.error_table`: grid cell, position in µm and level-0
pixels, size in µm, label, probability, outcome, group, the reviewed flag) or a QuPath
GeoJSON (the one class scheme, outcome classes, only errors). The file is written in the
background and announced: "saved N errors to PATH"; its name starts as
``<slide>_errors.csv`` beside the slide.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QPushButton

from ...errors import PatchwiseError
from ..dock import notify
from ..dock.state import SlideState
from ..jobs.job import BackgroundJob

FILTERS = "Error table (*.csv);;QuPath objects (*.geojson)"


def default_path(state: SlideState | None, suffix: str = "errors.csv") -> str:
    """``<slide>_<suffix>`` in the slide's folder (the working folder without a file; the
    bare ``suffix`` without a slide): the dock's default file names."""
    if state is None:
        return suffix
    name = f"{state.slide.name}_{suffix}"
    path = state.slide.path
    return str(Path(path).parent / name) if path is not None else name


class ErrorsExport(QPushButton):
    """The "Export errors…" button; ``state()`` gives the slide whose errors it saves."""

    def __init__(self, state, parent=None) -> None:
        super().__init__("Export errors…", parent)
        self._state = state
        self.setToolTip(
            "save every misclassified patch: a table (.csv, positions in µm, the reviewed "
            "ticks) or QuPath objects (.geojson, classed FP / FN)"
        )
        self.job = BackgroundJob("Patchwise: export cancelled, no file written", parent=self)
        self.job.busy_changed.connect(lambda busy: self.setEnabled(not busy))
        self.clicked.connect(self._ask)

    def export(self, path: str | Path) -> None:
        """Write the current slide's errors to ``path`` (``.geojson``: QuPath, else CSV)."""
        from ...reporting.qupath import error_table, write_patches

        if self.job.running:
            notify.info("Patchwise: an export is already running")
            return
        state, path = self._state(), Path(path)
        geojson = path.suffix.lower() in (".geojson", ".json")
        if not geojson and not path.name.lower().endswith((".csv", ".csv.gz")):
            path = path.with_name(path.name + ".csv")  # a table, whatever the name said
        try:
            if state is None or state.data is None or state.data.prob is None:
                raise PatchwiseError("no errors to export — load predictions first")
        except PatchwiseError as exc:
            notify.error(exc)
            return
        s, d = state.settings, state.data
        options = {
            "tau": s.tau,
            "threshold": s.threshold,
            "attribute": d.attribute,
            "pixel_size": state.slide.pixel_size,
        }
        table, reviewed = d.table, frozenset(state.reviewed)

        def job(*, cancel, progress) -> int:  # noqa: ARG001 - progress raises on Cancel
            if geojson:
                return write_patches(
                    table, path, scheme="outcome", errors_only=True, progress=progress, **options
                )
            from ...io.tables import write_table

            errors = error_table(table, reviewed=reviewed, **options)
            write_table(errors, path)
            return len(errors)

        self.job.start(
            job,
            returned=lambda n: notify.info(f"Patchwise: saved {n:,} errors to {path}"),
            description=f"Saving the errors of {state.slide.name} to {path.name}",
        )

    def _ask(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export errors", default_path(self._state()), FILTERS
        )
        if path:
            self.export(path)
