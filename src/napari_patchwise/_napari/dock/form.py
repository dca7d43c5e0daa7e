"""The dock's settings forms: patch grid and tissue (onto :class:`SlideSettings`), mask map."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...errors import PatchwiseError
from ...io.mask import MaskMap
from ...schema import BACKGROUNDS, TISSUE_MODES
from ...settings import DEFAULT_PATCH_SIZE, PatchSettings
from .state import SlideSettings
from .words import um_text


def with_um(spin: QSpinBox) -> tuple[QWidget, QLabel]:
    """``spin`` (in px) with a label beside it that shows the same length in µm."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    label = QLabel()
    label.setToolTip("the same length in micrometres (from the slide's pixel size)")
    layout.addWidget(spin, stretch=1)
    layout.addWidget(label)
    return row, label


class SettingsForm(QWidget):
    """Patch size, stride, edges; tissue source, threshold and background polarity.

    The window's one patch-size field: the Model tab trains and predicts with it too.
    ``units_changed`` is emitted when its µm text changes (another size or slide).
    """

    units_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.pixel_size = None  # the current slide's µm per pixel (y, x), None: unknown
        self.patch_size = QSpinBox()
        self.patch_size.setRange(2, 8192)
        self.patch_size.setValue(DEFAULT_PATCH_SIZE)
        self.patch_size.setSuffix(" px")
        self.patch_size.setToolTip(
            "Side of the square patches in full-resolution pixels (the µm beside it when "
            "the slide has a pixel size); training and prediction use this size too"
        )
        self.stride = QSpinBox()
        self.stride.setRange(0, 8192)
        self.stride.setSuffix(" px")
        self.stride.setSpecialValueText("= patch size")
        self.stride.setToolTip("Step between patches; '= patch size' tiles the slide")
        patch_row, self.patch_um = with_um(self.patch_size)
        stride_row, self.stride_um = with_um(self.stride)
        for spin in (self.patch_size, self.stride):
            spin.valueChanged.connect(self._show_um)
        self.keep_edges = QCheckBox("keep edge patches")
        self.keep_edges.setToolTip("Keep the partial patches at the bottom and right edges")
        self.tissue = QComboBox()
        self.tissue.addItems(TISSUE_MODES)
        self.tissue.setToolTip(
            "Where tissue comes from: the 3-class mask, or brightness (tumor-only masks)"
        )
        self.tissue_threshold = QDoubleSpinBox()
        self.tissue_threshold.setRange(0.0, 1e9)
        self.tissue_threshold.setDecimals(3)
        self.tissue_threshold.setSpecialValueText("auto (Otsu)")
        self.tissue_threshold.setToolTip(
            "Brightness above which a pixel counts as tissue (tissue from brightness only); "
            "'auto (Otsu)' picks it from the slide's histogram"
        )
        self.background = QComboBox()
        self.background.addItems(BACKGROUNDS)
        self.background.setToolTip("dark: fluorescence / nonlinear; bright: brightfield")
        layout.addRow("patch size", patch_row)
        layout.addRow("stride", stride_row)
        layout.addRow("", self.keep_edges)
        layout.addRow("tissue from", self.tissue)
        layout.addRow("tissue threshold", self.tissue_threshold)
        layout.addRow("background", self.background)

    def set_pixel_size(self, pixel_size) -> None:
        """The current slide's µm per pixel (``(y, x)`` or None): the µm labels follow."""
        self.pixel_size = pixel_size
        self._show_um()

    def _show_um(self, value=None) -> None:  # noqa: ARG002 - Qt signal argument
        stride = self.stride.value() or self.patch_size.value()
        self.patch_um.setText(um_text(self.patch_size.value(), self.pixel_size))
        self.stride_um.setText(um_text(stride, self.pixel_size))
        self.units_changed.emit()

    def patch_settings(
        self, own_background: str | None = None, mask_map: str | None = None
    ) -> PatchSettings:
        """The form's :class:`~napari_patchwise.settings.PatchSettings`.

        The spin boxes' special values are the core's automatic ``None``: stride
        "= patch size", tissue threshold "auto (Otsu)"; a background equal to
        ``own_background`` (the slide's own) is left automatic too.
        """
        background = self.background.currentText()
        return PatchSettings(
            patch_size=self.patch_size.value(),
            stride=self.stride.value() or None,
            tissue=self.tissue.currentText(),
            tissue_threshold=self.tissue_threshold.value() or None,
            background=None if background == own_background else background,
            mask_map=mask_map,
            keep_edges=self.keep_edges.isChecked(),
        )

    def read(self, settings: SlideSettings, own_background: str | None = None) -> None:
        """Copy the form's values into ``settings.patch`` (see :meth:`patch_settings`)."""
        settings.patch = self.patch_settings(own_background, settings.patch.mask_map)

    def show_settings(self, patch: PatchSettings, own_background: str = "dark") -> None:
        """Fill the form from ``patch`` (automatic values as the spin boxes' special
        values; an automatic background as ``own_background``, the slide's own)."""
        self.patch_size.setValue(patch.patch_size)
        self.stride.setValue(patch.stride or 0)
        self.keep_edges.setChecked(patch.keep_edges)
        self.tissue.setCurrentText(patch.tissue)
        self.tissue_threshold.setValue(patch.tissue_threshold or 0.0)
        self.background.setCurrentText(patch.background or own_background)


class GridBox(QGroupBox):
    """The "Patch grid and tissue" box: :class:`SettingsForm` with Compute and Cancel."""

    def __init__(self, parent=None) -> None:
        super().__init__("Patch grid and tissue", parent)
        layout = QVBoxLayout(self)
        self.form = SettingsForm()
        layout.addWidget(self.form)
        buttons = QHBoxLayout()
        self.compute_button = QPushButton("Compute patch grid")
        self.compute_button.setToolTip(
            "Cut the slide into patches with these settings and count tissue and tumor in "
            "each (runs in the background)"
        )
        self.cancel_button = QPushButton("Cancel grid")
        self.cancel_button.setToolTip("Stop computing the patch grid")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)

    def set_busy(self, busy: bool) -> None:
        """Compute while idle, Cancel while a job runs."""
        self.compute_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)


#: The mask-map presets of the dock, default first (docs/ describes the mask maps).
MASK_MAP_PRESETS = ("0=background,1=healthy,2=tumor", "binary (0=background,1=tumor)")


def mask_map_from_text(text: str) -> MaskMap:
    """The :class:`MaskMap` a "Mask map" field's text names.

    A preset's label (``"binary (0=background,1=tumor)"``) or any spec
    :meth:`MaskMap.parse` reads; an empty field is the 3-class default.

    Raises
    ------
    PatchwiseError
        The text is not a mask map (the message quotes the item it could not read).
    """
    text = text.strip()
    try:
        return MaskMap.parse(text)
    except PatchwiseError as exc:
        raise PatchwiseError(f"mask map {text!r}: {exc}") from exc


class MaskMapField(QComboBox):
    """Editable combo box: which class each mask value means, for every slide alike.

    One map for the whole dock: a mask's semantics is decided by the user once, never
    guessed per slide from the values it happens to hold.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.addItems(MASK_MAP_PRESETS)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setToolTip(
            "Value -> class of the mask, e.g. 0=background,1=healthy,2=tumor (default) or "
            "0=background,255=tumor. A mask with only 0 and 1 is a tumor-free 3-class mask "
            "unless you choose binary."
        )

    def mask_map(self) -> MaskMap:
        """The map the field names (raises :class:`PatchwiseError` for a bad spec)."""
        return mask_map_from_text(self.currentText())

    def set_mask_map(self, mask_map: MaskMap) -> None:
        """Show ``mask_map``: its preset when it is one, else its ``VALUE=CLASS`` text."""
        for preset in MASK_MAP_PRESETS:
            if mask_map_from_text(preset) == mask_map:
                self.setCurrentText(preset)
                return
        self.setCurrentText(str(mask_map))
