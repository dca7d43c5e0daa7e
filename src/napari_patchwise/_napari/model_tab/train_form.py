"""The Model tab's "Train" box: the fields that become a :class:`TrainConfig`.

tau is not a field here: it is the dock's tau slider, so the groups a model is trained
on are the ones the user looked at. The method, model and preset choices come from the
core's registries (``methods.METHOD_NAMES``, ``models.MODEL_NAMES`` and the encoder
presets and ``timm:NAME`` of :mod:`.encoder_choice`, ``presets.PRESET_NAMES``). Choosing a preset writes its values into the fields it shares
with the form; the options the form does not show (weight decay, momentum...) come from
the preset when the config is built (``TrainConfig.from_options``), as on the command line.
"""

from __future__ import annotations

import time
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
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

from ...errors import PatchwiseError
from ...settings import DEFAULT_PATCH_SIZE
from ...training.config import SELECT_METRICS, TrainConfig
from ...training.methods import METHOD_NAMES, get_method
from ...training.models import MODEL_NAMES
from ...training.presets import PRESET_NAMES, get_preset
from ..dock.words import flag_words, size_text
from .encoder_choice import (
    WEIGHTS_FILTER,
    editable_combo,
    encoder_items,
    encoder_tooltip,
    weights_note,
)
from .run_folder import RunFolderChoice

#: The methods the Model tab trains: those with SGD steps. DFR (``sgd = False``) fits a
#: head on a feature store: the Debias tab offers it, where there is one.
GUI_METHODS = tuple(name for name in METHOD_NAMES if get_method(name).sgd)
#: The model choices, smallest first: smallcnn trains on a CPU in seconds.
GUI_MODELS = tuple(reversed(MODEL_NAMES))
NO_BOUND = "check the cohort to see it"
#: The preset list's first entry: the form's own values, no preset.
NO_PRESET = "none"


def line_edit_with_button(
    placeholder: str, on_browse, what: str | None = None
) -> tuple[QLineEdit, QWidget]:
    """A text field with a "…" button beside it (``on_browse`` opens a file dialog).

    The button's tooltip says "choose ``what``" (default: the placeholder).
    """
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    edit.setToolTip(f"{what or placeholder}: type a path, or click … to choose one")
    button = QPushButton("…")
    button.setFixedWidth(30)
    button.setToolTip(f"choose {what or placeholder}")  # the "…" buttons' context, said
    button.setAccessibleName(f"choose {what or placeholder}")
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
    """Manifest, method, model, steps, optimiser and GERNE fields; Check, Train, Cancel.

    ``grid`` gives the window's one patch size (:class:`.panel.WindowPatchSize`: its
    ``patch_size`` field, ``pixel_size`` and ``units_changed``): the form trains with it
    and shows it in px and µm. Without one (the form alone) the form has its own field.
    """

    def __init__(self, parent=None, *, grid=None) -> None:
        super().__init__("Train", parent)
        self.grid = grid
        self.form = QFormLayout(self)
        self._add_data_fields()
        self._add_method_fields()
        self._add_buttons()
        self.method_combo.currentTextChanged.connect(self._on_method)
        self.preset_combo.currentTextChanged.connect(self.apply_preset)
        self._on_method()

    def _add_data_fields(self) -> None:
        self.manifest_edit, manifest_row = line_edit_with_button(
            "cohort manifest (.csv: image, mask, split)", self._ask_manifest
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([NO_PRESET, *PRESET_NAMES])
        self.preset_combo.setToolTip(
            "\n".join(flag_words(f"{name}: {get_preset(name).summary}") for name in PRESET_NAMES)
            + "\n(see docs/presets.md; fields changed afterwards win)"
        )
        self.method_combo = QComboBox()
        self.method_combo.addItems(GUI_METHODS)
        self.method_combo.setToolTip(
            "How training treats the groups: erm ignores them, gerne, groupdro, resample "
            "and reweight use them, jtt and gerne-inferred find them (docs/methods.md)"
        )
        # the built-in models, then the encoders (a typed timm:NAME works too)
        self.model_combo = editable_combo([*GUI_MODELS, *encoder_items()], encoder_tooltip())
        self.weights_edit, weights_row = line_edit_with_button(
            "pretrained state dict (.pt, .safetensors), optional", self._ask_weights
        )
        self.weights_edit.setToolTip(
            "a local state dict of the chosen ResNet (ImageNet) or encoder; never downloaded"
        )
        # a timm encoder without weights trains from random initialisation: said here
        self.weights_note = weights_note(self.model_combo, self.weights_edit)
        self.freeze_bn = QCheckBox("frozen BatchNorm statistics")
        self.freeze_bn.setToolTip("keep the running statistics of the weights file (needs one)")
        if self.grid is not None:  # the window's one patch-size field, shown here
            self.patch_size = self.grid.patch_size
            patch_field = self.patch_size_label = QLabel()
            patch_field.setToolTip(
                "Training cuts the cohort's slides into patches of this size: the patch "
                "size of the 'Patch grid and tissue' box above"
            )
            self.grid.units_changed.connect(self._show_patch_size)
            self.patch_size.valueChanged.connect(self._show_patch_size)
            self._show_patch_size()
        else:
            patch_field = self.patch_size = _spin(2, 8192, DEFAULT_PATCH_SIZE)
            self.patch_size.setToolTip("Side of the square patches in full-resolution pixels")
        self.steps = _spin(1, 10_000_000, 500)
        self.steps.setToolTip("How many batches training takes (Resume run can go on further)")
        self.eval_every = _spin(1, 10_000_000, 50)
        self.eval_every.setToolTip("Check the model on the validation slides every this many steps")
        self.batch_size = _spin(2, 4096, 32)
        self.batch_size.setToolTip("Patches per training step")
        self.lr = _double(1e-6, 10.0, 0.01, decimals=5, step=0.001)
        self.lr.setToolTip("Learning rate: how large each training step is")
        for label, field in (
            ("manifest", manifest_row),
            ("preset", self.preset_combo),
            ("method", self.method_combo),
            ("model", self.model_combo),
            ("weights", weights_row),
            ("", self.weights_note),
            ("", self.freeze_bn),
            ("patch size", patch_field),
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
        self.select_combo.setToolTip(
            "Which validation score picks the saved model (best.pt): worst-group accuracy "
            "(val_wga) or balanced accuracy (val_bca)"
        )
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
        self.train_button.setToolTip(
            "Train a model on the cohort's training slides with these settings and the "
            "dock's tau (in the background; the curves below follow it)"
        )
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.setToolTip(
            "Stop after the current step; the run folder keeps the last step (Resume run)"
        )
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        self.form.addRow(buttons)
        self.folder_choice = RunFolderChoice()  # a taken run folder: Resume or a new one
        self.form.addRow(self.folder_choice)
        self.out_edit.textEdited.connect(lambda _text: self.folder_choice.setVisible(False))

    # -- showing --------------------------------------------------------------------------
    def _show_patch_size(self, value=None) -> None:  # noqa: ARG002 - Qt signal argument
        size = size_text(self.patch_size.value(), self.grid.pixel_size)
        self.patch_size_label.setText(f"{size} (the patch grid's)")

    def _on_method(self, method: str | None = None) -> None:
        # GERNE and GERNE with inferred groups (docs/shortcuts.md) read beta and c
        name = method or self.method_combo.currentText()
        gerne = "beta" in get_method(name).hyperparameters
        self.beta.setEnabled(gerne)
        self.c.setEnabled(gerne)

    def apply_preset(self, name: str) -> None:
        """Write preset ``name``'s values into the fields the form has (none: no change)."""
        if name == NO_PRESET:
            return
        setters = {
            "model": self.model_combo.setCurrentText,
            "patch_size": self.patch_size.setValue,
            "steps": self.steps.setValue,
            "eval_every": self.eval_every.setValue,
            "batch_size": self.batch_size.setValue,
            "lr": self.lr.setValue,
            "c": self.c.setValue,
            "select": self.select_combo.setCurrentText,
            "freeze_bn": self.freeze_bn.setChecked,
        }
        for key, value in get_preset(name).options.items():
            if key in setters:
                setters[key](value)

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
        model = self.model_combo.currentText().strip()
        out = self.out_edit.text().strip()
        if not out:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = str(
                Path(manifest).resolve().parent
                / "runs"
                / f"{method}-{model.replace(':', '-')}-{stamp}"
            )
        preset = self.preset_combo.currentText()
        options = dict(
            manifest=manifest,
            out=out,
            preset=None if preset == NO_PRESET else preset,
            method=method,
            model=model,
            weights=self.weights_edit.text().strip() or None,
            freeze_bn=self.freeze_bn.isChecked(),
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

    def _ask_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pretrained weights", "", WEIGHTS_FILTER)
        if path:
            self.weights_edit.setText(path)

    def _ask_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder")
        if path:
            self.out_edit.setText(path)
