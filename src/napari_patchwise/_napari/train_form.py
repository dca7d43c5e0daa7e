"""The Model tab's "Train" box: the fields that become a :class:`TrainConfig`.

tau is not a field here: it is the dock's tau slider, so the groups a model is trained
on are the ones the user looked at. The method and model choices come from the core's
registries (``methods.METHOD_NAMES``, ``models.MODEL_NAMES``).
"""

from __future__ import annotations

import time
from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..errors import PatchwiseError
from ..methods import METHOD_NAMES
from ..models import MODEL_NAMES
from ..train_config import SELECT_METRICS, TrainConfig

#: The model choices, smallest first: smallcnn trains on a CPU in seconds.
GUI_MODELS = tuple(reversed(MODEL_NAMES))
NO_BOUND = "check the cohort to see it"


def line_edit_with_button(placeholder: str, on_browse) -> tuple[QLineEdit, QWidget]:
    """A text field with a "…" button beside it (``on_browse`` opens a file dialog)."""
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


class TrainForm(QGroupBox):
    """Manifest, method, model, steps, optimiser and GERNE fields; Check, Train, Cancel."""

    def __init__(self, parent=None) -> None:
        super().__init__("Train", parent)
        self.form = QFormLayout(self)
        self._add_data_fields()
        self._add_method_fields()
        self._add_buttons()
        self.method_combo.currentTextChanged.connect(self._on_method)
        self._on_method()

    def _add_data_fields(self) -> None:
        self.manifest_edit, manifest_row = line_edit_with_button(
            "cohort manifest (.csv: image, mask, split)", self._ask_manifest
        )
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHOD_NAMES)
        self.model_combo = QComboBox()
        self.model_combo.addItems(GUI_MODELS)
        self.patch_size = _spin(2, 8192, 64)
        self.patch_size.setToolTip("patch side in level-0 pixels (predict needs the same grid)")
        self.steps = _spin(1, 10_000_000, 500)
        self.eval_every = _spin(1, 10_000_000, 50)
        self.batch_size = _spin(2, 4096, 32)
        self.lr = _double(1e-6, 10.0, 0.01, decimals=5, step=0.001)
        for label, field in (
            ("manifest", manifest_row),
            ("method", self.method_combo),
            ("model", self.model_combo),
            ("patch size", self.patch_size),
            ("steps", self.steps),
            ("eval every", self.eval_every),
            ("batch size", self.batch_size),
            ("learning rate", self.lr),
        ):
            self.form.addRow(label, field)

    def _add_method_fields(self) -> None:
        self.tau_label = QLabel()
        self.beta = _double(-1.0, 1000.0, 1.0, decimals=3, step=0.1)
        self.c = _double(0.01, 1.0, 0.5, decimals=3, step=0.05)
        self.beta.setToolTip("GERNE extrapolation factor, in [-1, beta_max) (checked at start)")
        self.c.setToolTip("GERNE: share of the less-biased batch drawn group-balanced")
        beta_row = QHBoxLayout()
        self.beta_max_label = QLabel(NO_BOUND)
        self.beta_max_label.setWordWrap(True)
        self.check_button = QPushButton("Check cohort")
        self.check_button.setToolTip(
            "prepare the training slides' patches (cached for training) to compute the "
            "GERNE bound beta_max at the current tau and c"
        )
        beta_row.addWidget(self.beta_max_label, stretch=1)
        beta_row.addWidget(self.check_button)
        self.select_combo = QComboBox()
        self.select_combo.addItems(SELECT_METRICS)
        self.out_edit, out_row = line_edit_with_button(
            "run folder (default: runs/ beside the manifest)", self._ask_out
        )
        self.form.addRow("tau", self.tau_label)
        self.form.addRow("beta (GERNE)", self.beta)
        self.form.addRow("c (GERNE)", self.c)
        self.form.addRow("beta_max", beta_row)
        self.form.addRow("select", self.select_combo)
        self.form.addRow("run folder", out_row)

    def _add_buttons(self) -> None:
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        self.form.addRow(buttons)

    # -- showing --------------------------------------------------------------------------
    def _on_method(self, method: str | None = None) -> None:
        gerne = (method or self.method_combo.currentText()) == "gerne"
        self.beta.setEnabled(gerne)
        self.c.setEnabled(gerne)

    def show_tau(self, tau: float) -> None:
        """Show the dock's tau (the one training will use)."""
        self.tau_label.setText(f"{tau:.3f} (the dock's tau slider)")

    def show_beta_max(self, bound: float | None, tau: float) -> None:
        """Show GERNE's bound (None: unknown until the cohort is checked), red when beta
        is not below it."""
        if bound is None:
            self.beta_max_label.setText(NO_BOUND)
            self.beta_max_label.setStyleSheet("")
            return
        ok = -1.0 <= self.beta.value() < bound
        self.beta_max_label.setText(
            f"{bound:.4g} at tau {tau:.3f}, c {self.c.value():g}"
            + ("" if ok else " — beta is too large")
        )
        self.beta_max_label.setStyleSheet("" if ok else "color: #e05050;")

    # -- reading --------------------------------------------------------------------------
    def groups_key(self) -> tuple[str, int]:
        """What the training split's groups depend on besides tau: manifest, patch size."""
        return (self.manifest_edit.text().strip(), self.patch_size.value())

    def config(self, tau: float, extra_options: dict | None = None) -> TrainConfig:
        """The fields as a checked :class:`TrainConfig` (raises :class:`PatchwiseError`).

        ``extra_options`` are further ``TrainConfig`` fields (tests: ``num_threads``).
        """
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
            tau=float(tau),
            patch_size=self.patch_size.value(),
            steps=self.steps.value(),
            eval_every=min(self.eval_every.value(), self.steps.value()),
            batch_size=self.batch_size.value(),
            lr=self.lr.value(),
            beta=self.beta.value(),
            c=self.c.value(),
            select=self.select_combo.currentText(),
        )
        options.update(extra_options or {})
        config = TrainConfig.from_options(options)
        config.validate()
        return config

    # -- dialogs --------------------------------------------------------------------------
    def _ask_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest", "", "Manifests (*.csv)")
        if path:
            self.manifest_edit.setText(path)

    def _ask_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder")
        if path:
            self.out_edit.setText(path)
