"""JTT and GERNE with inferred groups trained from the dock's Model tab (run under Xvfb).

The cohort's manifest has no group column (image, mask, split); the run still reports the
known-group (tissue ratio at tau) test WGA, checked here against the run's own test
predictions.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget

pytestmark = pytest.mark.gui

P = 16


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), patch=P)


def _known_group_wga(predictions: pd.DataFrame, tau: float) -> float:
    """Worst accuracy over the groups 2 * label + (tissue_ratio >= tau) that have patches."""
    groups = 2 * predictions["label"].to_numpy() + (predictions["tissue_ratio"] >= tau)
    correct = predictions["pred"].to_numpy() == predictions["label"].to_numpy()
    return min(correct[groups == g].mean() for g in np.unique(groups))


@pytest.mark.parametrize("method", ["jtt", "gerne-inferred"])
def test_the_dock_trains_without_groups_and_reports_the_known_group_wga(
    make_napari_viewer, qtbot, monkeypatch, manifest, tmp_path, method
):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    monkeypatch.setattr(notify, "show_info", lambda _text: None)
    assert "group" not in manifest.read_text().splitlines()[0]  # no group column at all
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    panel = widget.model_panel
    panel.extra_options = {"num_threads": 1, "seed": 1, "augment": False}
    form = panel.form
    form.manifest_edit.setText(str(manifest))
    form.out_edit.setText(str(tmp_path / "run"))
    form.model_combo.setCurrentText("smallcnn")
    form.patch_size.setValue(P)
    form.steps.setValue(8)
    form.eval_every.setValue(4)
    form.batch_size.setValue(16)
    form.method_combo.setCurrentText(method)
    with qtbot.waitSignal(panel.trained, timeout=120_000):
        form.train_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5000)
    assert errors == []
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method
    assert (run / "first_stage" / "config.json").is_file()  # its ERM first stage
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = pd.read_parquet(run / "predictions.parquet")
    expected = _known_group_wga(predictions, config["tau"])
    assert metrics["test"]["wga"] == pytest.approx(expected)
