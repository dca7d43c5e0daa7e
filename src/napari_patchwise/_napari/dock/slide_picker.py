"""The dock's "Slide" box: which slide, which mask layer, which mask map.

The image choice names slides, not channel layers: a slide the reader opened (three
channel layers) is one entry, named like the slide (``test31``; a second slide of the
same name gets `` [2]``); any other image layer is its own entry. Selecting one of a
slide's layers in the layer list chooses the slide here too. Patchwise overlays are
never offered.

The mask follows the chosen slide: the mask layer the reader opened for it
(``metadata["patchwise_mask_of"]``, :func:`.layer_slide.mask_owner`), else the slide's
own mask, else a mask of nobody's that fits its size. Picking a mask draws it in the
chosen image's world coordinates (:func:`.layer_slide.align_mask_layer`); picking by
hand a mask opened for another slide is allowed after a warning, which records the
choice (the dock refuses to count a slide with another slide's mask otherwise).
"""

from __future__ import annotations

from napari.layers import Image, Labels
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox

from ...errors import PatchwiseError
from ...slide import Slide
from ..reader.layer_slide import (
    MASK_OF_KEY,
    align_mask_layer,
    fitting_factor,
    layer_slide_key,
    layer_yx,
    mask_owner,
    owner_name,
    slide_of_layer,
)
from . import notify
from .form import MaskMapField
from .state import slide_key

#: The mask choice that means "the mask the slide was opened with".
OWN_MASK = "(the slide's own mask)"


class SlideCombo(QComboBox):
    """The slide choice: one entry per slide, each holding the slide's layers.

    :meth:`setCurrentText` also takes the name of one of a slide's layers (what scripts
    written for the per-layer choice pass) and chooses its slide.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slides: list[tuple[str, list]] = []  # (entry, layers), in the combo's order

    def set_slides(self, slides: list[tuple[str, list]]) -> None:
        """Replace the entries (signals blocked: the picker says what changed)."""
        self.blockSignals(True)
        self.clear()
        self.slides = slides
        self.addItems([entry for entry, _ in slides])
        self.blockSignals(False)

    def setCurrentText(self, text: str) -> None:
        if self.findText(text) < 0:
            text = next(
                (e for e, layers in self.slides if text in [la.name for la in layers]), text
            )
        super().setCurrentText(text)

    def choose_layer(self, layer) -> None:
        """Choose the slide ``layer`` belongs to."""
        index = next((i for i, (_, ls) in enumerate(self.slides) if layer in ls), -1)
        if index >= 0:
            self.setCurrentIndex(index)

    def layers(self) -> list:
        """The chosen slide's layers (empty when there is none)."""
        index = self.currentIndex()
        return self.slides[index][1] if 0 <= index < len(self.slides) else []


class SlidePicker(QGroupBox):
    """Slide and mask pickers plus the mask-map field.

    ``layers_changed(bool)`` is emitted after the choices were rebuilt from the layer
    list (True when the chosen slide changed); ``image_chosen`` when the user (or the
    layer selection) chose another slide.
    """

    layers_changed = Signal(bool)
    image_chosen = Signal()

    def __init__(self, viewer) -> None:
        super().__init__("Slide")
        self.viewer = viewer
        self._slides: dict[int, tuple[object, Slide]] = {}  # id(layer) -> (layer, slide)
        form = QFormLayout(self)
        self.image_combo = SlideCombo()
        self.mask_combo = QComboBox()
        self.image_combo.setToolTip("The slide the dock counts and shows (an image layer)")
        self.mask_combo.setToolTip(
            "The labels layer that marks tumor and healthy tissue on the slide (its mask)"
        )
        self.mask_map_field = MaskMapField()
        form.addRow("slide", self.image_combo)
        form.addRow("mask", self.mask_combo)
        form.addRow("mask map", self.mask_map_field)
        self.image_combo.currentIndexChanged.connect(lambda _index: self.image_chosen.emit())
        self.mask_combo.currentIndexChanged.connect(lambda _index: self.align_mask())
        self.mask_combo.activated.connect(lambda _index: self._on_mask_picked())
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

    def slide_entries(self) -> list[tuple[str, list]]:
        """``(entry, layers)`` per slide: a reader's slide's channel layers together."""
        groups: dict[object, tuple[str, list]] = {}
        for layer in self.image_layers():
            slide = layer.metadata.get("patchwise_slide")
            key = slide_key(slide) if isinstance(slide, Slide) else id(layer)
            name = slide.name if isinstance(slide, Slide) else layer.name
            groups.setdefault(key, (name, []))[1].append(layer)
        entries, seen = [], {}
        for name, layers in groups.values():
            seen[name] = seen.get(name, 0) + 1
            entries.append((name if seen[name] == 1 else f"{name} [{seen[name]}]", layers))
        return entries

    def refresh(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        """Rebuild both choices from the layer list, keeping the current ones."""
        before = self.image_combo.layers()
        chosen = before[0] if before else None
        chosen_mask = self.mask_combo.currentText()
        self.image_combo.set_slides(self.slide_entries())
        self.image_combo.blockSignals(True)
        if chosen is not None:
            self.image_combo.choose_layer(chosen)
        self.image_combo.blockSignals(False)
        now = self.image_combo.layers()
        self.mask_combo.blockSignals(True)
        self.mask_combo.clear()
        self.mask_combo.addItems([OWN_MASK] + [layer.name for layer in self.mask_layers()])
        self.mask_combo.blockSignals(False)
        if chosen_mask and chosen_mask != OWN_MASK and self.mask_combo.findText(chosen_mask) > 0:
            self.mask_combo.setCurrentText(chosen_mask)
        else:  # nothing chosen yet, or the chosen mask went: the slide's own, if any
            self.follow_mask()
        self.layers_changed.emit((now[0] if now else None) is not chosen)

    def _on_active_layer(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        layer = self.viewer.layers.selection.active
        if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata:
            self.image_combo.choose_layer(layer)

    # -- the mask that goes with the slide -------------------------------------------------
    def chosen_key(self) -> str | None:
        """The :func:`slide_key` of the chosen slide (None when there is none)."""
        image = self.image_layer()
        return None if image is None else layer_slide_key(image)

    def follow_mask(self, remembered: str = "") -> str:
        """Choose the chosen slide's mask; returns the mask layer's name (or ``OWN_MASK``).

        ``remembered`` (the slide's earlier choice) if that layer is still there and is not
        another slide's; else the mask opened for this slide; else the slide's own mask
        (also when nothing fits: computing then asks for a mask); else the newest mask of
        nobody's that fits the slide's size.
        """
        image, key = self.image_layer(), self.chosen_key()
        masks = self.mask_layers()
        names = [m.name for m in masks]
        choice = OWN_MASK
        if remembered in names and mask_owner(masks[names.index(remembered)]) in (None, key):
            choice = remembered
        elif image is not None:
            own = [m for m in masks if mask_owner(m) == key]
            free = [
                m
                for m in masks
                if mask_owner(m) is None and fitting_factor(layer_yx(image), layer_yx(m))
            ]
            if own:
                choice = own[-1].name
            elif not _has_own_mask(image) and free:
                choice = free[-1].name
        self.mask_combo.setCurrentText(choice)
        return choice

    def foreign_mask(self, key: str) -> str | None:
        """The slide whose mask is chosen, when it is not slide ``key``'s (else None)."""
        owner = mask_owner(self.mask_layer()) if self.mask_layer() is not None else None
        return None if owner is None or owner == key else owner_name(owner)

    def mask_problem(self, slide: Slide, key: str) -> str | None:
        """Why slide ``slide`` (key ``key``) cannot be counted with the chosen mask, or None.

        No mask at all, or a mask opened for another slide (its counts would be another
        slide's tumor outlines over this one: silently wrong).
        """
        mask = self.mask_layer()
        if mask is None and slide.mask is None:
            return f"{slide.name}: no mask — add the tumor mask as a Labels layer and pick it"
        other = self.foreign_mask(key)
        if other is not None:
            return (
                f"{slide.name}: mask layer '{mask.name}' belongs to slide '{other}' — "
                f"pick {slide.name}'s mask (or open it: File > Open)"
            )
        return None

    def _on_mask_picked(self) -> None:
        """The user picked a mask by hand: one opened for another slide is warned about."""
        mask, key = self.mask_layer(), self.chosen_key()
        if mask is None or key is None:
            return
        other = self.foreign_mask(key)
        if other is not None:
            notify.warning(
                f"Patchwise: mask '{mask.name}' was opened for slide '{other}'; it is now "
                f"the mask of '{self.image_combo.currentText()}' — pick another mask if "
                "that was not meant"
            )
            mask.metadata[MASK_OF_KEY] = key  # the user's choice, no longer refused

    # -- the chosen layers ----------------------------------------------------------------
    def image_layer(self) -> Image | None:
        """The chosen slide's first image layer (None when there is none)."""
        layers = self.image_combo.layers()
        return layers[0] if layers else None

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


def _has_own_mask(image) -> bool:
    """Whether an image layer's slide came with its own mask (the reader's sample)."""
    slide = (image.metadata or {}).get("patchwise_slide")
    return isinstance(slide, Slide) and slide.mask is not None
