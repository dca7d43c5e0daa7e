"""The Model tab's answer to a taken run folder: Resume run, or train in a new folder.

The command line refuses a run folder that already holds a run ("pass --resume ... or
choose another --out"); the dock asks instead. :func:`taken_folder` says whether the
folder holds a run and whether that run can be resumed with the form's settings (its
``last.pt`` is there and :func:`~napari_patchwise.training.runs.check_resume` accepts them: only
the step count may differ); :class:`RunFolderChoice` shows the two buttons.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...errors import PatchwiseError
from ...training.config import TrainConfig
from ..dock.words import dock_line


@dataclass(frozen=True)
class TakenFolder:
    """A run folder that holds a run: what it holds, and why it cannot be resumed (None:
    it can)."""

    out: Path
    what: str
    resume_problem: str | None

    @property
    def resumable(self) -> bool:
        return self.resume_problem is None


def taken_folder(config: TrainConfig) -> TakenFolder | None:
    """None when ``config.out`` is free for a new run; else what is there.

    Cheap (a ``stat`` per slide, no slide read): it runs on the main thread when Train
    is pressed. The training process checks it all again under the run's lock.
    """
    from ...training.runs import LAST, check_new_run_dir, check_resume

    out = Path(config.out)
    try:
        check_new_run_dir(out, resume=False, overwrite=False)
        return None
    except PatchwiseError as exc:
        what = exc.message
    if not (out / LAST).is_file():
        return TakenFolder(out, what, "it holds no last.pt (finished, or not a run) to go on from")
    try:
        check_resume(out, dataclasses.replace(config, resume=True))
    except PatchwiseError as exc:
        return TakenFolder(out, what, dock_line(PatchwiseError(exc.message)))
    return TakenFolder(out, what, None)


class RunFolderChoice(QWidget):
    """ "This run folder already holds a run": Resume run · New run folder (hidden until
    :meth:`offer` is called)."""

    resume_chosen = Signal()
    new_folder_chosen = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: #e8a33d;")
        buttons = QHBoxLayout()
        self.resume_button = QPushButton("Resume run")
        self.resume_button.setToolTip(
            "Go on training the run in this folder from its last saved step, up to the "
            "steps set above (its other settings stay as they were)"
        )
        self.new_button = QPushButton("New run folder")
        self.new_button.setToolTip(
            "Leave this run as it is and train in a fresh folder next to it (run -> run-2)"
        )
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.new_button)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        self.resume_button.clicked.connect(self._resume)
        self.new_button.clicked.connect(self._new_folder)
        self.setVisible(False)

    def offer(self, taken: TakenFolder) -> None:
        """Show what the folder holds and the two choices (Resume only when it can)."""
        text = f"{taken.out.name} already holds a run."
        if taken.resumable:
            text += " Resume it, or train in a new folder beside it?"
        else:
            text += f" It cannot be resumed: {taken.resume_problem.rstrip('.')}."
        self.label.setText(text)
        self.resume_button.setEnabled(taken.resumable)
        self.setVisible(True)

    def _resume(self) -> None:
        self.setVisible(False)
        self.resume_chosen.emit()

    def _new_folder(self) -> None:
        self.setVisible(False)
        self.new_folder_chosen.emit()
