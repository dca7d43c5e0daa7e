"""Table 1 keyed by configuration (table1.py, report_run), table1.csv, group-size warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _runs import GROUPS, make_run
from napari_patchwise.analysis import intervals
from napari_patchwise.cli.main import main
from napari_patchwise.reporting.table1 import CSV_COLUMNS, config_key, config_labels

COLUMNS = [
    "method", "config", "select", "tau", "n_seeds", "wga_mean", "wga_std",
    "wga_ci_low", "wga_ci_high", "bca_mean", "bca_std", "min_group_n",
]  # fmt: skip


def _predictions(seed: int, n_slides: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 30 * n_slides
    label = rng.integers(0, 2, n)
    wrong = rng.uniform(0, 1, n) < 0.2
    return pd.DataFrame(
        {
            "slide": [f"slide{i // 30}" for i in range(n)],
            "label": label,
            "tumor_ratio": label * 0.5,
            "tumor_tissue_ratio": label * 0.6,
            "tissue_ratio": rng.uniform(0, 1, n),
            "prob": np.where(label ^ wrong, 0.8, 0.2),
        }
    )


def run_dir(
    folder: Path, *, seed: int = 0, wga: float = 0.5, n_slides: int = 3, group_n: int = 30, **config
) -> Path:
    """A finished run (tests/_runs.py) with these config options, test WGA and slides."""
    make_run(folder, seed=seed)
    options = {"method": "erm", "tau": 0.1, "seed": seed, "threshold": 0.5, **config}
    options["out"] = str(folder)  # a runtime option: differs between every run
    (folder / "config.json").write_text(json.dumps(options))
    metrics = json.loads((folder / "metrics.json").read_text())
    for entry in metrics["by_selection"].values():
        entry["test"]["wga"] = wga
        entry["test"]["groups"] = {
            name: {"n": group_n if i else max(group_n - 5, 0), "accuracy": 0.6}
            for i, name in enumerate(GROUPS)
        }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    _predictions(seed, n_slides).to_parquet(folder / "predictions.parquet", index=False)
    return folder


def _report(tmp_path, runs, capsys, name="report.html"):
    out = tmp_path / name
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(tmp_path / "table1.csv", dtype={"config": str})
    return out.read_text(), table.assign(config=table["config"].fillna(""))


def test_runs_that_differ_only_in_beta_are_three_rows(tmp_path, capsys):
    runs = [
        run_dir(tmp_path / f"b{b}", method="gerne", beta=b, wga=w, num_threads=t)
        for b, w, t in ((1.0, 0.84, 1), (2.0, 0.70, 4), (3.0, 0.08, 2))
    ]
    text, table = _report(tmp_path, runs, capsys)
    assert list(table.columns) == COLUMNS == list(CSV_COLUMNS)
    wga = table[table["select"] == "val_wga"].set_index("config")
    assert sorted(wga.index) == ["beta=1", "beta=2", "beta=3"]
    assert wga["n_seeds"].tolist() == [1, 1, 1]
    assert wga.loc["beta=1", "wga_mean"] == pytest.approx(84.0)
    assert wga.loc["beta=3", "wga_mean"] == pytest.approx(8.0)
    assert "<td>beta=1</td>" in text and "54.00 ± 40.45" not in text
    # the wide form (markdown, the benchmarks' table1) keys rows the same way
    from napari_patchwise.reporting.html import result_rows, table1_markdown
    from napari_patchwise.training.runs import load_run

    markdown = table1_markdown(result_rows([load_run(r) for r in runs]))
    assert "| GERNE beta=1 | val WGA | 84.00 |" in markdown
    assert "| GERNE beta=3 | val WGA | 8.00 |" in markdown


def test_three_seeds_of_one_configuration_are_one_row_with_an_interval(tmp_path, capsys):
    runs = [
        run_dir(tmp_path / f"seed{s}", seed=s, wga=w, num_workers=s, device="cpu")
        for s, w in ((0, 0.5), (1, 0.6), (2, 0.7))
    ]
    text, table = _report(tmp_path, runs, capsys)
    assert len(table) == 2  # val_wga and val_bca rows of one configuration
    row = table[table["select"] == "val_wga"].iloc[0]
    assert (row["method"], row["config"], row["n_seeds"]) == ("ERM", "", 3)
    assert row["wga_mean"] == pytest.approx(60.0)
    assert row["wga_std"] == pytest.approx(10.0)
    assert row["min_group_n"] == 25
    # the interval: the three runs' predictions, slides resampled once per draw
    counts = [
        intervals.table_slide_counts(pd.read_parquet(r / "predictions.parquet")) for r in runs
    ]
    expected = intervals.seed_averaged_ci(counts).wga
    assert row["wga_ci_low"] == pytest.approx(100 * expected.low, abs=1e-3)
    assert row["wga_ci_high"] == pytest.approx(100 * expected.high, abs=1e-3)
    assert row["wga_ci_low"] < row["wga_ci_high"]
    # the val_bca row: predictions.parquet holds the val_wga checkpoint's only
    other = table[table["select"] == "val_bca"].iloc[0]
    assert np.isnan(other["wga_ci_low"]) and "holds the test predictions of the checkpoint" in text


def test_one_test_slide_leaves_the_interval_empty_and_says_why(tmp_path, capsys):
    runs = [run_dir(tmp_path / f"s{s}", seed=s, n_slides=1) for s in (0, 1)]
    text, table = _report(tmp_path, runs, capsys)
    row = table[table["select"] == "val_wga"].iloc[0]
    assert row["n_seeds"] == 2 and np.isnan(row["wga_ci_low"]) and np.isnan(row["wga_ci_high"])
    assert "needs at least 2 test slides, this table holds 1" in text


def test_tiny_groups_are_marked_in_table1(tmp_path, capsys):
    runs = [run_dir(tmp_path / "tiny", group_n=6)]
    text, table = _report(tmp_path, runs, capsys)
    assert table["min_group_n"].tolist() == [1, 1]
    assert "⚠" in text and "fewer than 20 patches" in text
    text, _ = _report(tmp_path, [run_dir(tmp_path / "big", group_n=40)], capsys, "big.html")
    assert "⚠" not in text


def test_labels_name_what_differs_within_a_method():
    configs = [
        {"method": "gerne", "beta": 1.0, "c": 0.5, "seed": 0, "out": "a"},
        {"method": "gerne", "beta": 1, "c": 0.5, "seed": 1, "out": "b", "num_threads": 3},
        {"method": "gerne", "beta": 1.0, "c": 0.5, "features": "feat.zarr", "out": "c"},
        {"method": "gerne", "beta": 3.0, "c": 0.25, "out": "d"},
        {"method": "dfr", "features": "feat.zarr", "out": "e"},
        {"method": "erm", "beta": 7.0, "out": "f"},
    ]
    labels = config_labels(configs)
    assert labels[0] == labels[1] == "beta=1 c=0.5"
    assert config_key(configs[0]) == config_key(configs[1])
    assert labels[2] == "head"  # the one GERNE head configuration
    assert labels[3] == "beta=3 c=0.25"
    assert labels[4] == "head (val labels)"
    assert labels[5] == ""  # ERM's one configuration: its beta means nothing here
    assert config_key({"method": "erm", "lr": 0.1}) != config_key({"method": "erm"})


def test_report_of_a_sweep_is_table1_of_the_selected_point(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    rows = []
    for beta, wgas in ((1.0, (0.8, 0.7)), (2.0, (0.2, 0.3))):
        for seed, wga in enumerate(wgas):
            name = f"beta={beta:g}_seed={seed}"
            run_dir(sweep / name, seed=seed, wga=wga, method="gerne", beta=beta)
            rows.append(
                {
                    "run": name,
                    "seed": seed,
                    "status": "run",
                    "beta": beta,
                    "val_wga": wga,
                    "test_wga": wga,
                    "test_bca": 0.7,
                    "selected": beta == 1.0,
                }
            )
    pd.DataFrame(rows).to_csv(sweep / "sweep.csv", index=False)
    (sweep / "sweep.json").write_text(
        json.dumps({"method": "gerne", "axes": {"beta": [1.0, 2.0]}, "seeds": [0, 1]})
    )
    selected = {
        "select": "val_wga",
        "point": {"beta": 1.0},
        "runs": ["beta=1_seed=0", "beta=1_seed=1"],
    }
    (sweep / "selected.json").write_text(json.dumps(selected))
    text, table = _report(tmp_path, [sweep], capsys)
    row = table[table["select"] == "val_wga"].iloc[0]
    assert row["n_seeds"] == 2 and row["wga_mean"] == pytest.approx(75.0)
    assert np.isfinite(row["wga_ci_low"])
    assert "Table 1" in text and "selected point" in text


# -- train: empty and tiny groups of the validation and test splits ------------------------
@pytest.mark.torch
def test_train_warns_about_tiny_groups_in_metrics_json_and_on_stderr(tmp_path, capsys):
    pytest.importorskip("torch")
    from _cohort import make_cohort

    manifest = make_cohort(tmp_path / "cohort", cells=6)  # 36 patches a slide: tiny groups
    out = tmp_path / "run"
    argv = ["train", manifest, "--model", "smallcnn", "--patch-size", 16, "--batch-size", 8]
    argv += ["--num-threads", 1, "--quiet", "--steps", 2, "--eval-every", 2, "--out", out]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    counts = [g["n"] for g in metrics["test"]["groups"].values()]
    assert sum(counts) > 0 and min(counts) < 20
    assert any(w.startswith("test: group ") for w in metrics["warnings"])
    assert any(w.startswith("validation: group ") for w in metrics["warnings"])
    assert metrics["test"]["warnings"] == [w for w in metrics["warnings"] if w[:5] == "test:"]
    for line in metrics["warnings"]:
        assert f"patchwise train: warning: {line}" in err
