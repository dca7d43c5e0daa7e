"""The dock's "Groups and decision threshold" box: the groups' attribute (tissue_ratio by
default), its threshold (tau) and the decision threshold sliders, and the group-count /
metrics table under them. What choosing another attribute does: :mod:`.attribute_choice`."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox
from superqt import QLabeledDoubleSlider

from ...groups import DEFAULT_ATTRIBUTE
from .state import SlideSettings, SlideState
from .stats_panel import StatsPanel
from .words import explain

#: The tau slider's tooltip (tissue-size groups).
TAU_TIP = (
    "tau: a patch counts as 'large tissue' when tissue covers at least this share of it "
    "(the groups: tumor or not x small or large tissue)"
)


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
        layout = self.layout_ = QFormLayout(self)
        self.attribute_combo = QComboBox()
        self.attribute_combo.setToolTip(
            "the spurious attribute of the groups: tissue_ratio (the paper's) or a per-patch "
            "intensity, border fraction... (docs/attributes.md)"
        )
        self.attribute_combo.addItem(DEFAULT_ATTRIBUTE)
        layout.addRow("attribute", self.attribute_combo)
        self.tau_slider = _slider(SlideSettings.tau)
        explain(self.tau_slider, TAU_TIP)
        self.threshold_slider = _slider(SlideSettings.threshold)
        explain(
            self.threshold_slider,
            "Decision threshold: a patch is called tumor when the model's probability is at "
            "least this",
        )
        layout.addRow("tau", self.tau_slider)
        layout.addRow("decision threshold", self.threshold_slider)
        self.stats = StatsPanel()
        layout.addRow(self.stats)

    def show_settings(self, settings: SlideSettings, state: SlideState | None = None) -> None:
        """Move the widgets to ``settings`` without emitting their signals.

        ``state`` gives the attribute choices and the threshold slider's range (the
        attribute's values); the groups shown are those of ``state.data``.
        """
        self._show_attribute(settings, state)
        for slider, value in (
            (self.tau_slider, settings.tau),
            (self.threshold_slider, settings.threshold),
        ):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)

    def _show_attribute(self, settings: SlideSettings, state: SlideState | None) -> None:
        from .attribute_choice import attribute_choices

        data = state.data if state is not None else None
        if data is not None and data.attribute != settings.attribute:
            settings.attribute = data.attribute  # a table without the chosen column
            settings.tau = (
                SlideSettings.tau if data.attribute == DEFAULT_ATTRIBUTE else settings.tau
            )
        combo = self.attribute_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(attribute_choices(state))
        combo.setCurrentText(settings.attribute)
        combo.blockSignals(False)
        lo, hi, decimals = 0.0, 1.0, 3
        if settings.attribute != DEFAULT_ATTRIBUTE and data is not None:
            values = data.attribute_values[np.isfinite(data.attribute_values)]
            if values.size:
                lo, hi = float(values.min()), float(values.max())
                hi = hi if hi > lo else lo + 1.0
                decimals = max(0, 3 - math.floor(math.log10(hi - lo)))
                if not lo <= settings.tau <= hi:  # new here: start at the median
                    settings.tau = float(np.median(values))
        self.tau_slider.blockSignals(True)
        self.tau_slider.setDecimals(decimals)
        self.tau_slider.setRange(lo, hi)
        self.tau_slider.setSingleStep(10.0**-decimals)
        self.tau_slider.blockSignals(False)
        default = settings.attribute == DEFAULT_ATTRIBUTE
        label = "tau" if default else "attribute threshold (>=)"
        self.layout_.labelForField(self.tau_slider).setText(label)
        explain(
            self.tau_slider,
            TAU_TIP
            if default
            else f"A patch is in a 'high' group when its {settings.attribute} is at least this",
        )

    def read(self, settings: SlideSettings) -> None:
        """Copy the sliders' values into ``settings``."""
        settings.attribute = self.attribute_combo.currentText() or DEFAULT_ATTRIBUTE
        settings.tau = self.tau_slider.value()
        settings.threshold = self.threshold_slider.value()

    def show_evaluation(self, state: SlideState | None) -> None:
        """The metrics of ``state`` at its tau and threshold (O(log N): see slider_eval)."""
        if state is None or state.data is None:
            self.stats.show_evaluation(None)
            return
        s = state.settings
        self.stats.show_evaluation(state.data.evaluator.evaluate(s.tau, s.threshold))
