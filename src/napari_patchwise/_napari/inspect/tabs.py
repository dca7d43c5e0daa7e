"""The dock's tabs under the sliders: Figure-1 histograms and the error list (and the
Model tab the dock adds).

While a slider is dragged the histograms follow at most every
:data:`HISTOGRAM_THROTTLE_MS` (a matplotlib blit and its Qt repaint cost more than the
rest of a slider move together) and the error list (a top-N selection over all patches)
after a :data:`ERRORS_DEBOUNCE_MS` pause, so dragging never waits for either.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QTabWidget

from ..dock.state import SlideState
from .errors_list import ErrorsPage
from .histograms import Figure1Canvas

ERRORS_DEBOUNCE_MS = 150
HISTOGRAM_THROTTLE_MS = 120


def single_shot(parent, interval_ms: int, slot) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer


class InspectTabs(QTabWidget):
    """The "Histograms" and "Errors" tabs of the slide that ``current()`` returns.

    Parameters
    ----------
    current : callable
        Returns the dock's current :class:`SlideState` (or None).
    """

    def __init__(self, current: Callable[[], SlideState | None], parent=None) -> None:
        super().__init__(parent)
        self._current = current
        self.histograms = Figure1Canvas()
        self.histograms.setMinimumSize(280, 420)
        self.addTab(self.histograms, "Histograms")
        self.errors_page = ErrorsPage()
        self.addTab(self.errors_page, "Errors")
        self.errors_timer = single_shot(self, ERRORS_DEBOUNCE_MS, self.refresh_errors)
        self.histogram_timer = single_shot(self, HISTOGRAM_THROTTLE_MS, self.sync_histograms)

    def show_state(self, state: SlideState) -> None:
        """Show ``state``'s histogram bins and errors (another slide, or new results)."""
        s = state.settings
        if state.data is not None and state.panels is not None:
            self.histograms.set_panels(
                state.panels,
                has_predictions=state.data.prob is not None,
                tau=tau_marker(state),
                threshold=s.threshold,
            )
        self.refresh_errors()

    def follow_sliders(self) -> None:
        """A slider moved: schedule the histograms (throttled) and the errors (debounced)."""
        if not self.histogram_timer.isActive():
            self.histogram_timer.start()
        state = self._current()
        if state is not None and state.data is not None and state.data.prob is not None:
            self.errors_timer.start()

    def sync_histograms(self) -> None:
        """Bring the histograms to the current tau and threshold (one blit)."""
        state = self._current()
        if state is not None:
            self.histograms.set_view(tau_marker(state), state.settings.threshold)

    def refresh_errors(self) -> None:
        """List the current slide's misclassified patches now."""
        self.errors_page.show_state(self._current())


def tau_marker(state: SlideState) -> float:
    """Where the tissue-ratio histogram marks tau: nowhere (NaN) when the groups follow
    another attribute (docs/attributes.md)."""
    if state.data is not None and state.data.attribute != "tissue_ratio":
        return float("nan")
    return state.settings.tau
