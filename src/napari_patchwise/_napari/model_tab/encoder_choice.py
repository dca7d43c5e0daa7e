"""The encoders the dock offers (Model tab's model list, Debias tab's embed box).

Both lists are editable combo boxes: besides the entries below, any ``timm:NAME`` typed
in is accepted (checked when the job starts, :func:`napari_patchwise.training.encoders.encoder_spec`).
A timm encoder without a weights file is randomly initialised: :func:`random_init_note`
is the line the dock shows beside the weights field then (docs/encoders.md).
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QLabel, QLineEdit

from ...training.encoder_presets import PRESET_NAMES, get_encoder_preset
from ...training.encoders import TIMM_PREFIX, is_encoder_name

#: A few timm models to start from (any other ``timm:NAME`` can be typed in).
TIMM_EXAMPLES: tuple[str, ...] = (
    "timm:vit_small_patch16_224",
    "timm:vit_base_patch16_224",
    "timm:vit_large_patch16_224",
    "timm:vit_tiny_patch16_224",
)
#: File dialog filter of a weights file (safetensors, or a torch state dict).
WEIGHTS_FILTER = "State dicts (*.safetensors *.bin *.pth *.pt)"


def encoder_items() -> list[str]:
    """The pathology presets, then the timm examples."""
    return [*PRESET_NAMES, *TIMM_EXAMPLES]


def encoder_tooltip() -> str:
    """One line per preset (architecture, width, pixel size, model card), then timm."""
    lines = []
    for name in PRESET_NAMES:
        p = get_encoder_preset(name)
        lines.append(f"{name}: {p.arch}, {p.dim} features, {p.pixel_size:g} µm/px ({p.source})")
    lines.append(f"{TIMM_PREFIX}NAME: any timm model (type its name)")
    lines.append("weights come from a local file only (docs/encoders.md)")
    return "\n".join(lines)


def editable_combo(items: list[str], tooltip: str = "") -> QComboBox:
    """An editable combo box holding ``items`` (so ``timm:NAME`` can be typed)."""
    combo = QComboBox()
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.NoInsert)
    combo.addItems(items)
    combo.setToolTip(tooltip)
    return combo


def random_init_note(name: str, weights: str) -> str:
    """The warning shown when encoder ``name`` has no weights file ("" otherwise)."""
    if weights.strip() or not is_encoder_name(name.strip()):
        return ""
    return (
        f"no weights file: {name.strip()} is randomly initialised — its features say "
        "nothing about the published encoder (choose its weights file)"
    )


def weights_note(combo: QComboBox, weights: QLineEdit) -> QLabel:
    """A label showing :func:`random_init_note` of ``combo``'s model and ``weights``' file,
    kept up to date as either changes (hidden when there is nothing to say)."""
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet("color: #e0a030;")

    def show(*_args) -> None:
        note = random_init_note(combo.currentText(), weights.text())
        label.setText(note)
        label.setVisible(bool(note))

    combo.currentTextChanged.connect(show)
    weights.textChanged.connect(show)
    # not setVisible(True) yet: a label without a parent would open as its own window
    label.setText(random_init_note(combo.currentText(), weights.text()))
    if not label.text():
        label.hide()  # else shown with its parent
    return label
