"""The dock's overview: a thumbnail of the slide with the visible region, click to jump.

The thumbnail is the chosen slide's lowest pyramid level (never level 0 of a pyramid:
a whole-slide image's level 0 does not fit in memory), its channel layers coloured by
their colormaps and contrast limits and added like napari blends them. A rectangle
shows what the canvas shows (from the camera's centre and zoom and the canvas size);
it follows every pan and zoom. A click (or drag) on the thumbnail centres the camera
there. Coordinates are the layer's world coordinates (µm when the slide has a pixel
size): thumbnail pixel ``u`` of a ``w``-pixel-wide thumbnail of an ``X``-pixel-wide
level 0 is level-0 data coordinate ``-0.5 + u X / w`` (pixel edges, as napari draws
them), then the layer's scale and translate.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QImage, QPainter, QPen
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from ...palette import YELLOW
from ..reader.layer_slide import layer_yx
from .navigation import viewer_camera

#: The thumbnail's longest side at most (a lowest level larger than this is subsampled).
MAX_SIDE = 512
HEIGHT = 150  # the drawing's height in the dock, in screen pixels


def lowest_level(layer):
    """The layer's lowest-resolution level (the data itself when it is not a pyramid)."""
    return layer.data[-1] if getattr(layer, "multiscale", False) else layer.data


def thumbnail(layers) -> np.ndarray | None:
    """An RGB float image in [0, 1] of ``layers`` (one slide's channels), lowest level.

    Each layer's lowest level is scaled by its contrast limits and coloured by its
    colormap (an RGB layer as it is), and the layers are added (napari's additive
    blending of a slide's channels), clipped to 1. Only visible layers count (all of
    them when none is visible).
    """
    shown = [la for la in layers if la.visible] or list(layers)
    total = None
    for layer in shown:
        level = lowest_level(layer)
        rgb = bool(getattr(layer, "rgb", False))
        yx = level.shape[-3:-1] if rgb else level.shape[-2:]
        step = max(1, int(np.ceil(max(yx) / MAX_SIDE)))
        index = (Ellipsis, slice(None, None, step), slice(None, None, step))
        if rgb:
            index = (Ellipsis, slice(None, None, step), slice(None, None, step), slice(0, 3))
        data = np.asarray(level[index], dtype=np.float64)
        while data.ndim > (3 if rgb else 2):  # leading axes (time, z): their first plane
            data = data[0]
        lo, hi = (float(v) for v in layer.contrast_limits)
        unit = np.clip((data - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        if rgb:
            colour = unit[..., :3]
        else:
            colour = np.asarray(layer.colormap.map(unit.ravel()))[:, :3].reshape(*unit.shape, 3)
        total = colour if total is None else total + colour
    return None if total is None else np.clip(total, 0.0, 1.0)


class MiniMap(QWidget):
    """The overview of the chosen slide (``model.slide_layers``) in ``viewer``.

    ``image`` is the thumbnail (RGB, [0, 1]); ``extent`` the world rectangle it covers
    (``(y0, x0, y1, x1)``); :meth:`visible_world` the canvas's world rectangle;
    :meth:`world_at` / :meth:`widget_at` convert between widget pixels and world.
    """

    def __init__(self, model, viewer) -> None:
        super().__init__()
        self.model = model
        self.viewer = viewer
        self.image: np.ndarray | None = None
        self.extent: tuple[float, float, float, float] | None = None
        self._qimage: QImage | None = None
        self._layers: tuple = ()
        self.setMinimumHeight(40)  # a small screen may squeeze it (or collapse its pane)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("overview of the slide: the rectangle is the view; click to go there")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        camera = viewer_camera(self.viewer)
        for event in (camera.events.center, camera.events.zoom, self.viewer.canvas.events.size):
            event.connect(self._on_view)
        model.slide_layers_changed.connect(lambda _layers: self.refresh())

    def _on_view(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        self.update()  # repaint: the rectangle follows the camera

    def sizeHint(self) -> QSize:
        return QSize(300, HEIGHT)

    # -- the thumbnail --------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the chosen slide's thumbnail again when the slide changed."""
        layers = tuple(self.model.slide_layers)
        if layers == self._layers and self.image is not None:
            self.update()
            return
        self._layers = layers
        self.image = thumbnail(layers) if layers else None
        self.extent = None if not layers else world_extent(layers[0])
        if self.image is None:
            self._qimage = None
        else:
            pixels = np.ascontiguousarray((self.image * 255).round().astype(np.uint8))
            h, w = pixels.shape[:2]
            self._qimage = QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.update()

    # -- coordinates ----------------------------------------------------------------------
    def _placement(self) -> tuple[float, float, float] | None:
        """``(left, top, factor)``: where the thumbnail is drawn, widget px per thumbnail px."""
        if self.image is None:
            return None
        h, w = self.image.shape[:2]
        factor = min(self.width() / w, self.height() / h)
        return (self.width() - w * factor) / 2.0, (self.height() - h * factor) / 2.0, factor

    def _frame(self):
        """``(left, top, width, height)`` of the drawn thumbnail in widget px, and the
        world rectangle it shows; None without a slide."""
        placed = self._placement()
        if placed is None or self.extent is None:
            return None
        left, top, factor = placed
        h, w = self.image.shape[:2]
        return (left, top, w * factor, h * factor), self.extent

    def world_at(self, x: float, y: float) -> tuple[float, float] | None:
        """The world ``(y, x)`` under widget pixel ``(x, y)`` (None without a slide)."""
        frame = self._frame()
        if frame is None:
            return None
        (left, top, width, height), (y0, x0, y1, x1) = frame
        u, v = (x - left) / width, (y - top) / height  # [0, 1] across the slide
        return y0 + v * (y1 - y0), x0 + u * (x1 - x0)

    def widget_at(self, world_y: float, world_x: float) -> tuple[float, float] | None:
        """The widget pixel ``(x, y)`` of a world position (None without a slide)."""
        frame = self._frame()
        if frame is None:
            return None
        (left, top, width, height), (y0, x0, y1, x1) = frame
        return left + (world_x - x0) / (x1 - x0) * width, top + (world_y - y0) / (y1 - y0) * height

    def visible_world(self) -> tuple[float, float, float, float]:
        """The canvas's world rectangle ``(y0, x0, y1, x1)``: centre ± half the canvas / zoom."""
        camera = viewer_camera(self.viewer)
        cy, cx = (float(v) for v in camera.center[-2:])
        h, w = (float(v) for v in self.viewer.canvas.size)
        zoom = float(camera.zoom)
        return cy - h / 2 / zoom, cx - w / 2 / zoom, cy + h / 2 / zoom, cx + w / 2 / zoom

    def view_rect(self) -> QRectF | None:
        """The visible region as a rectangle in widget pixels (None without a slide)."""
        y0, x0, y1, x1 = self.visible_world()
        top_left, bottom_right = self.widget_at(y0, x0), self.widget_at(y1, x1)
        if top_left is None:
            return None
        return QRectF(QPointF(*top_left), QPointF(*bottom_right))

    # -- Qt events ------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: ARG002 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("black"))
        placed = self._placement()
        if placed is None or self._qimage is None:
            painter.setPen(QColor("grey"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no slide")
            painter.end()
            return
        left, top, factor = placed
        h, w = self.image.shape[:2]
        target = QRectF(left, top, w * factor, h * factor)
        painter.drawImage(target, self._qimage)
        # the part of the view on the slide, so all four sides show when the view
        # reaches past the slide's edge (nothing when it is off the slide)
        shown = self.view_rect().intersected(target.adjusted(1, 1, -1, -1))
        if not shown.isEmpty():
            pen = QPen(QColor(YELLOW))
            pen.setWidth(2)
            painter.setPen(pen)
            painter.drawRect(shown)
        painter.end()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.jump_to(event.position().x(), event.position().y())

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.jump_to(event.position().x(), event.position().y())

    def jump_to(self, x: float, y: float) -> None:
        """Centre the camera on the world position under widget pixel ``(x, y)``."""
        world = self.world_at(x, y)
        if world is None:
            return
        camera = viewer_camera(self.viewer)
        center = tuple(camera.center)
        camera.center = (*center[: len(center) - 2], *world)


def world_extent(layer) -> tuple[float, float, float, float]:
    """``(y0, x0, y1, x1)``: the world rectangle a layer's level 0 covers (pixel edges)."""
    ny, nx = layer_yx(layer)
    sy, sx = (float(v) for v in layer.scale[-2:])
    ty, tx = (float(v) for v in layer.translate[-2:])
    return ty - 0.5 * sy, tx - 0.5 * sx, ty + (ny - 0.5) * sy, tx + (nx - 0.5) * sx


class MiniMapPane(QWidget):
    """The minimap with one line under it: the visible region, in µm when it has a unit."""

    def __init__(self, model, viewer) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.minimap = MiniMap(model, viewer)
        self.label = QLabel("")
        layout.addWidget(self.minimap)
        layout.addWidget(self.label)
        # the dock must still fit a 1366 x 768 screen: this pane may be squeezed to nothing
        self.setMinimumHeight(1)
        camera = viewer_camera(viewer)
        for event in (camera.events.center, camera.events.zoom, viewer.canvas.events.size):
            event.connect(self.show_region)

    def show_region(self, event=None) -> None:  # noqa: ARG002 - napari event callback
        """The label: the visible region's world rectangle (µm or px)."""
        minimap = self.minimap
        if not minimap._layers:
            self.label.setText("")
            return
        units = getattr(minimap._layers[0], "units", None)
        unit = str(units[-1]) if units is not None else "pixel"
        unit = {"micrometer": "µm", "pixel": "px", "": "px"}.get(unit, unit)
        y0, x0, y1, x1 = minimap.visible_world()
        self.label.setText(f"view: y {y0:,.0f}–{y1:,.0f} {unit}, x {x0:,.0f}–{x1:,.0f} {unit}")
