"""The "Retrain head" box of the dock's Debias tab (docs/features.md, "In napari").

Choose a feature store (``patchwise embed``'s FEATURES.zarr) and a method; "Retrain head"
trains that method's linear head on the store at the dock's current groups — the
attribute chosen above the sliders and its threshold (tau for ``tissue_ratio``) — then
predicts the open slide with the new run's ``best.pt`` (the full model: the store's
network with the new head) and hands the probabilities to the dock, so the overlays,
metrics, histograms and error list show the new head. When a comparison is shown in the
Compare tab, or an earlier head was retrained here, the comparison follows: the earlier
head (else the store's source run) as A, the new head as B.

Training runs in the Model tab's separate process (:func:`.train_worker.run_training`:
torch's optimiser is never imported into the viewer's process, see
:mod:`.model_panel`), prediction in a worker thread; the event loop never waits on
either. A head trains in seconds; most of the wait is the child process importing torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from ...errors import PatchwiseError
from ...schema import PREDICTED_PATCH_COLUMNS
from ..dock import notify
from ..dock.attribute_choice import group_options
from ..model_tab.train_form import line_edit_with_button

#: What a prediction hands to the dock (as the Model tab's Predict).
HANDED_COLUMNS = PREDICTED_PATCH_COLUMNS
DEFAULT_METHOD = "gerne"
DEFAULT_STEPS = 300


def default_out_root() -> Path:
    """Where head runs go unless another folder is chosen."""
    return Path(tempfile.gettempdir()) / "patchwise-heads"


def run_name(method: str, options: dict) -> str:
    """``gerne-tissue_ratio-0.15``: method, attribute and threshold of a head run."""
    if "attribute" in options:
        attribute, threshold = options["attribute"], options["attribute_threshold"]
    else:
        attribute, threshold = "tissue_ratio", options["tau"]
    return f"{method}-{attribute}-{threshold:.4g}"


def fresh_folder(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... when it exists (runs are never replaced)."""
    out, n = root / name, 2
    while out.exists():
        out, n = root / f"{name}-{n}", n + 1
    return out


def store_manifest(store: str | Path) -> str | None:
    """The cohort manifest a feature store was embedded from (None: an image, or unknown)."""
    from ...io.feature_store import read_spec

    target = (read_spec(store).get("input") or {}).get("target")
    return target if target and str(target).endswith(".csv") else None


def store_source_run(store: str | Path) -> Path | None:
    """The checkpoint a store's vectors came from, when it still exists."""
    from ...io.feature_store import read_spec

    source = read_spec(store).get("source") or {}
    path = source.get("checkpoint")
    return Path(path) if source.get("kind") == "run" and path and Path(path).exists() else None


class RetrainBox(QGroupBox):
    """Retrain a head at the dock's groups, predict the slide, refresh the dock.

    ``retrained`` carries the new run folder once its predictions are shown. Parts:
    ``features_edit``, ``manifest_edit``, ``method_combo``, ``steps``, ``out_edit``,
    ``retrain_button``, ``cancel_button``, ``progress_bar``, ``status_label``.
    ``extra_options`` are further TrainConfig fields (tests: ``num_threads``).
    ``model``: the dock's :class:`.model.DockModel` (the groups, the current slide, the
    runner; predictions go to ``model.actions.set_predictions``).
    """

    retrained = Signal(object)

    def __init__(self, model) -> None:
        super().__init__("Retrain head")
        self.model = model
        self.extra_options: dict = {}
        self.last_head: Path | None = None  # the previous head's slide predictions file
        jobs = model.jobs
        self.train_job = jobs.job(
            "head training", "Patchwise: head training cancelled", parent=self
        )
        self.predict_job = jobs.job(
            "the new head's prediction", "Patchwise: prediction cancelled", parent=self
        )
        self._build_ui()
        for job in (self.train_job, self.predict_job):
            job.busy_changed.connect(self._on_busy)
            job.on_error = self._on_error

    def _build_ui(self) -> None:
        from ...training.methods import METHOD_NAMES

        form = QFormLayout(self)
        self.features_edit, row = line_edit_with_button("FEATURES.zarr", self._ask_features)
        self.features_edit.editingFinished.connect(self._fill_manifest)
        form.addRow("features", row)
        self.manifest_edit, row = line_edit_with_button("cohort.csv", self._ask_manifest)
        form.addRow("cohort", row)
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHOD_NAMES)
        self.method_combo.setCurrentText(DEFAULT_METHOD)
        self.method_combo.setToolTip(
            "How the head is retrained on the features: dfr fits it on group-balanced "
            "validation patches, the others train it as in the Model tab"
        )
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setValue(DEFAULT_STEPS)
        self.steps.setToolTip("optimisation steps of the head (dfr and dfr-train fit in one go)")
        methods = QHBoxLayout()
        methods.addWidget(self.method_combo, stretch=1)
        methods.addWidget(QLabel("steps"))
        methods.addWidget(self.steps)
        form.addRow("method", methods)
        self.out_edit, row = line_edit_with_button(str(default_out_root()), self._ask_out)
        self.out_edit.setToolTip("runs are named method-attribute-threshold inside this folder")
        form.addRow("runs in", row)
        buttons = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain head")
        self.retrain_button.setToolTip(
            "train the method's head on the features at the current attribute and threshold, "
            "then predict this slide with it"
        )
        self.cancel_button = QPushButton("Cancel retraining")
        self.cancel_button.setToolTip("Stop retraining the head (or predicting with it)")
        self.cancel_button.setEnabled(False)
        self.retrain_button.clicked.connect(self.retrain)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.retrain_button, stretch=1)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setValue(0)
        self.status_label = QLabel("choose the feature store of the slide's cohort")
        self.status_label.setWordWrap(True)
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)

    # -- dialogs --------------------------------------------------------------------------
    def _ask_features(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Feature store (FEATURES.zarr)")
        if path:
            self.features_edit.setText(path)
            self._fill_manifest()

    def _ask_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest", "", "Manifests (*.csv)")
        if path:
            self.manifest_edit.setText(path)

    def _ask_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for head runs")
        if path:
            self.out_edit.setText(path)

    def _fill_manifest(self) -> None:
        """An empty cohort field takes the store's manifest (else the Model tab's)."""
        if self.manifest_edit.text().strip():
            return
        try:
            manifest = store_manifest(self.features_edit.text().strip())
        except PatchwiseError:
            manifest = None
        manifest = manifest or self.model.settings.manifest.strip()
        self.manifest_edit.setText(manifest or "")

    # -- retraining -----------------------------------------------------------------------
    def busy(self) -> bool:
        return self.train_job.running or self.predict_job.running

    def config(self):
        """The head run's checked :class:`~napari_patchwise.training.loop.TrainConfig`."""
        from ...training.config import TrainConfig

        store = self.features_edit.text().strip()
        if not store:
            raise PatchwiseError("choose a feature store (FEATURES.zarr from `patchwise embed`)")
        if not Path(store).exists():
            raise PatchwiseError("feature store not found", path=store, hint="embed it first")
        self._fill_manifest()
        manifest = self.manifest_edit.text().strip()
        if not manifest or not Path(manifest).is_file():
            raise PatchwiseError("cohort manifest not found", path=manifest or "(none)")
        method = self.method_combo.currentText()
        groups = group_options(self.model)
        root = Path(self.out_edit.text().strip() or default_out_root())
        steps = self.steps.value()
        config = TrainConfig.from_options(
            manifest=manifest,
            features=store,
            out=str(fresh_folder(root, run_name(method, groups))),
            method=method,
            steps=steps,
            eval_every=max(1, steps // 5),
            **{**groups, **self.extra_options},
        )
        config.validate()
        return config

    def retrain(self) -> bool:
        """Start training the head (False after a notification when it cannot start)."""
        if not self.model.jobs.admit(self.train_job):  # the runner said what runs
            return False
        try:
            state = self.model.require_state()
            if state.data is None:
                raise PatchwiseError(
                    f"{state.slide.name}: no patch grid yet — compute it with the store's "
                    "patch size first"
                )
            config = self.config()
            _check_grid(state, config.features)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        from ..jobs.training_work import run_training, stop_event

        self.progress_bar.setRange(0, 0)  # busy until the first step arrives
        self.progress_bar.setFormat("%v / %m steps")
        self.status_label.setText(f"training {Path(config.out).name}…")
        stop = stop_event()
        self.train_job.start_generator(
            run_training,
            config,
            stop,
            stop=stop,
            yielded=self._on_events,
            returned=lambda outcome, st=state: self._on_trained(st, outcome),
        )
        return True

    def _on_events(self, events: list) -> None:
        from ..jobs.training_work import Step

        steps = [e for e in events if isinstance(e, Step)]
        if steps:
            self.progress_bar.setRange(0, steps[-1].total)
            self.progress_bar.setValue(steps[-1].step)

    def _on_trained(self, state, outcome) -> None:
        if outcome.cancelled:
            self.status_label.setText(f"cancelled: {outcome.out}")
            return
        from ..jobs.training_work import predict_job

        self.status_label.setText(f"predicting {state.slide.name} with {outcome.out.name}…")
        self.progress_bar.setFormat("%v / %m patches")
        # started once the training job has finished (its end would close this one's bar)
        QTimer.singleShot(
            0,
            lambda: self.predict_job.start(
                predict_job(state.slide, state.patch_table(), outcome.out),
                returned=lambda table: self._on_predicted(state, table, outcome.out),
                progress=self._on_progress,
                description=f"Predicting {state.slide.name} with the new head",
            ),
        )

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)

    def _on_predicted(self, state, table: pd.DataFrame, run: Path) -> None:
        from ...io.tables import write_table

        if self.predict_job.cancelled():
            return
        if state is not self.model.current:
            notify.info(f"Patchwise: predictions for {state.slide.name} not shown (slide changed)")
            return
        predictions = table[[c for c in HANDED_COLUMNS if c in table]]
        saved = write_table(predictions, run / f"slide-{state.slide.name}.parquet")
        previous = self.last_head or store_source_run(self.features_edit.text().strip())
        compare = previous is not None and (
            self.last_head is not None or self.model.comparison is not None
        )
        self.last_head = saved
        if not self.model.actions.set_predictions(predictions, source=run):
            return
        self.status_label.setText(f"{run.name}: {len(table):,} patches predicted")

        def shown() -> None:
            self.model.applied.disconnect(shown)
            if compare:
                self._compare_when_idle(previous, saved)
            self.retrained.emit(run)

        self.model.applied.connect(shown)

    def _compare_when_idle(self, a: Path, b: Path) -> None:
        """Compare the earlier head (or source run) with the new one once the dock is idle
        (the job runner queues it: no polling)."""
        names = (_head_name(a), _head_name(b))
        request = self.model.compare_requested
        self.model.jobs.when_idle(lambda: request.emit(a, b, names))

    def cancel(self) -> None:
        self.train_job.cancel()
        self.predict_job.cancel()
        self.status_label.setText("stopping…")

    def _on_error(self, text: str) -> None:
        self.status_label.setText("failed: " + text)

    def _on_busy(self, _busy: bool) -> None:
        busy = self.train_job.running or self.predict_job.running
        if not busy and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self.retrain_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)


def _check_grid(state, store: str) -> None:
    """Refuse before training a slide grid cut with another patch size than the store's."""
    from ...io.feature_store import read_spec

    patch_size = int(read_spec(store)["patch"]["patch_size"])
    grid_size = int(state.data.table["height"].max())
    if grid_size != patch_size:
        raise PatchwiseError(
            f"the patch grid of '{state.slide.name}' uses {grid_size} px patches but the "
            f"features were embedded from {patch_size} px patches",
            path=store,
            hint=f"compute the patch grid with patch size {patch_size}, then retrain",
        )


def _head_name(path: Path) -> str:
    """A head's run folder name (``gerne-tissue_ratio-0.15``), or the source run's method."""
    from ..compare_tab.data import source_name

    if path.suffix == ".parquet" and path.name.startswith("slide-"):
        return path.parent.name
    return source_name(path)
