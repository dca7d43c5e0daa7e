"""The dock's per-group metrics say when WGA leaves out an empty group or rests on a tiny one
(a real napari viewer under Xvfb; the slide and fixtures of tests/napari/test_widget.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_widget import LABEL, RATIO, load_predictions, setup  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


def test_stats_panel_warns_next_to_wga_about_empty_and_tiny_groups(setup, qtbot, tmp_path):  # noqa: F811
    _viewer, widget, _ = setup
    panel = widget.stats
    assert panel.group_warning.isHidden()  # counts only: no WGA, no warning
    load_predictions(qtbot, widget, tmp_path)
    widget.tau_slider.setValue(0.1)
    # 64 patches: every group is below 20 patches
    counts = [int(c.text().replace(",", "")) for c in (row[1] for row in panel.cells)]
    assert counts == np.bincount((2 * LABEL + (RATIO >= 0.1)).ravel(), minlength=4).tolist()
    assert panel.group_warning.isVisible()
    text = panel.group_warning.text()
    assert "⚠ group non-tumor/small has only" in text and "(&lt; 20)" in text
    # a tau above every tissue ratio empties both large groups: WGA over the 2 others
    widget.tau_slider.setValue(1.0)
    assert float(RATIO.max()) < 1.0
    text = panel.group_warning.text()
    assert "group non-tumor/large is empty: WGA is the minimum over the 2 other groups" in text
    assert "group tumor/large is empty" in text
    assert panel.group_warning.isVisible()
