"""The demo trains to the same numbers every time, on any machine (same torch, same CPU).

The full demo (2048 px slides, 200 steps each for ERM and GERNE) takes minutes, so this
trains the demo's GERNE stage on its recipe (``demo_story.run_config``) with small
slides and few steps, twice with one seed: once as on a one-core machine (torch's
default thread count 1) and once as on this one (2). The thread count changed the
numbers (CPU kernels split their sums by thread; the README's demo figures were not what
``make demo`` gave on another machine), so the demo fixes it
(``StorySettings.threads``).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from napari_patchwise.training.demo_story import StorySettings, run_config, write_cohort
from napari_patchwise.training.runs import METRICS

torch = pytest.importorskip("torch")

SETTINGS = StorySettings(size=512, steps=6, eval_every=3)


def train_demo_stage(folder, manifest, torch_threads: int) -> tuple[float, pd.DataFrame, dict]:
    """Train the demo's GERNE run with torch's default at ``torch_threads`` threads."""
    from napari_patchwise.training.loop import train

    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)  # what torch finds on a machine with that many cores
    try:
        run = train(run_config("gerne", manifest, folder, SETTINGS))
    finally:
        torch.set_num_threads(before)
    test = json.loads((run / METRICS).read_text())["by_selection"]["val_wga"]["test"]
    history = pd.read_csv(run / "history.csv").drop(columns="seconds")
    weights = torch.load(run / "last.pt", weights_only=False)["model"]
    return test["wga"], history, weights


def test_the_demo_trains_to_the_same_numbers_twice_whatever_the_core_count(tmp_path):
    manifest = write_cohort(tmp_path / "cohort", SETTINGS, lambda done, total: None)
    wga_1, history_1, weights_1 = train_demo_stage(tmp_path / "one", manifest, 1)
    wga_2, history_2, weights_2 = train_demo_stage(tmp_path / "two", manifest, 2)
    pd.testing.assert_frame_equal(history_1, history_2, check_exact=True)  # losses, val metrics
    assert wga_1 == wga_2
    assert weights_1.keys() == weights_2.keys()
    for name, value in weights_1.items():
        assert torch.equal(value, weights_2[name]), name
