"""The dock's "Groups and decision threshold" box: the tau and threshold sliders and the
group-count / metrics table under them."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QGroupBox
from superqt import QLabeledDoubleSlider

from .state import SlideSettings, SlideState
from .stats_panel import StatsPanel


def _slider(value: float) -> QLabeledDoubleSlider:
    slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    slider.setRange(0.0, 1.0)
    slider.setDecimals(3)
    slider.setSingleStep(0.001)
    slider.setValue(value)
    return slider


class TuningBox(QGroupBox):
    """tau and the decision threshold, with the current slide's evaluation at both."""

    def __init__(self, parent=None) -> None:
        super().__init__("Groups and decision threshold", parent)
        layout = QFormLayout(self)
        self.tau_slider = _slider(SlideSettings.tau)
        self.tau_slider.setToolTip("tau: a patch has large tissue when tissue_ratio >= tau")
        self.threshold_slider = _slider(SlideSettings.threshold)
        self.threshold_slider.setToolTip("a patch is predicted tumor when prob >= threshold")
        layout.addRow("tau", self.tau_slider)
        layout.addRow("threshold", self.threshold_slider)
        self.stats = StatsPanel()
        layout.addRow(self.stats)

    def show_settings(self, settings: SlideSettings) -> None:
        """Move the sliders to ``settings`` without emitting their signals."""
        for slider, value in (
            (self.tau_slider, settings.tau),
            (self.threshold_slider, settings.threshold),
        ):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)

    def read(self, settings: SlideSettings) -> None:
        """Copy the sliders' values into ``settings``."""
        settings.tau = self.tau_slider.value()
        settings.threshold = self.threshold_slider.value()

    def show_evaluation(self, state: SlideState | None) -> None:
        """The metrics of ``state`` at its tau and threshold (O(log N): see slider_eval)."""
        if state is None or state.data is None:
            self.stats.show_evaluation(None)
            return
        s = state.settings
        self.stats.show_evaluation(state.data.evaluator.evaluate(s.tau, s.threshold))
