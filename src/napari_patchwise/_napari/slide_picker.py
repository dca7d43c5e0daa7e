"""The dock's "Slide" box: which image layer, which mask layer, which mask map.

The choices follow the viewer's layer list (Patchwise overlays are never offered), and
selecting an image layer in the layer list chooses it here too. Picking a mask draws it
in the chosen image's world coordinates (:func:`.layer_slide.align_mask_layer`).
"""

from __future__ import annotations

from napari.layers import Image, Labels
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox

from ..errors import PatchwiseError
from ..slide import Slide
from .form import MaskMapField
from .layer_slide import align_mask_layer, slide_of_layer
from .state import slide_key

#: The mask choice that means "the mask the slide was opened with".
OWN_MASK = "(the slide's own mask)"


class SlidePicker(QGroupBox):
    """Image and mask layer pickers plus the mask-map field.

    ``layers_changed(bool)`` is emitted after the choices were rebuilt from the layer
    list (True when the chosen image changed); ``image_chosen`` when the user (or the
    layer selection) chose another image.
    """

    layers_changed = Signal(bool)
    image_chosen = Signal()

    def __init__(self, viewer) -> None:
        super().__init__("Slide")
        self.viewer = viewer
        self._slides: dict[int, tuple[object, Slide]] = {}  # id(layer) -> (layer, slide)
        form = QFormLayout(self)
        self.image_combo = QComboBox()
        self.mask_combo = QComboBox()
        self.mask_map_field = MaskMapField()
        form.addRow("image", self.image_combo)
        form.addRow("mask", self.mask_combo)
        form.addRow("mask map", self.mask_map_field)
        self.image_combo.currentIndexChanged.connect(lambda _index: self.image_chosen.emit())
        self.mask_combo.currentIndexChanged.connect(lambda _index: self.align_mask())
        layers = viewer.layers
        layers.events.inserted.connect(self.refresh)
        layers.events.removed.connect(self.refresh)
        layers.selection.events.active.connect(self._on_active_layer)

    # -- the layer lists ------------------------------------------------------------------
    def image_layers(self) -> list[Image]:
        """The viewer's image layers that may be a slide (not Patchwise overlays)."""
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata
        ]

    def mask_layers(self) -> list[Labels]:
        """The viewer's Labels layers that may be a mask."""
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and "patchwise_overlay" not in layer.metadata
        ]

    def refresh(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        """Rebuild both choices from the layer list, keeping the current ones."""
        chosen = self.image_combo.currentText()
        chosen_mask = self.mask_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems([layer.name for layer in self.image_layers()])
        if chosen:
            self.image_combo.setCurrentText(chosen)
        self.image_combo.blockSignals(False)
        self.mask_combo.clear()
        self.mask_combo.addItems([OWN_MASK] + [layer.name for layer in self.mask_layers()])
        if chosen_mask:
            self.mask_combo.setCurrentText(chosen_mask)
        elif self.mask_combo.count() > 1:
            self.mask_combo.setCurrentIndex(1)
        self.layers_changed.emit(self.image_combo.currentText() != chosen)

    def _on_active_layer(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        layer = self.viewer.layers.selection.active
        if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata:
            self.image_combo.setCurrentText(layer.name)

    # -- the chosen layers ----------------------------------------------------------------
    def image_layer(self) -> Image | None:
        """The chosen image layer (None when there is none)."""
        name = self.image_combo.currentText()
        return next((la for la in self.image_layers() if la.name == name), None)

    def mask_layer(self) -> Labels | None:
        """The chosen mask layer (None: the slide's own mask)."""
        name = self.mask_combo.currentText()
        return next((la for la in self.mask_layers() if la.name == name), None)

    def align_mask(self) -> bool:
        """Draw the chosen mask in the chosen image's world coordinates.

        The mask takes the image layer's scale (times its integer factor for a
        downsampled mask) and translate, so a plain TIFF mask without a pixel size lies on
        a slide whose pixel size is 0.5 um. Returns False when there is nothing to align
        or the sizes do not fit (computing then reports the mismatch).
        """
        image, mask = self.image_layer(), self.mask_layer()
        if image is None or mask is None:
            return False
        return align_mask_layer(mask, image)

    def slide_of(self, layer) -> Slide:
        """The slide an image layer shows (wrapped once per layer, then remembered)."""
        cached = self._slides.get(id(layer))
        if cached is None or cached[0] is not layer:
            cached = self._slides[id(layer)] = (layer, slide_of_layer(layer))
        return cached[1]

    def layer_showing(self, key: str) -> Image | None:
        """The image layer showing the slide ``key`` (its transform places the overlays)."""
        for layer in self.image_layers():
            try:
                if slide_key(self.slide_of(layer)) == key:
                    return layer
            except PatchwiseError:
                continue
        return None
