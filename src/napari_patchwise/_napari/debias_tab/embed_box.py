"""The Debias tab's "Embed" box: features of the open slide (or its cohort) from an encoder.

Choose an encoder — a pathology preset (``uni``, ``uni2-h``...) or ``timm:NAME`` — and
its local weights file; "Embed" runs ``patchwise embed`` (:func:`napari_patchwise.training.embed.embed`)
in a background job with the dock's patch grid (patch size and stride), so the vectors line
up with the grid's cells. The progress bar counts stored chunks; Cancel stops at the next
chunk and removes the unfinished store (the dock always embeds into a fresh folder, so
there is nothing to continue later). When it is done the store is put into the
"Retrain head" box: with "whole cohort" its head can be retrained at once; a store of
the open slide alone serves ``patchwise discover`` and the CLI (a head needs the
cohort's training and validation slides).

Without a weights file a timm encoder is randomly initialised; the box says so beside
the weights field and again when the embed starts.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from ...errors import PatchwiseError
from ..dock import notify
from ..model_tab.encoder_choice import (
    WEIGHTS_FILTER,
    editable_combo,
    encoder_items,
    encoder_tooltip,
    random_init_note,
    weights_note,
)
from ..model_tab.train_form import line_edit_with_button


def default_store_root() -> Path:
    """Where feature stores go unless another folder is chosen."""
    return Path(tempfile.gettempdir()) / "patchwise-features"


def store_path(root: Path, slide: str, encoder: str) -> Path:
    """``root/SLIDE-ENCODER.zarr`` (``-2``, ``-3``... when taken): a fresh store path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{slide}-{encoder}")
    out, n = root / f"{stem}.zarr", 2
    while out.exists() or Path(f"{out}.partial").exists():
        out, n = root / f"{stem}-{n}.zarr", n + 1
    return out


class EmbedBox(QGroupBox):
    """Embed the open slide (or its cohort) with an encoder, in the background.

    Parts: ``encoder_combo``, ``weights_edit``, ``weights_note``, ``input_size``,
    ``channels_edit``, ``cohort_check``, ``out_edit``, ``embed_button``,
    ``cancel_button``, ``progress_bar``, ``status_label``. ``embedded`` carries the
    store's path once it is complete. ``options`` are further :func:`embed` keywords
    (tests: ``chunk_rows``, ``batch_size``, ``device``). ``model``: the dock's
    :class:`.dock_model.DockModel`; ``retrain``: the Debias tab's head box, which gets
    the finished store (set by the tab).
    """

    embedded = Signal(object)

    def __init__(self, model) -> None:
        super().__init__("Embed with an encoder")
        self.model = model
        self.retrain = None  # the Debias tab's RetrainBox
        self.options: dict = {}
        self.job = model.jobs.job("the embedding", "Patchwise: embedding cancelled", parent=self)
        self.job.busy_changed.connect(self._on_busy)
        self.job.on_error = lambda text: self.status_label.setText("failed: " + text)
        self._build_ui()

    def _build_ui(self) -> None:
        form = QFormLayout(self)
        self.encoder_combo = editable_combo(encoder_items(), encoder_tooltip())
        form.addRow("encoder", self.encoder_combo)
        self.weights_edit, row = line_edit_with_button(
            "weights file (.safetensors, .bin, .pth)", self._ask_weights
        )
        form.addRow("weights", row)
        self.weights_note = weights_note(self.encoder_combo, self.weights_edit)
        form.addRow(self.weights_note)
        self.input_size = QSpinBox()
        self.input_size.setRange(0, 4096)
        self.input_size.setSpecialValueText("model's")
        self.input_size.setToolTip("input side of a timm:NAME model (a preset's is its own)")
        self.channels_edit = QLineEdit()
        self.channels_edit.setPlaceholderText("R,G,B from channels (e.g. TPEF,SHG,CARS)")
        self.channels_edit.setToolTip(
            "which of the slide's channels make the encoder's R, G, B; 'a+b' is their mean "
            "(empty: RGB as RGB, else the first three; docs/encoders.md)"
        )
        sizes = QHBoxLayout()
        sizes.addWidget(QLabel("input"))
        sizes.addWidget(self.input_size)
        sizes.addWidget(self.channels_edit, stretch=1)
        form.addRow("", sizes)
        self.cohort_check = QCheckBox("whole cohort (the Retrain box's manifest)")
        self.cohort_check.setToolTip(
            "embed every slide of the cohort manifest (a head is trained on a cohort's "
            "features); unchecked: the open slide only"
        )
        form.addRow("", self.cohort_check)
        self.out_edit, row = line_edit_with_button(str(default_store_root()), self._ask_out)
        self.out_edit.setToolTip("stores are named SLIDE-ENCODER.zarr inside this folder")
        form.addRow("stores in", row)
        buttons = QHBoxLayout()
        self.embed_button = QPushButton("Embed")
        self.embed_button.setToolTip("one feature vector per patch of the dock's grid")
        self.cancel_button = QPushButton("Cancel embedding")
        self.cancel_button.setToolTip("stop the embedding; nothing half-written is kept")
        self.cancel_button.setEnabled(False)
        self.embed_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.embed_button, stretch=1)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m chunks")
        self.status_label = QLabel("choose an encoder and its weights file")
        self.status_label.setWordWrap(True)
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)

    # -- showing --------------------------------------------------------------------------
    def _ask_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Encoder weights", "", WEIGHTS_FILTER)
        if path:
            self.weights_edit.setText(path)

    def _ask_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for feature stores")
        if path:
            self.out_edit.setText(path)

    # -- embedding ------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.job.running

    def request(self):
        """``(target, out, EmbedSource, PatchSettings)`` of the fields (one-line errors)."""
        from ...settings import PatchSettings
        from ...training.embed import EmbedSource
        from ...training.encoders import encoder_names_help, is_encoder_name

        state = self.model.require_state()
        if state.data is None:
            raise PatchwiseError(
                f"{state.slide.name}: no patch grid yet — compute it first (the features "
                "follow its patch size)"
            )
        name = self.encoder_combo.currentText().strip()
        if not is_encoder_name(name):
            raise PatchwiseError(f"unknown encoder {name!r}", hint=encoder_names_help())
        weights = self.weights_edit.text().strip() or None
        if weights is not None and not Path(weights).is_file():
            # read and matched to the encoder in the job (a big file takes seconds)
            raise PatchwiseError("weights file not found", path=weights)
        target = self._target(state)
        slide = state.slide.name if not self.cohort_check.isChecked() else Path(target).stem
        root = Path(self.out_edit.text().strip() or default_store_root())
        out = store_path(root, slide, name)
        source = EmbedSource(
            backbone=name,
            weights=weights,
            channels=self.channels_edit.text().strip() or None,
            input_size=self.input_size.value() or None,
        )
        settings = PatchSettings(state.settings.patch.patch_size, state.settings.patch.stride)
        return target, out, source, settings

    def _target(self, state) -> str:
        if self.cohort_check.isChecked():
            manifest = self.retrain.manifest_edit.text().strip() if self.retrain else ""
            manifest = manifest or self.model.settings.manifest.strip()
            if not manifest or not Path(manifest).is_file():
                raise PatchwiseError("cohort manifest not found", path=manifest or "(none)")
            return manifest
        if state.slide.path is None:
            raise PatchwiseError(
                f"{state.slide.name} has no file to read patches from",
                hint="open the slide from a file (File > Open)",
            )
        return str(state.slide.path)

    def start(self) -> bool:
        """Start the embed (False after a notification when it cannot start)."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return False
        try:
            target, out, source, settings = self.request()
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        note = random_init_note(source.backbone, source.weights or "")
        if note:
            notify.warning("Patchwise: " + note)
        self.progress_bar.setRange(0, 0)  # busy until the first chunk is counted
        self.status_label.setText(f"embedding with {source.backbone} into {out.name}…")
        self.job.start(
            embed_job(target, out, source, settings, **self.options),
            returned=self._on_embedded,
            progress=self._on_progress,
            description=f"Embedding with {source.backbone}",
        )
        return True

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)

    def _on_embedded(self, out: Path) -> None:
        if self.job.cancelled():
            return
        retrain = self.retrain
        retrain.features_edit.setText(str(out))
        if self.cohort_check.isChecked():
            retrain._fill_manifest()
            self.status_label.setText(f"{out}: ready — retrain a head on it below")
        else:
            self.status_label.setText(
                f"{out}: the open slide's features (a head needs the cohort's: tick 'whole cohort')"
            )
        self.embedded.emit(out)

    def cancel(self) -> None:
        self.job.cancel()
        self.status_label.setText("stopping…")

    def _on_busy(self, _busy: bool) -> None:
        busy = self.job.running
        if not busy and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self.embed_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)


def embed_job(target: str, out: Path, source, settings, **options):
    """The background job: embed into ``out``; on Cancel or an error remove what it wrote.

    The store is ``out.partial`` until complete (:func:`napari_patchwise.training.embed.embed`), so
    removing the partial store leaves nothing behind.
    """

    def job(*, cancel, progress):  # noqa: ARG001 - progress raises Cancelled
        from ...io.feature_store import partial_path
        from ...training.embed import embed

        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            return embed(
                target, out, source, settings=settings, progress=progress,
                prepare_progress=progress, **options,
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(partial_path(out), ignore_errors=True)
            raise

    return job
