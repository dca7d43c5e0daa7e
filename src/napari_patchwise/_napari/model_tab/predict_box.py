"""The Model tab's "Predict the current slide" box: which run, and the Predict button."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QPushButton

from ...errors import PatchwiseError
from .train_form import line_edit_with_button


class PredictBox(QGroupBox):
    """A run folder (or one of its checkpoints) and the Predict button.

    ``run_chosen`` carries the path when the user picks or types a run.
    """

    run_chosen = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__("Predict the current slide", parent)
        form = QFormLayout(self)
        self.run_edit, run_row = line_edit_with_button(
            "run folder or its best*.pt / last.pt (default: the last run)", self._ask_run
        )
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip(
            "Give every patch of the open slide a tumor probability with the run's model "
            "(the grid is cut with the run's patch size)"
        )
        self.run_edit.editingFinished.connect(self._on_edited)
        form.addRow("run", run_row)
        form.addRow(self.predict_button)

    def run_dir(self, last_run: Path | None) -> Path:
        """The run folder or checkpoint file to predict with (checked to exist).

        An empty field means ``last_run`` (the run the panel trained last).
        """
        from ...training.runs import resolve_checkpoint

        text = self.run_edit.text().strip()
        if text:
            path = Path(text)
        elif last_run is not None:
            path = last_run
        else:
            raise PatchwiseError("choose a trained run folder first (or train one)")
        resolve_checkpoint(path)  # a missing best.pt is reported before any work starts
        return path

    def _ask_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Trained run")
        if path:
            self.run_edit.setText(path)
            self.run_chosen.emit(Path(path))

    def _on_edited(self) -> None:
        text = self.run_edit.text().strip()
        if text:
            self.run_chosen.emit(Path(text))
