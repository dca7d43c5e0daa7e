"""Selection on the worst discovered slice (``--select val_worst_slice --slices``).

For cohorts without known groups: the slices ``patchwise discover`` found on the
validation split take the place of the groups in the selection (docs/shortcuts.md).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise.analysis.discover import slice_of_patches, worst_slice_accuracy
from napari_patchwise.cli.main import main

pytestmark = pytest.mark.torch

FAST = ["--model", "smallcnn", "--patch-size", "16", "--batch-size", "16"]
FAST += ["--num-threads", "1", "--quiet", "--steps", "6", "--eval-every", "2"]


def test_worst_slice_accuracy_is_the_lowest_slice_accuracy():
    slices = np.array([0, 0, 0, 1, 1, 2, -1, -1])
    correct = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=bool)
    # slice 0: 2/3, slice 1: 1/2, slice 2: 1/1; patches in no slice (-1) do not count
    assert worst_slice_accuracy(slices, correct) == 0.5
    assert np.isnan(worst_slice_accuracy(np.full(3, -1), np.ones(3, dtype=bool)))


def test_patches_join_their_slice_on_slide_row_col():
    keys = pd.DataFrame({"slide": ["a", "a", "b"], "row": [0, 1, 0], "col": [0, 0, 0]})
    slices = pd.DataFrame({"slide": ["b", "a"], "row": [0, 1], "col": [0, 0], "slice": [4, 2]})
    np.testing.assert_array_equal(slice_of_patches(keys, slices), [-1, 2, 4])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    # slices over the validation slide's patch grid (s2): three diagonal bands
    grid = [(r, c) for r in range(64) for c in range(64)]
    table = pd.DataFrame(
        {"slide": "s2", "row": [r for r, _ in grid], "col": [c for _, c in grid],
         "slice": [(r + c) % 3 for r, c in grid], "responsibility": 1.0}
    )  # fmt: skip
    table.to_parquet(folder / "slices.parquet")
    return manifest, folder / "slices.parquet"


@pytest.mark.parametrize("method", ["erm", "jtt"])
def test_the_selected_checkpoint_has_the_best_worst_slice_accuracy(cohort, tmp_path, method):
    manifest, slices = cohort
    out = tmp_path / "run"
    flags = ["--method", method, "--select", "val_worst_slice", "--slices", slices]
    assert main(["train", str(manifest), *map(str, flags), *FAST, "--out", str(out)]) == 0
    history = pd.read_csv(out / "history.csv")
    values = history["val_worst_slice"].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    metrics = json.loads((out / "metrics.json").read_text())
    best = int(np.argmax(values))  # the first best: a later equal value does not replace it
    assert metrics["selected_by"] == "val_worst_slice"
    assert metrics["step"] == history["step"][best] and metrics["val_value"] == values[best]
    assert set(metrics["by_selection"]) == {"val_wga", "val_bca", "val_worst_slice"}
    # the known groups (tissue ratio) are still reported where they exist
    assert 0 <= metrics["test"]["wga"] <= 1
    assert (out / "best.pt").is_file() and (out / "best_val_wga.pt").is_file()


def test_worst_slice_selection_without_slices_is_a_one_line_error(cohort, tmp_path, capsys):
    manifest, _ = cohort
    code = main(["train", str(manifest), "--select", "val_worst_slice", *FAST,
                 "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "--select val_worst_slice needs --slices" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_slices_that_are_not_discovers_output_are_refused_before_training(cohort, tmp_path, capsys):
    manifest, _ = cohort
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    code = main(["train", str(manifest), "--select", "val_worst_slice", "--slices", str(bad),
                 *FAST, "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "bad.parquet" in err and "patchwise discover" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_sweep_selects_the_grid_point_with_the_best_mean_worst_slice(tmp_path):
    from napari_patchwise.training.config import TrainConfig
    from napari_patchwise.training.sweep import SweepRun, select_point, sweep_table

    values = {(1, 0): 0.5, (1, 1): 0.7, (5, 0): 0.8, (5, 1): 0.6}  # (jtt_up, seed): worst slice
    runs = []
    for (up, seed), value in values.items():
        out = tmp_path / f"up{up}_seed{seed}"
        out.mkdir()
        entry = {"step": 4, "val_value": value, "test": {"wga": 0.1 * up, "bca": 0.9}}
        other = {"step": 2, "val_value": 0.99, "test": {"wga": 0.0, "bca": 0.9}}
        by_selection = {"val_wga": other, "val_bca": other, "val_worst_slice": entry}
        (out / "metrics.json").write_text(json.dumps({"by_selection": by_selection}))
        (out / "predictions.parquet").write_bytes(b"")
        config = TrainConfig(manifest="m.csv", out=str(out), method="jtt", jtt_up=up, seed=seed)
        runs.append(SweepRun(out.name, (("jtt_up", up),), seed, config))
    outcomes = {r.name: ("run", "") for r in runs}
    table = sweep_table(runs, outcomes, "val_worst_slice")
    assert table["val_worst_slice"].tolist() == [0.5, 0.7, 0.8, 0.6]
    chosen = select_point(table, ["jtt_up"], "val_worst_slice")
    # means: up 1 -> 0.6, up 5 -> 0.7 (val WGA is 0.99 everywhere: it would not decide)
    assert chosen["point"] == {"jtt_up": 5} and chosen["val_mean"] == pytest.approx(0.7)
