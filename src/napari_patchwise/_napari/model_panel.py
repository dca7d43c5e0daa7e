"""The dock's "Model" tab: train a classifier on a cohort and predict the open slide.

* **Train** reads the fields (tau comes from the dock's tau slider) into a
  :class:`~napari_patchwise.train.TrainConfig`, checks it at once, and runs
  ``train.train`` in a napari generator worker (:func:`.train_worker.run_training`): the
  loop's callbacks only enqueue events, the generator yields them in batches, and the
  ``yielded`` callback — on the main thread — moves the progress bar and the live curves
  (training loss, validation WGA/BCA per evaluation). Cancel makes ``should_stop()``
  true: the run stops after the current step with a valid ``last.pt``.
* **Predict** runs ``predict.predict_table`` with a run's ``best.pt`` over the current
  slide's computed patch grid in a worker, then hands ``prob`` to the dock's
  ``set_predictions`` — the same path as "Load predictions…" — so the overlays, metrics,
  histograms and error list follow.

Known trap: torch.optim imports triton lazily, and triton's bundled LLVM segfaults when
it is first loaded after Mesa's llvmpipe (which any napari viewer on software OpenGL
brings in). Training therefore runs in a separate process (see :mod:`.train_worker`);
the viewer's process only runs prediction's forward passes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import PatchwiseError
from ..train import SELECT_METRICS, TrainConfig
from .train_worker import (
    Eval,
    Prepare,
    Step,
    TrainingFailed,
    TrainOutcome,
    predict_job,
    run_training,
    stop_event,
    train_groups_job,
)
from .workers import Cancelled, run_in_thread

METHODS = ("erm", "gerne", "groupdro", "resample", "reweight")
GUI_MODELS = ("smallcnn", "resnet18", "resnet50")  # smallcnn first: trains on a CPU
PREDICTION_COLUMNS = ("slide", "row", "col", "y", "x", "prob")
TRAIN_CANCELLED = "Patchwise: training cancelled (last.pt holds the last step)"
JOB_CANCELLED = "Patchwise: cancelled"


def _line_edit_with_button(placeholder: str, on_browse) -> tuple[QLineEdit, QWidget]:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    button = QPushButton("…")
    button.setFixedWidth(30)
    button.clicked.connect(on_browse)
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit)
    layout.addWidget(button)
    return edit, row


class TrainingCurves(FigureCanvasQTAgg):
    """Training loss per step and validation WGA / BCA per evaluation, redrawn live.

    Lines are updated in place (``set_data``) and drawn with ``draw_idle``, which Qt
    coalesces, so a redraw per yielded batch stays cheap.
    """

    def __init__(self) -> None:
        figure = Figure(figsize=(4.2, 3.4), layout="constrained")
        super().__init__(figure)
        self.loss_axes, self.val_axes = figure.subplots(2, 1, sharex=True)
        (self.loss_line,) = self.loss_axes.plot([], [], color="0.3", lw=1.0, label="train loss")
        (self.wga_line,) = self.val_axes.plot([], [], "o-", color="tab:red", ms=3, label="val WGA")
        (self.bca_line,) = self.val_axes.plot([], [], "s-", color="tab:blue", ms=3, label="val BCA")
        self.loss_axes.set_ylabel("loss")
        self.val_axes.set_ylabel("accuracy")
        self.val_axes.set_xlabel("step")
        self.val_axes.set_ylim(0.0, 1.02)
        self.loss_axes.legend(loc="upper right", fontsize="small")
        self.val_axes.legend(loc="lower right", fontsize="small")
        for axes in (self.loss_axes, self.val_axes):
            axes.grid(alpha=0.3)
        self.clear_curves()

    def clear_curves(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.eval_steps: list[int] = []
        self.wga: list[float] = []
        self.bca: list[float] = []
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def add_eval(self, step: int, wga: float, bca: float) -> None:
        self.eval_steps.append(step)
        self.wga.append(wga)
        self.bca.append(bca)

    def redraw(self) -> None:
        self.loss_line.set_data(self.steps, self.losses)
        self.wga_line.set_data(self.eval_steps, self.wga)
        self.bca_line.set_data(self.eval_steps, self.bca)
        last = max(self.steps[-1] if self.steps else 1, 1)
        self.val_axes.set_xlim(0, last * 1.02)
        if self.losses:
            finite = np.asarray(self.losses)[np.isfinite(self.losses)]
            if finite.size:
                top = float(finite.max())
                self.loss_axes.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)
        self.draw_idle()


class ModelPanel(QWidget):
    """Train and predict from the Patchwise dock (``dock`` is the ``PatchwiseWidget``).

    ``trained`` carries the run directory when a run ends (finished or cancelled);
    ``predicted`` is emitted once the predictions were handed to the dock.
    """

    trained = Signal(object)
    predicted = Signal()

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.extra_options: dict = {}  # further TrainConfig fields (tests: num_threads, seed)
        self.last_run: Path | None = None
        self._worker = None
        self._stop: threading.Event | None = None
        # (manifest, patch size) -> the training split's label and tissue_ratio arrays
        self._train_groups: tuple[tuple[str, int], np.ndarray, np.ndarray] | None = None
        self._build_ui()
        self._on_method()

    # -- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        train_box = QGroupBox("Train")
        form = QFormLayout(train_box)
        self.manifest_edit, manifest_row = _line_edit_with_button(
            "cohort manifest (.csv: image, mask, split)", self._ask_manifest
        )
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.method_combo.currentTextChanged.connect(self._on_method)
        self.model_combo = QComboBox()
        self.model_combo.addItems(GUI_MODELS)
        self.patch_size = _spin(2, 8192, 64)
        self.patch_size.setToolTip("patch side in level-0 pixels (predict needs the same grid)")
        self.steps = _spin(1, 10_000_000, 500)
        self.eval_every = _spin(1, 10_000_000, 50)
        self.batch_size = _spin(2, 4096, 32)
        self.lr = _double(1e-6, 10.0, 0.01, decimals=5, step=0.001)
        self.beta = _double(-1.0, 1000.0, 1.0, decimals=3, step=0.1)
        self.c = _double(0.01, 1.0, 0.5, decimals=3, step=0.05)
        self.beta.setToolTip("GERNE extrapolation factor, in [-1, beta_max) (checked at start)")
        self.c.setToolTip("GERNE: share of the less-biased batch drawn group-balanced")
        self.select_combo = QComboBox()
        self.select_combo.addItems(SELECT_METRICS)
        self.out_edit, out_row = _line_edit_with_button(
            "run folder (default: runs/ beside the manifest)", self._ask_out
        )
        form.addRow("manifest", manifest_row)
        form.addRow("method", self.method_combo)
        form.addRow("model", self.model_combo)
        form.addRow("patch size", self.patch_size)
        form.addRow("steps", self.steps)
        form.addRow("eval every", self.eval_every)
        form.addRow("batch size", self.batch_size)
        form.addRow("learning rate", self.lr)
        self.tau_label = QLabel()
        form.addRow("tau", self.tau_label)
        form.addRow("beta (GERNE)", self.beta)
        form.addRow("c (GERNE)", self.c)
        beta_row = QHBoxLayout()
        self.beta_max_label = QLabel("check the cohort to see it")
        self.beta_max_label.setWordWrap(True)
        self.check_button = QPushButton("Check cohort")
        self.check_button.setToolTip(
            "prepare the training slides' patches (cached for training) to compute the "
            "GERNE bound beta_max at the current tau and c"
        )
        self.check_button.clicked.connect(self.start_check)
        beta_row.addWidget(self.beta_max_label, stretch=1)
        beta_row.addWidget(self.check_button)
        form.addRow("beta_max", beta_row)
        form.addRow("select", self.select_combo)
        form.addRow("run folder", out_row)
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        root.addWidget(train_box)

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

        predict_box = QGroupBox("Predict the current slide")
        predict_form = QFormLayout(predict_box)
        self.run_edit, run_row = _line_edit_with_button(
            "run folder or its best*.pt / last.pt (default: the last run)", self._ask_run
        )
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.start_predict)
        predict_form.addRow("run", run_row)
        predict_form.addRow(self.predict_button)
        root.addWidget(predict_box)
        self._show_tau()
        self.dock.tau_slider.valueChanged.connect(self._show_tau)
        for spin in (self.beta, self.c):
            spin.valueChanged.connect(self._show_beta_max)
        self.manifest_edit.textChanged.connect(self._show_beta_max)
        self.patch_size.valueChanged.connect(self._show_beta_max)

    def _show_tau(self, value=None) -> None:  # noqa: ARG002
        self.tau_label.setText(f"{self.dock.tau_slider.value():.3f} (the dock's tau slider)")
        self._show_beta_max()

    def _groups_key(self) -> tuple[str, int]:
        return (self.manifest_edit.text().strip(), self.patch_size.value())

    def beta_max(self) -> float | None:
        """GERNE's bound at the current tau and c (None until the cohort was checked)."""
        if self._train_groups is None or self._train_groups[0] != self._groups_key():
            return None
        from ..methods.base import TrainingGroups
        from ..methods.gerne import beta_max

        _, label, ratio = self._train_groups
        alpha = TrainingGroups.from_table(label, ratio, self.dock.tau_slider.value()).alpha
        return beta_max(alpha, self.c.value())

    def _show_beta_max(self, value=None) -> None:  # noqa: ARG002
        bound = self.beta_max()
        if bound is None:
            self.beta_max_label.setText("check the cohort to see it")
            self.beta_max_label.setStyleSheet("")
            return
        ok = -1.0 <= self.beta.value() < bound
        self.beta_max_label.setText(
            f"{bound:.4g} at tau {self.dock.tau_slider.value():.3f}, c {self.c.value():g}"
            + ("" if ok else " — beta is too large")
        )
        self.beta_max_label.setStyleSheet("" if ok else "color: #e05050;")

    def _on_method(self, method: str | None = None) -> None:
        gerne = (method or self.method_combo.currentText()) == "gerne"
        self.beta.setEnabled(gerne)
        self.c.setEnabled(gerne)

    def _ask_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest", "", "Manifests (*.csv)")
        if path:
            self.manifest_edit.setText(path)

    def _ask_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder")
        if path:
            self.out_edit.setText(path)

    def _ask_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Trained run")
        if path:
            self.run_edit.setText(path)

    # -- training -------------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The fields as a checked :class:`TrainConfig` (raises :class:`PatchwiseError`)."""
        manifest = self.manifest_edit.text().strip()
        if not manifest:
            raise PatchwiseError("choose a cohort manifest to train on", hint="click … beside it")
        if not Path(manifest).is_file():
            raise PatchwiseError("cohort manifest not found", path=manifest)
        method = self.method_combo.currentText()
        model = self.model_combo.currentText()
        out = self.out_edit.text().strip()
        if not out:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = str(Path(manifest).resolve().parent / "runs" / f"{method}-{model}-{stamp}")
        options = dict(
            manifest=manifest,
            out=out,
            method=method,
            model=model,
            tau=float(self.dock.tau_slider.value()),
            patch_size=self.patch_size.value(),
            steps=self.steps.value(),
            eval_every=min(self.eval_every.value(), self.steps.value()),
            batch_size=self.batch_size.value(),
            lr=self.lr.value(),
            beta=self.beta.value(),
            c=self.c.value(),
            select=self.select_combo.currentText(),
        )
        options.update(self.extra_options)
        config = TrainConfig(**options)
        config.validate()
        return config

    def busy(self) -> bool:
        return self._worker is not None

    def start_training(self) -> None:
        """Train with the fields' settings in a background worker."""
        if self.busy():
            show_info("Patchwise: training or prediction is already running")
            return
        try:
            config = self.config()
        except PatchwiseError as exc:
            show_error(str(exc))
            return
        from napari.qt.threading import create_worker

        self.out_edit.setText(config.out)
        self._stop = stop_event()
        worker = create_worker(
            run_training, config, self._stop, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(self._on_events)
        worker.returned.connect(self._on_trained)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.curves.clear_curves()
        self.progress_bar.setRange(0, config.steps)
        self.progress_bar.setFormat("%v / %m steps")
        self.progress_bar.setValue(0)
        self.status_label.setText(f"preparing the cohort for {Path(config.out).name}…")
        self._start(worker)

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
            text = f"step {last.step} / {last.total} · loss {last.loss:.4f}"
            if self.curves.eval_steps:
                text += f" · val WGA {self.curves.wga[-1]:.3f} · BCA {self.curves.bca[-1]:.3f}"
            self.status_label.setText(text)
        self.curves.redraw()

    def _on_trained(self, outcome: TrainOutcome) -> None:
        self.last_run = outcome.out
        self.run_edit.setText(str(outcome.out))
        if outcome.cancelled:
            show_info(TRAIN_CANCELLED)
            self.status_label.setText(
                f"cancelled at step {self.progress_bar.value()}: {outcome.out}"
            )
        else:
            self.status_label.setText(f"done: {outcome.out}")
        self.trained.emit(outcome.out)

    # -- prediction -----------------------------------------------------------------------
    def run_dir(self) -> Path:
        """The run folder or checkpoint file to predict with (checked to exist)."""
        from ..runs import resolve_checkpoint

        text = self.run_edit.text().strip()
        if text:
            path = Path(text)
        elif self.last_run is not None:
            path = self.last_run
        else:
            raise PatchwiseError("choose a trained run folder first (or train one)")
        resolve_checkpoint(path)  # a missing best.pt is reported before any work starts
        return path

    def start_predict(self) -> None:
        """Predict the dock's current slide with the run's ``best.pt`` (or the chosen
        ``best_val_*.pt`` / ``last.pt``) in a worker."""
        if self.busy() or self.dock.busy():
            show_info("Patchwise: wait for the running computation (or cancel it)")
            return
        try:
            run_dir = self.run_dir()
            state = self.dock.current
            if state is None:
                raise PatchwiseError("open an image first (File > Open, or File > Open Sample)")
            if state.data is None:
                raise PatchwiseError(
                    f"{state.slide.name}: no patch grid yet — compute it with the model's "
                    "patch size first"
                )
        except PatchwiseError as exc:
            show_error(str(exc))
            return
        from napari.qt.threading import create_worker

        self._stop = threading.Event()
        job = predict_job(state.slide, state.data.table, run_dir)
        worker = create_worker(
            run_in_thread, job, cancel=self._stop, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(self._on_job_progress)
        worker.returned.connect(
            lambda table, st=state, run=run_dir: self._on_predicted(st, table, run)
        )
        worker.errored.connect(self._on_error)
        worker.aborted.connect(lambda: show_info(JOB_CANCELLED))
        worker.finished.connect(self._on_finished)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("%v / %m patches")
        self.status_label.setText(f"predicting {state.slide.name} with {run_dir}…")
        self._start(worker)

    def _on_job_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if total:
            self.progress_bar.setMaximum(total)
            self.progress_bar.setValue(done)

    def _on_predicted(self, state, table, run_dir: Path) -> None:
        if self._stop is not None and self._stop.is_set():
            return
        if state is not self.dock.current:
            show_info(f"Patchwise: predictions for {state.slide.name} not shown (slide changed)")
            return
        columns = [c for c in PREDICTION_COLUMNS if c in table]
        self.progress_bar.setRange(0, max(len(table), 1))
        self.progress_bar.setValue(len(table))
        if self.dock.set_predictions(table[columns], source=run_dir):
            self.status_label.setText(f"predicted {len(table):,} patches with {run_dir}")
            self.predicted.emit()

    # -- GERNE's bound -------------------------------------------------------------------
    def start_check(self) -> None:
        """Prepare the training split in a worker to show ``beta_max`` (see the tooltip)."""
        if self.busy():
            show_info("Patchwise: training or prediction is already running")
            return
        manifest, patch_size = key = self._groups_key()
        if not manifest or not Path(manifest).is_file():
            show_error(str(PatchwiseError("cohort manifest not found", path=manifest or "(none)")))
            return
        from napari.qt.threading import create_worker

        from ..data import PatchSettings

        self._stop = threading.Event()
        job = train_groups_job(manifest, PatchSettings(patch_size=patch_size))
        worker = create_worker(
            run_in_thread, job, cancel=self._stop, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(self._on_job_progress)
        worker.returned.connect(lambda arrays, k=key: self._on_checked(k, *arrays))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("preparing the cohort")
        self.status_label.setText(f"preparing the training slides of {Path(manifest).name}…")
        self._start(worker)

    def _on_checked(self, key, label: np.ndarray, ratio: np.ndarray) -> None:
        self._train_groups = (key, label, ratio)
        self.progress_bar.setFormat("cohort ready")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.status_label.setText(f"{label.size:,} training patches")
        self._show_beta_max()

    # -- shared ---------------------------------------------------------------------------
    def _start(self, worker) -> None:
        self._worker = worker
        for button in (self.train_button, self.predict_button, self.check_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Stop training after the current step (or prediction at its next batch)."""
        if self._stop is not None:
            self._stop.set()
        self.status_label.setText("stopping…")

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            show_info(JOB_CANCELLED)
            return
        from .widget import _one_line

        text = str(exc) if isinstance(exc, TrainingFailed) else _one_line(exc)
        show_error(text)
        self.status_label.setText("failed: " + text)

    def _on_finished(self) -> None:
        self._worker = None
        self._stop = None
        if self.progress_bar.maximum() == 0:  # busy indicator of a prediction that failed
            self.progress_bar.setRange(0, 1)
        for button in (self.train_button, self.predict_button, self.check_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def _metric(value) -> float:
    return float("nan") if value is None else float(value)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def _double(low: float, high: float, value: float, *, decimals: int, step: float):
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(decimals)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin
