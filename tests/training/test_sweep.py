"""`patchwise sweep`: the grid, GERNE's bound, selection on validation, resume, the report.

The integration tests run one real sweep over a tiny cohort (tests/_cohort.py, smallcnn,
a few steps, one thread) and check it against the runs' own files.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from _cohort import make_cohort
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.training.sweep import (
    SELECTED,
    SPEC,
    TABLE,
    numeric_options,
    parse_axis,
    select_point,
)

FAST = [
    "--model", "smallcnn", "--patch-size", "16", "--batch-size", "16", "--lr", "0.05",
    "--steps", "6", "--eval-every", "2", "--quiet",
]  # fmt: skip
GRID = ["--method", "gerne", "--grid", "beta=0.5,3", "--grid", "c=0.5,1", "--seeds", "0", "1"]


# -- the grid (no torch) ----------------------------------------------------------------------
def test_parse_axis_values_and_names():
    axis = parse_axis("beta=0.5, 1,2e0")
    assert (axis.name, axis.values, axis.texts) == ("beta", (0.5, 1.0, 2.0), ("0.5", "1", "2"))
    assert parse_axis("--weight-decay=1e-4,0.01").name == "weight_decay"
    steps = parse_axis("steps=10,20")
    assert steps.values == (10, 20) and all(type(v) is int for v in steps.values)
    kinds = numeric_options()
    assert kinds["beta"] is float and kinds["patch_size"] is int and kinds["num_threads"] is int
    assert not {"seed", "model", "method", "augment", "manifest"} & set(kinds)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("beta", "is not NAME=V1,V2"),
        ("foo=1,2", "foo: not a numeric option"),
        ("model=a,b", "model: not a numeric option"),
        ("seed=1,2", "seeds are listed with --seeds"),
        ("beta=1,x", "'x' is not a finite number"),
        ("beta=1,nan", "'nan' is not a finite number"),
        ("steps=1.5", "'1.5' is not a whole number"),
        ("beta=1,1.0", "a value is listed twice"),
    ],
)
def test_parse_axis_refuses(spec, message):
    with pytest.raises(PatchwiseError, match=re.escape(message)):
        parse_axis(spec)


def test_bad_grid_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "cohort.csv"  # never read: the parser stops first
    argv = ["sweep", str(manifest), "--out", str(tmp_path / "s")]
    assert main([*argv, "--grid", "model=a,b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--grid model: not a numeric option" in err
    assert main([*argv, "--grid", "beta=1,2", "--beta", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta given both as a flag and as a --grid axis" in err
    assert not (tmp_path / "s").exists()


def test_select_point_by_mean_over_seeds():
    table = pd.DataFrame(
        {
            "run": list("abcdef"),
            "beta": [0.5, 0.5, 1.0, 1.0, 2.0, 2.0],
            "seed": [0, 1] * 3,
            "status": ["run", "run", "run", "run", "run", "failed"],
            "val_wga": [0.6, 0.8, 0.9, 0.4, 0.99, math.nan],
            "test_wga": [0.5, 0.7, 0.1, 0.1, 0.2, math.nan],
            "test_bca": [0.9] * 6,
        }
    )
    # means 0.7 and 0.65; beta=2 has the best run but a failed seed: not compared
    selected = select_point(table, ["beta"], "val_wga")
    assert selected["point"] == {"beta": 0.5} and selected["runs"] == ["a", "b"]
    assert selected["val_mean"] == pytest.approx(0.7) and selected["seeds"] == [0, 1]
    assert selected["val_std"] == pytest.approx(math.sqrt(0.02))
    assert selected["test_wga_mean"] == pytest.approx(0.6)
    table.loc[3, "val_wga"] = 0.5  # now a tie at 0.7: the first point in grid order wins
    assert select_point(table, ["beta"], "val_wga")["point"] == {"beta": 0.5}
    table["status"] = "failed"
    assert select_point(table, ["beta"], "val_wga")["point"] is None


# -- a real sweep ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("sweep")
    manifest = make_cohort(folder / "cohort")
    argv = ["sweep", str(manifest), *GRID, *FAST, "--out", str(folder / "out")]
    assert main(argv) == 0
    return folder / "out", manifest, argv


def _history_best(run_dir: Path, metric: str) -> float:
    return float(pd.read_csv(run_dir / "history.csv")[metric].max())


@pytest.mark.torch
def test_grid_runs_skips_out_of_bound_beta(swept):
    from napari_patchwise.groups import alphas
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.data import load_cohort

    out, manifest, _ = swept
    table = pd.read_csv(out / TABLE, keep_default_na=False, na_values=[""])
    assert len(table) == 8 and list(table["seed"]) == [0, 1] * 4
    # GERNE's bound by hand from the training split: alpha_max / (c (alpha_max - 1/2)) - 1
    train = load_cohort(manifest, PatchSettings(patch_size=16)).table("train")
    a_max = float(alphas(train["label"], train["tissue_ratio"], 0.1).max())
    bound = {c: a_max / (c * (a_max - 0.5)) - 1 for c in (0.5, 1.0)}
    assert bound[1.0] < 3 < bound[0.5]  # beta=3 is out of bound at c=1 only
    skipped = table[table["status"] == "skipped"]
    assert list(skipped["run"]) == ["beta=3_c=1_seed=0", "beta=3_c=1_seed=1"]
    assert all(f"beta_max={bound[1.0]:.4g} for c=1" in n for n in skipped["note"])
    assert not any((out / r).exists() for r in skipped["run"])
    ran = table[table["status"] == "run"]
    assert len(ran) == 6
    for _, row in ran.iterrows():
        config = json.loads((out / row["run"] / "config.json").read_text())
        # the grid values, the seed, and every train flag passed through unchanged
        assert (config["beta"], config["c"], config["seed"]) == (row["beta"], row["c"], row["seed"])
        assert config["method"] == "gerne" and config["model"] == "smallcnn"
        assert (config["lr"], config["steps"], config["eval_every"]) == (0.05, 6, 2)
        assert (config["batch_size"], config["patch_size"], config["num_threads"]) == (16, 16, 1)
        assert row["val_wga"] == _history_best(out / row["run"], "val_wga")
        assert row["val_bca"] == _history_best(out / row["run"], "val_bca")
    spec = json.loads((out / SPEC).read_text())
    assert spec["axes"] == {"beta": [0.5, 3.0], "c": [0.5, 1.0]} and spec["seeds"] == [0, 1]


@pytest.mark.torch
def test_selection_matches_the_runs_files(swept):
    out, _, _ = swept
    selected = json.loads((out / SELECTED).read_text())
    means = {}
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        config = json.loads((run / "config.json").read_text())
        means.setdefault((config["beta"], config["c"]), []).append(_history_best(run, "val_wga"))
    means = {k: sum(v) / len(v) for k, v in means.items() if len(v) == 2}
    assert len(means) == 3 and len(set(means.values())) > 1  # not a tie: the choice matters
    best = max(means, key=means.get)
    assert (selected["point"]["beta"], selected["point"]["c"]) == best
    assert selected["val_mean"] == pytest.approx(means[best], abs=1e-12)
    assert selected["select"] == "val_wga"
    b, c = (f"{v:g}" for v in best)
    assert selected["runs"] == [f"beta={b}_c={c}_seed=0", f"beta={b}_c={c}_seed=1"]
    table = pd.read_csv(out / TABLE)
    assert sorted(table.loc[table["selected"], "run"]) == selected["runs"]


@pytest.mark.torch
def test_report_shows_the_grid(swept, tmp_path):
    out, _, _ = swept
    selected = json.loads((out / SELECTED).read_text())
    report = tmp_path / "sweep.html"
    assert main(["report", str(out), "--out", str(report)]) == 0
    text = report.read_text()
    start = text.index("<tbody>", text.index("<table class='grid'>"))
    grid = text[start : text.index("</tbody>", start)]
    rows = re.findall(r"<tr( class='selected')?>(.*?)</tr>", grid)
    cells = [re.findall(r"<td>(.*?)</td>", r) for _, r in rows]
    assert [c[:3] for c in cells] == [
        ["0.5", "0.5", "2/2"],
        ["0.5", "1", "2/2"],
        ["3", "0.5", "2/2"],
        ["3", "1", "skipped"],
    ]
    point = selected["point"]
    marked = [c[:2] for (sel, _), c in zip(rows, cells, strict=True) if sel]
    assert marked == [[f"{point['beta']:g}", f"{point['c']:g}"]]
    assert sum(c.count("◀ selected") for c in cells) == 1
    val = next(c[3] for (sel, _), c in zip(rows, cells, strict=True) if sel)
    assert val.startswith(f"{100 * selected['val_mean']:.2f}")
    assert "beta_max=" in cells[3][-1]


@pytest.mark.torch
def test_rerun_trains_only_the_damaged_runs(swept, capsys):
    out, _, argv = swept
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    before = {f: f.stat().st_mtime_ns for r in runs for f in r.iterdir()}
    resumed, restarted = out / "beta=0.5_c=1_seed=0", out / "beta=3_c=0.5_seed=1"
    (resumed / "metrics.json").unlink()  # killed after its last step: resumed from last.pt
    (restarted / "metrics.json").unlink()
    data = (restarted / "last.pt").read_bytes()
    (restarted / "last.pt").write_bytes(data[: len(data) // 2])  # damaged: trained afresh
    time.sleep(0.01)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count(": reused") == 4 and err.count(": run") == 2
    for run in runs:
        if run in (resumed, restarted):
            continue
        assert all(f.stat().st_mtime_ns == before[f] for f in run.iterdir()), run
    assert (resumed / "last.pt").stat().st_mtime_ns == before[resumed / "last.pt"]
    assert (resumed / "metrics.json").is_file()
    assert (restarted / "last.pt").stat().st_mtime_ns > before[restarted / "last.pt"]
    assert list(pd.read_csv(restarted / "history.csv")["step"]) == [2, 4, 6]
    table = pd.read_csv(out / TABLE)
    assert (table["status"] != "failed").all()


@pytest.mark.torch
def test_ctrl_c_stops_every_run_cleanly(tmp_path):
    """A real `patchwise sweep` interrupted mid-run: last.pt written, nothing else started."""
    pytest.importorskip("torch")
    manifest = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_patchwise.cli", "sweep", str(manifest)]
    argv += ["--method", "erm", "--grid", "lr=0.01,0.05", "--model", "smallcnn"]
    argv += ["--patch-size", "16", "--batch-size", "16", "--steps", "4000", "--eval-every", "1000"]
    argv += ["--quiet", "--out", str(out)]
    # Ctrl-C's default disposition in the child even when this run inherited SIG_IGN (a
    # background job of a non-interactive shell): Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    first = out / "lr=0.01_seed=0"
    deadline = time.monotonic() + 120
    while not (first / "config.json").is_file() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    time.sleep(1.0)  # some steps into the run
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command to continue" in err
    assert (first / "last.pt").is_file() and not (first / "metrics.json").exists()
    assert not (out / TABLE).exists() and not (out / ".patchwise-sweep-stop").exists()
    assert not (out / "lr=0.05_seed=0").exists()  # queued: never started
    report = subprocess.run(
        [*argv[:3], "report", str(out), "--out", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode == 2 and "the sweep has not finished" in report.stderr
    assert report.stderr.count("\n") == 1


def test_every_train_flag_passes_through_unchanged(tmp_path):
    """A run's settings are what `patchwise train` makes of the same flags (no torch)."""
    from napari_patchwise.cli import sweep as sweep_cmd
    from napari_patchwise.cli.main import build_parser
    from napari_patchwise.cli.train import config_from_args

    parser = build_parser()
    train_flags = {
        s for a in sweep_cmd.passed_actions(sweep_cmd.train_parser()) for s in a.option_strings
    }
    sweep_flags = set(parser._subparsers._group_actions[0].choices["sweep"]._option_string_actions)
    assert train_flags <= sweep_flags and {"--lr", "--no-augment", "--select"} <= train_flags
    flags = [
        "--method", "groupdro", "--tau", "0.25", "--model", "smallcnn", "--steps", "7",
        "--no-augment", "--tissue", "intensity", "--tissue-threshold", "-5.5",
        "--mask-map", "0=background,1=tumor", "--select", "val_bca", "--eta", "0.03",
        "--cache-dir", "rel/cache", "--stride", "8", "--num-threads", "2", "--lr", "1e-3",
    ]  # fmt: skip
    manifest = "data/cohort.csv"
    trained = config_from_args(
        parser.parse_args(["train", manifest, *flags, "--seed", "3", "--out", "r"])
    )
    args = parser.parse_args(["sweep", manifest, *flags, "--grid", "beta=2", "--out", "s"])
    swept = sweep_cmd.config_factory(args)({"beta": 2.0, "seed": 3, "out": "r"})
    expected = trained.to_options() | {
        "manifest": os.path.abspath(manifest),
        "cache_dir": os.path.abspath("rel/cache"),
        "beta": 2.0,
    }
    assert swept.to_options() == expected
    # without --num-threads each run gets one torch thread (runs share the cores)
    args = parser.parse_args(["sweep", manifest, "--out", "s"])
    assert sweep_cmd.config_factory(args)({"seed": 0, "out": "r"}).num_threads == 1


@pytest.mark.torch
def test_sweep_on_a_dask_cluster(tmp_path):
    pytest.importorskip("torch")
    distributed = pytest.importorskip("distributed")
    manifest = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        argv = ["sweep", str(manifest), "--method", "gerne", "--grid", "c=0.5,1", *FAST]
        assert main([*argv, "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    table = pd.read_csv(out / TABLE)
    assert list(table["run"]) == ["c=0.5_seed=0", "c=1_seed=0"]
    assert (table["status"] == "run").all()
    for run in table["run"]:
        assert (out / run / "metrics.json").is_file()


@pytest.mark.torch
@pytest.mark.slow  # 30 s; faster: test_rerun_trains_only_the_damaged_runs (the rerun after a
# killed run's files) and test_sweep_orphans.py's kill -9 of a sweep mid-run
def test_sigkill_mid_sweep_then_rerun_finishes_only_what_is_missing(tmp_path):
    """A real kill -9 while the second run trains; the rerun reuses the first run untouched."""
    pytest.importorskip("torch")
    manifest = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_patchwise.cli", "sweep", str(manifest)]
    argv += ["--method", "erm", "--grid", "lr=0.01,0.05", "--model", "smallcnn"]
    argv += ["--patch-size", "16", "--batch-size", "16", "--steps", "400", "--eval-every", "20"]
    argv += ["--num-threads", "1", "--quiet", "--out", str(out)]
    # Ctrl-C's default disposition in the child even when this run inherited SIG_IGN (a
    # background job of a non-interactive shell): Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    first, second = out / "lr=0.01_seed=0", out / "lr=0.05_seed=0"
    deadline = time.monotonic() + 240
    while not (second / "history.csv").is_file() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # no handler runs: whatever is on disk stays
    proc.communicate(timeout=60)
    assert (first / "metrics.json").is_file() and not (second / "metrics.json").exists()
    before = {f: f.stat().st_mtime_ns for f in first.iterdir()}
    rerun = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert {f: f.stat().st_mtime_ns for f in first.iterdir()} == before  # reused as it was
    assert (second / "metrics.json").is_file()
    table = pd.read_csv(out / TABLE)
    assert sorted(table["status"]) == ["run", "run"] and (out / SELECTED).is_file()
