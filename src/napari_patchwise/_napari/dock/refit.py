"""Fit the slide to the canvas again when the dock first appears.

Docking the widget takes a third of the window's width from the canvas: a slide fitted to
the whole window before is then cut off at the right (a 1366 px screen kept a 506 px
canvas showing part of the slide). Once, on the first show; later user zooms are theirs.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QTimer


class RefitOnFirstShow(QObject):
    """An event filter on ``widget`` (the dock): its first Show event re-fits the view."""

    def __init__(self, widget, viewer) -> None:
        super().__init__(widget)
        self.viewer = viewer
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Show:
            watched.removeEventFilter(self)
            # after the layout settled: the canvas has its new size only then
            QTimer.singleShot(0, self._refit)
        return False

    def _refit(self) -> None:
        if len(self.viewer.layers):
            self.viewer.reset_view()
