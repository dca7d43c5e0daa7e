"""Training in the dock, in the dock's words: a taken run folder offers Resume run and
New run folder (not the command line's "pass --resume ... or choose another --out"), and
the Model tab offers only the methods it can train (DFR lives in the Debias tab).

The cohort is tests/_cohort.py's tiny one; the model the CPU-quick smallcnn.
"""

from __future__ import annotations

import json
import queue
import re
import threading

import pandas as pd
import pytest
import torch

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.jobs import training_work as train_worker
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.training.runs import next_run_dir

pytestmark = pytest.mark.gui

P = 16
FLAG = re.compile(r"--[a-z]")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), patch=P)


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    notes: dict[str, list[str]] = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", notes["error"].append)
    monkeypatch.setattr(notify, "show_info", notes["info"].append)
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    panel = widget.model_panel
    panel.extra_options = {"num_threads": 1, "seed": 1, "augment": False}
    return widget, panel, notes


def fill(panel, manifest, out, *, steps: int) -> None:
    form = panel.form
    form.manifest_edit.setText(str(manifest))
    form.out_edit.setText(str(out))
    form.model_combo.setCurrentText("smallcnn")
    form.patch_size.setValue(P)
    form.steps.setValue(steps)
    form.eval_every.setValue(2)
    form.batch_size.setValue(16)
    form.lr.setValue(0.05)


def wait_trained(qtbot, panel, click) -> None:
    with qtbot.waitSignal(panel.trained, timeout=90_000):
        click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5000)


def last_step(run) -> int:
    return int(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["step"])


def test_a_taken_run_folder_offers_resume_and_a_new_folder(dock, qtbot, manifest, tmp_path):
    _widget, panel, notes = dock
    form, choice = panel.form, panel.form.folder_choice
    run = tmp_path / "run"
    fill(panel, manifest, run, steps=4)
    wait_trained(qtbot, panel, form.train_button.click)
    assert last_step(run) == 4 and choice.isHidden()

    # Train again into the same folder: nothing starts, the two choices are offered
    form.steps.setValue(6)
    form.train_button.click()
    assert not panel.busy() and notes["error"] == []
    assert not choice.isHidden() and choice.resume_button.isEnabled()
    assert "already holds a run" in choice.label.text()
    assert not FLAG.search(choice.label.text())

    # Resume: the same run goes on from step 4 to 6, in the same folder
    wait_trained(qtbot, panel, choice.resume_button.click)
    assert notes["error"] == [] and choice.isHidden()
    assert last_step(run) == 6
    assert json.loads((run / "config.json").read_text())["steps"] == 6
    history = pd.read_csv(run / "history.csv")
    assert history["step"].max() == 6

    # New run folder: a fresh run in run-2 beside it, the first run untouched
    before = (run / "last.pt").read_bytes()
    form.train_button.click()
    assert not choice.isHidden()
    wait_trained(qtbot, panel, choice.new_button.click)
    assert notes["error"] == []
    assert form.out_edit.text() == str(tmp_path / "run-2")
    assert last_step(tmp_path / "run-2") == 6
    assert (run / "last.pt").read_bytes() == before

    # Other settings than the run's: Resume is offered disabled, with the reason in words
    form.lr.setValue(0.01)
    form.out_edit.setText(str(run))
    form.train_button.click()
    assert not choice.isHidden() and not choice.resume_button.isEnabled()
    assert choice.new_button.isEnabled()
    text = choice.label.text()
    assert "cannot be resumed" in text and "lr" in text and not FLAG.search(text)
    assert not panel.busy() and notes["error"] == []


def test_a_resume_refused_by_the_training_process_is_worded_for_the_dock(manifest, tmp_path):
    """What the training process reports (a run whose slides changed after the dock's
    folder check) names no flag: the core's dock hint, in words."""
    from napari_patchwise.training.config import TrainConfig
    from napari_patchwise.training.loop import TrainCallbacks, train

    options = dict(
        manifest=str(manifest), out=str(tmp_path / "run"), model="smallcnn", patch_size=P,
        steps=2, eval_every=2, batch_size=16, lr=0.05, seed=1, num_threads=1,
    )  # fmt: skip
    run = train(TrainConfig.from_options(options), TrainCallbacks())
    inputs = json.loads((run / "inputs.json").read_text())
    inputs["slides"][0]["fingerprint"] = [[0, 0], [0, 0]]  # as if the slide was replaced
    (run / "inputs.json").write_text(json.dumps(inputs))
    events = queue.Queue()
    resumed = TrainConfig.from_options({**options, "steps": 4, "resume": True})
    train_worker._train_in_child(resumed.to_json(), events, threading.Event())
    failed = events.get_nowait()
    assert isinstance(failed, train_worker._Failed) and failed.patchwise
    assert "cannot resume: the data changed" in failed.message
    assert "train in a new run folder" in failed.message
    assert not FLAG.search(failed.message), failed.message
    # the command line's own line still names its flag
    from napari_patchwise.training.runs import check_resume

    with pytest.raises(PatchwiseError, match="another --out"):
        check_resume(run, resumed)


def test_the_model_tab_offers_no_head_only_method(dock):
    widget, panel, _ = dock
    combo = panel.form.method_combo
    model_methods = [combo.itemText(i) for i in range(combo.count())]
    assert "dfr" not in model_methods and "dfr-train" not in model_methods
    assert {"erm", "gerne", "jtt"} <= set(model_methods)
    debias = widget.debias.retrain.method_combo
    assert "dfr" in [debias.itemText(i) for i in range(debias.count())]


def test_next_run_dir_counts_on_beside_the_taken_folder(tmp_path):
    assert next_run_dir(tmp_path / "run") == tmp_path / "run-2"
    (tmp_path / "run-2").mkdir()
    assert next_run_dir(tmp_path / "run") == tmp_path / "run-3"
    assert next_run_dir(tmp_path / "run-2") == tmp_path / "run-3"
    stamped = tmp_path / "erm-smallcnn-20260101-120000"
    assert next_run_dir(stamped) == tmp_path / "erm-smallcnn-20260101-120000-2"
