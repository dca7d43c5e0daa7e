"""The dock's "Model" tab: train a classifier on a cohort and predict the open slide.

* **Train** reads the fields (:class:`.train_form.TrainForm`; tau comes from the dock's
  tau slider) into a :class:`~napari_patchwise.training.loop.TrainConfig`, checks it at once,
  and runs ``train.train`` in a :class:`.jobs.BackgroundJob` over
  :func:`.train_worker.run_training`: the loop's callbacks only enqueue events, the
  generator yields them in batches, and on the main thread they move the progress bar
  and the live curves (:class:`.curves.TrainingCurves`). Cancel makes ``should_stop()``
  true: the run stops after the current step with a valid ``last.pt``.
* **Predict** (:class:`.predict_box.PredictBox`) runs ``predict.predict_table`` with a
  run's ``best.pt`` over the current slide's patch grid in a worker (cut first with the
  run's own patch size when it has another, :class:`.run_grid.RunGrid`), then hands
  ``prob`` to the dock's ``set_predictions`` — the same path as "Load predictions…" — so
  the overlays, metrics, histograms and error list follow.
* **Check cohort** prepares the training split once to show GERNE's ``beta_max`` at any
  tau and c.

Known trap: torch.optim imports triton lazily, and triton's bundled LLVM segfaults when
it is first loaded after Mesa's llvmpipe (which any napari viewer on software OpenGL
brings in). Training therefore runs in a separate process (see :mod:`.train_worker`);
the viewer's process only runs prediction's forward passes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ...errors import PatchwiseError
from ...schema import PREDICTED_PATCH_COLUMNS
from ..dock import notify
from ..dock.attribute_choice import group_options, threshold_text
from ..jobs.training_work import (
    Eval,
    Prepare,
    Step,
    TrainOutcome,
    predict_job,
    run_training,
    stop_event,
    train_groups_job,
)
from .curves import TrainingCurves
from .predict_box import PredictBox
from .run_folder import taken_folder
from .run_grid import RunGrid
from .train_form import TrainForm

#: What a prediction hands to the dock: where each patch is, and its probability.
HANDED_COLUMNS = PREDICTED_PATCH_COLUMNS
TRAIN_CANCELLED = (
    "Patchwise: training cancelled (last.pt holds the last step; Train, then Resume run, "
    "goes on from it)"
)
JOB_CANCELLED = "Patchwise: cancelled"
BUSY = "Patchwise: training or prediction is already running"


class WindowPatchSize(QObject):
    """The window's one patch size (``model.settings.patch_size``) as the training form's
    field: ``value()``, ``setValue()``, ``valueChanged(int)``; ``pixel_size`` (the current
    slide's) and ``units_changed`` for its µm text. The grid box's field is bound to the
    same model field, so the two never disagree and the form has no field of its own.
    """

    valueChanged = Signal(int)
    units_changed = Signal()

    def __init__(self, model, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.patch_size = self  # what TrainForm reads from its ``grid``
        model.settings.events.patch_size.connect(lambda value, *_: self.valueChanged.emit(value))
        model.current_changed.connect(lambda _state: self.units_changed.emit())

    def value(self) -> int:
        return int(self.model.settings.patch_size)

    def setValue(self, value: int) -> None:  # the spin box's name
        self.model.settings.patch_size = int(value)

    @property
    def pixel_size(self):
        """The current slide's µm per pixel (None: no slide, or none recorded)."""
        state = self.model.current
        return None if state is None else state.slide.pixel_size


class ModelPanel(QWidget):
    """Train and predict from the Patchwise dock.

    ``model``: the dock's :class:`.model.DockModel` (the current slide, the window's tau,
    patch size and mask map, the runner; predictions go to
    ``model.actions.set_predictions``).

    ``trained`` carries the run directory when a run ends (finished or cancelled);
    ``predicted`` is emitted once the predictions were handed to the dock. The parts:
    ``form`` (:class:`.train_form.TrainForm`), ``progress_bar``, ``status_label``,
    ``curves``, ``predict_box``.
    """

    trained = Signal(object)
    predicted = Signal()

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.extra_options: dict = {}  # further TrainConfig fields (tests: num_threads, seed)
        self.last_run: Path | None = None
        # (manifest, patch size) -> the training split's label and tissue_ratio arrays
        self._train_groups: tuple[tuple[str, int], np.ndarray, np.ndarray] | None = None
        self.job = model.jobs.job(
            "the Model tab's job", JOB_CANCELLED, on_error=self._on_error, parent=self
        )
        self.run_grid = RunGrid(model, parent=self)  # predictions on the run's own patch size
        self._build_ui()
        self._connect()
        self._show_tau()

    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        self.form = TrainForm(grid=WindowPatchSize(self.model, self))  # the one patch size
        root.addWidget(self.form)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m steps")
        self.progress_bar.setValue(0)
        self.status_label = QLabel("idle")
        self.status_label.setWordWrap(True)
        root.addWidget(self.progress_bar)
        root.addWidget(self.status_label)
        self.curves = TrainingCurves()
        self.curves.setMinimumHeight(260)
        root.addWidget(self.curves, stretch=1)
        self.predict_box = PredictBox()
        root.addWidget(self.predict_box)

    def _connect(self) -> None:
        form = self.form
        form.train_button.clicked.connect(lambda: self.start_training())
        form.folder_choice.resume_chosen.connect(lambda: self.start_training(resume=True))
        form.folder_choice.new_folder_chosen.connect(self._train_in_new_folder)
        form.cancel_button.clicked.connect(self.cancel)
        form.check_button.clicked.connect(self.start_check)
        self.predict_box.predict_button.clicked.connect(lambda: self.start_predict())
        self.predict_box.run_chosen.connect(self.run_grid.follow)
        self.job.busy_changed.connect(self._on_busy)
        self.model.settings.events.tau.connect(self._show_tau)  # the tau slider
        self.model.groups_changed.connect(self._show_tau)  # another attribute
        for spin in (form.beta, form.c):
            spin.valueChanged.connect(self._show_beta_max)
        form.manifest_edit.textChanged.connect(self._show_beta_max)
        form.patch_size.valueChanged.connect(self._show_beta_max)

    # -- tau and GERNE's bound ------------------------------------------------------------
    def _mask_map(self) -> str:
        """The dock's mask map: one map for the slides shown and the cohort trained."""
        return str(self.model.actions.mask_map())

    def _groups_key(self) -> tuple[str, int, str]:
        """What the training split's groups depend on besides tau (raises on a bad map)."""
        return (*self.form.groups_key(), self._mask_map())

    def _tau(self) -> float:
        return float(self.model.settings.tau)

    def _show_tau(self, *_args) -> None:
        self.form.tau_label.setText(threshold_text(self.model))
        self._show_beta_max()

    def beta_max(self) -> float | None:
        """GERNE's bound at the current tau and c (None until the cohort was checked)."""
        try:
            key = self._groups_key()
        except PatchwiseError:  # a bad mask map: no bound until it is fixed
            return None
        if self._train_groups is None or self._train_groups[0] != key:
            return None
        if "attribute" in group_options(self.model):  # the check reads tissue_ratio groups
            return None
        from ...training.methods.base import TrainingGroups
        from ...training.methods.gerne import beta_max

        _, label, ratio = self._train_groups
        alpha = TrainingGroups.from_table(label, ratio, self._tau()).alpha
        return beta_max(alpha, self.form.c.value())

    def _show_beta_max(self, value=None) -> None:  # noqa: ARG002 - Qt signal argument
        self.form.show_beta_max(self.beta_max(), self._tau())

    # -- training -------------------------------------------------------------------------
    def busy(self) -> bool:
        """Training, prediction or a cohort check is running."""
        return self.job.running

    def start_training(self, *, resume: bool = False) -> None:
        """Train with the fields' settings in a background worker.

        A run folder that already holds a run is not refused as on the command line: the
        form offers Resume run (``resume``: go on from its ``last.pt``) and New run folder.
        """
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return
        self.job.name = "training"
        self.form.folder_choice.setVisible(False)
        try:
            options = {"mask_map": self._mask_map(), **group_options(self.model)}
            options.update(self.extra_options, resume=resume)
            config = self.form.config(self._tau(), options)
            taken = None if resume else taken_folder(config)
        except PatchwiseError as exc:
            notify.error(exc)
            return
        self.form.out_edit.setText(config.out)
        if taken is not None:
            self.form.folder_choice.offer(taken)
            self.status_label.setText(f"{taken.out.name} already holds a run")
            return
        self.curves.clear_curves()
        self._show_busy(config.steps, "%v / %m steps")
        self.status_label.setText(f"preparing the cohort for {Path(config.out).name}…")
        stop = stop_event()  # the training process sees it: it stops after its step
        self.job.start_generator(
            run_training,
            config,
            stop,
            stop=stop,
            yielded=self._on_events,
            returned=self._on_trained,
        )

    def _train_in_new_folder(self) -> None:
        """New run folder: the first free name next to the taken one, then train."""
        from ...training.runs import next_run_dir

        self.form.out_edit.setText(str(next_run_dir(self.form.out_edit.text().strip())))
        self.start_training()

    def _on_events(self, events: list) -> None:
        """Main thread: one yielded batch of training events."""
        for event in events:
            if isinstance(event, Step):
                self.curves.add_loss(event.step, event.loss)
            elif isinstance(event, Eval):
                self.curves.add_eval(
                    event.step,
                    _metric(event.metrics.get("val_wga")),
                    _metric(event.metrics.get("val_bca")),
                )
            elif isinstance(event, Prepare):
                self.status_label.setText(f"preparing the cohort: {event.done} / {event.total}")
        steps = [e for e in events if isinstance(e, Step)]
        if steps:
            last = steps[-1]
            self.progress_bar.setMaximum(last.total)
            self.progress_bar.setValue(last.step)
            self.status_label.setText(
                f"step {last.step} / {last.total} · loss {last.loss:.4f}"
                + self.curves.last_eval_text()
            )
        self.curves.redraw()

    def _on_trained(self, outcome: TrainOutcome) -> None:
        self.last_run = outcome.out
        self.predict_box.run_edit.setText(str(outcome.out))
        self.run_grid.follow(outcome.out)
        if outcome.cancelled:
            notify.info(TRAIN_CANCELLED)
            self.status_label.setText(
                f"cancelled at step {self.progress_bar.value()}: {outcome.out}"
            )
        else:
            self.status_label.setText(f"done: {outcome.out}")
        self.trained.emit(outcome.out)

    # -- prediction -----------------------------------------------------------------------
    def run_dir(self) -> Path:
        """The run folder or checkpoint file to predict with (checked to exist)."""
        return self.predict_box.run_dir(self.last_run)

    def start_predict(self) -> None:
        """Predict the dock's current slide with the run's ``best.pt`` (or the chosen
        ``best_val_*.pt`` / ``last.pt``) in a worker."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return
        self.job.name = "the prediction"
        try:
            run_dir = self.run_dir()
            state = self.model.require_state()
            cutting = self.run_grid.ready(state, run_dir, then=self.start_predict)
        except PatchwiseError as exc:
            notify.error(exc)
            return
        if cutting is not None:  # the run's own grid first; Predict goes on once it is shown
            self.status_label.setText(cutting)
            return
        self._show_busy(0, "%v / %m patches")
        self.status_label.setText(f"predicting {state.slide.name} with {run_dir}…")
        self.job.start(
            predict_job(state.slide, state.patch_table(), run_dir),
            returned=lambda table, st=state, run=run_dir: self._on_predicted(st, table, run),
            progress=self._on_job_progress,
        )

    def _on_job_progress(self, done: int, total: int) -> None:
        self.progress_bar.setMaximum(total)
        self.progress_bar.setValue(done)

    def _on_predicted(self, state, table, run_dir: Path) -> None:
        if self.job.cancelled():
            return
        if state is not self.model.current:
            notify.info(f"Patchwise: predictions for {state.slide.name} not shown (slide changed)")
            return
        columns = [c for c in HANDED_COLUMNS if c in table]
        self.progress_bar.setRange(0, max(len(table), 1))
        self.progress_bar.setValue(len(table))
        if self.model.actions.set_predictions(table[columns], source=run_dir):
            self.status_label.setText(f"predicted {len(table):,} patches with {run_dir}")
            self.predicted.emit()

    # -- GERNE's bound -------------------------------------------------------------------
    def start_check(self) -> None:
        """Prepare the training split in a worker to show ``beta_max`` (see the tooltip)."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return
        self.job.name = "the training split's check"
        try:
            manifest, patch_size, mask_map = key = self._groups_key()
            if not manifest or not Path(manifest).is_file():
                raise PatchwiseError("cohort manifest not found", path=manifest or "(none)")
        except PatchwiseError as exc:
            notify.error(exc)
            return
        from ...settings import PatchSettings

        self._show_busy(0, "preparing the cohort")
        self.status_label.setText(f"preparing the training slides of {Path(manifest).name}…")
        self.job.start(
            train_groups_job(manifest, PatchSettings(patch_size=patch_size, mask_map=mask_map)),
            returned=lambda arrays, k=key: self._on_checked(k, *arrays),
            progress=self._on_job_progress,
        )

    def _on_checked(self, key, label: np.ndarray, ratio: np.ndarray) -> None:
        self._train_groups = (key, label, ratio)
        self.progress_bar.setFormat("cohort ready")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.status_label.setText(f"{label.size:,} training patches")
        self._show_beta_max()

    # -- shared ---------------------------------------------------------------------------
    def _show_busy(self, maximum: int, text: str) -> None:
        """Reset the progress bar (maximum 0: a busy indicator until a total is known)."""
        self.progress_bar.setRange(0, maximum)
        self.progress_bar.setFormat(text)
        self.progress_bar.setValue(0)

    def cancel(self) -> None:
        """Stop training after the current step (or prediction at its next batch)."""
        self.job.cancel()
        self.status_label.setText("stopping…")

    def _on_error(self, text: str) -> None:
        self.status_label.setText("failed: " + text)

    def _on_busy(self, busy: bool) -> None:
        if not busy and self.progress_bar.maximum() == 0:  # a job that failed before a total
            self.progress_bar.setRange(0, 1)
        for button in (
            self.form.train_button,
            self.predict_box.predict_button,
            self.form.check_button,
        ):
            button.setEnabled(not busy)
        self.form.cancel_button.setEnabled(busy)


def _metric(value) -> float:
    return float("nan") if value is None else float(value)
