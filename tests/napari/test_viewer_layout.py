"""The dock on a 1366 x 768 screen: sliders, key metrics and the tab bar stay visible
while a tab is open; no two buttons share a label."""

from __future__ import annotations

from collections import Counter

import pytest
from qtpy.QtCore import QRect
from qtpy.QtWidgets import QApplication, QPushButton
from test_widget import (
    load_predictions,
    setup,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.gui


@pytest.fixture
def small_screen(setup, qtbot, tmp_path):  # noqa: F811 - test_widget's fixture
    viewer, widget, _ = setup
    load_predictions(qtbot, widget, tmp_path)
    window = viewer.window._qt_window

    window.resize(1366, 768)
    widget.inspector.pin_at((100.0, 100.0))  # the inspector at its tallest
    assert widget.inspector.pinned is not None
    widget.tabs.setCurrentWidget(widget.tabs.errors_page)
    qtbot.waitUntil(lambda: window.height() <= 768, timeout=2000)
    QApplication.processEvents()
    qtbot.wait(100)
    return viewer, widget


def shown_in_window(widget, window) -> bool:
    """Whether ``widget`` is on screen: part of it unclipped and inside the window."""
    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    top_left = widget.mapTo(window, widget.rect().topLeft())
    rect = QRect(top_left, widget.size())
    return QRect(0, 0, window.width(), window.height()).contains(rect)


def test_sliders_metrics_and_tab_bar_visible_at_1366x768_with_errors_open(small_screen):
    viewer, widget = small_screen
    window = viewer.window._qt_window
    assert window.width() <= 1366 and window.height() <= 768
    assert widget.tabs.currentWidget() is widget.tabs.errors_page
    for part in (
        widget.tabs.tabBar(),
        widget.tau_slider,
        widget.threshold_slider,
        widget.stats,
        widget.overlay_choice.combo,
    ):
        assert shown_in_window(part, window), part
    shot = window.grab().toImage()
    assert not shot.isNull()


def test_no_two_buttons_share_a_label(small_screen):
    _, widget = small_screen
    buttons = [b for b in widget.findChildren(QPushButton) if b.text()]
    # a small "…" (browse) button says what it chooses in its tooltip / accessible name
    labels = Counter(b.toolTip() if b.text() == "…" else b.text() for b in buttons)
    assert not [text for text, n in labels.items() if n > 1], labels
    assert all(b.accessibleName() for b in buttons if b.text() == "…")
