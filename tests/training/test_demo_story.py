"""The demo's headless story: cohort, ERM and GERNE runs, predictions, reuse."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from napari_patchwise.io.tables import read_table
from napari_patchwise.training.demo_story import LAYOUT, StorySettings, run_story

pytestmark = pytest.mark.torch


def test_story_trains_both_runs_once_and_retrains_when_the_settings_change(tmp_path):
    settings = StorySettings(size=512, steps=4, eval_every=2)
    lines = []
    story = run_story(tmp_path, settings, log=lines.append)
    assert story.reused == []
    assert len(pd.read_csv(story.manifest)) == sum(len(s) for s in LAYOUT.values())
    for name in ("erm", "gerne"):
        config = json.loads((story.runs[name] / "config.json").read_text())
        assert (config["method"], config["preset"], config["steps"]) == (name, "cpu-quick", 4)
        table = read_table(story.predictions[name])
        assert len(table) == (512 // 32) ** 2 and table["prob"].between(0, 1).all()
        assert set(table["label"].unique()) <= {0, 1}
    # GERNE's two batches of 32 and ERM's one of 64: the same patches per step
    erm = json.loads((story.runs["erm"] / "config.json").read_text())
    gerne = json.loads((story.runs["gerne"] / "config.json").read_text())
    assert (erm["batch_size"], gerne["batch_size"], gerne["beta"], gerne["c"]) == (64, 32, 1.0, 0.5)

    best = {n: (story.runs[n] / "best.pt").stat().st_mtime_ns for n in ("erm", "gerne")}
    preds = {n: story.predictions[n].stat().st_mtime_ns for n in ("erm", "gerne")}
    lines.clear()
    again = run_story(tmp_path, settings, log=lines.append)
    assert again.reused == ["erm", "gerne"]
    assert [line for line in lines if ": reused " in line] == [
        f"{n}: reused {story.runs[n]}" for n in ("erm", "gerne")
    ]  # the lines `patchwise demo` prints
    # neither a checkpoint nor a prediction table is written again
    assert {n: (again.runs[n] / "best.pt").stat().st_mtime_ns for n in best} == best
    assert {n: again.predictions[n].stat().st_mtime_ns for n in preds} == preds

    mtime = story.predictions["erm"].stat().st_mtime_ns
    changed = run_story(tmp_path, StorySettings(size=512, steps=6, eval_every=2), log=print)
    assert changed.reused == []  # other settings: trained again, never mixed
    assert json.loads((changed.runs["erm"] / "config.json").read_text())["steps"] == 6
    assert changed.predictions["erm"].stat().st_mtime_ns != mtime
