"""The benchmark protocol (benchmarks/_protocol.py): rotation, min/median, load refusal,
atomic writes and what every results file records. Fast: nothing is timed for real."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def protocol():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _protocol
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return _protocol


def test_rotation_shifts_the_order_every_repeat(protocol) -> None:
    names = ["a", "b", "c"]
    assert [protocol.rotation(names, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]  # fmt: skip
    assert protocol.rotation([], 3) == []


def test_interleave_runs_cases_in_rotating_order_and_records_their_measures(protocol) -> None:
    calls = []
    ticks = iter(range(100))

    def case(name):
        def run():
            calls.append(name)
            return {"region_ms": len(calls)}

        return run

    records = protocol.interleave({n: case(n) for n in "xyz"}, 3, clock=lambda: float(next(ticks)))
    assert calls == ["x", "y", "z", "y", "z", "x", "z", "x", "y"]
    # each call is timed by two clock reads: start, end -> 1 s each with this clock
    assert [r["wall_s"] for r in records["y"]] == [1.0, 1.0, 1.0]
    assert [r["repeat"] for r in records["x"]] == [0, 1, 2]
    assert [r["region_ms"] for r in records["x"]] == [1, 6, 8]


def test_min_and_median_by_hand(protocol) -> None:
    assert protocol.min_median([5.0, 1.0, 3.0, 9.0, 2.0]) == (1.0, 3.0)
    assert protocol.min_median([4.0, 1.0, 3.0, 2.0]) == (1.0, 2.5)
    with pytest.raises(ValueError):
        protocol.min_median([])
    records = {"a": [{"t": 3.0}, {"t": 1.0}, {"t": 2.0}], "b": [{"u": 1.0}]}
    assert protocol.summarize(records, "t") == {"a": (1.0, 2.0), "b": None}


def _fake_load(monkeypatch, protocol, load, cpus=2):
    monkeypatch.setattr(protocol.os, "getloadavg", lambda: load)
    monkeypatch.setattr(protocol.os, "cpu_count", lambda: cpus)


def test_a_loaded_machine_is_refused_docs(protocol, monkeypatch, tmp_path) -> None:
    docs_folder = protocol.DOCS / "results" / "bench_never_written"
    _fake_load(monkeypatch, protocol, (1.2, 0.3, 0.2))  # 0.6 per core on 2 cores
    with pytest.raises(SystemExit, match=r"0\.60 per core > 0\.5.*--allow-loaded"):
        protocol.Protocol("bench_never_written", quick=False)
    assert not docs_folder.exists()
    # the same load is fine for a folder outside docs/ (and for a quick run)
    run = protocol.Protocol("x", quick=False, results=str(tmp_path / "out"))
    assert run.loaded and not run.publishing
    assert protocol.Protocol("x", quick=True).folder.name == "x_quick"


def test_a_quiet_machine_is_allowed_and_the_limit_is_per_core(protocol, monkeypatch) -> None:
    _fake_load(monkeypatch, protocol, (1.0, 5.0, 9.0))  # exactly 0.5 per core: allowed
    run = protocol.Protocol("bench_never_written", quick=False)
    assert run.publishing and not run.loaded
    _fake_load(monkeypatch, protocol, (1.0, 0.0, 0.0), cpus=1)
    with pytest.raises(SystemExit):
        protocol.Protocol("bench_never_written", quick=False)


def test_fewer_than_five_repeats_are_refused_docs(protocol, monkeypatch) -> None:
    _fake_load(monkeypatch, protocol, (0.0, 0.0, 0.0))
    with pytest.raises(SystemExit, match="at least 5"):
        protocol.Protocol("bench_never_written", quick=False, repeats=4)
    assert protocol.Protocol("bench_never_written", quick=False).repeats == 5
    assert protocol.Protocol("x", quick=True).repeats == 2


def test_allow_loaded_labels_every_table_and_the_meta(protocol, monkeypatch, tmp_path) -> None:
    _fake_load(monkeypatch, protocol, (3.0, 2.0, 1.0))
    run = protocol.Protocol("bench_x", quick=False, allow_loaded=True)
    assert run.publishing and run.loaded
    run.folder = tmp_path / "bench_x"  # publish-checked, but written into tmp
    monkeypatch.setattr(protocol, "DOCS", tmp_path)
    folder = run.write({"t.md": "| a | 1.5 |\n", "t.csv": "a,1.5\n"}, {"size": 4})
    first = (folder / "t.md").read_text().splitlines()[0]
    assert "LOADED machine" in first and "3/2/1" in first and "2 cores" in first
    assert (folder / "t.csv").read_text() == "a,1.5\n"  # only Markdown gets the label
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["conditions"] == "loaded" and meta["load_average_start"] == [3.0, 2.0, 1.0]
    assert meta["size"] == 4 and meta["files"] == ["t.csv", "t.md"]


def test_every_results_file_records_how_it_was_made(protocol, monkeypatch, tmp_path) -> None:
    _fake_load(monkeypatch, protocol, (0.2, 0.4, 0.6))
    run = protocol.Protocol("bench_x", quick=False, results=str(tmp_path / "o"))
    run.write({"t.md": "| a |\n"})
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    for key in ("command", "date_utc", "git_commit", "load_average_start", "load_average_end"):
        assert key in meta, key
    assert meta["conditions"] == "quiet" and meta["repeats"] == 5
    assert meta["machine"]["cpu_count"] == 2 and "cpu_model" in meta["machine"]
    assert meta["versions"]["numpy"] and "napari-patchwise" in meta["versions"]
    assert "quiet machine" in (tmp_path / "o" / "t.md").read_text().splitlines()[0]


def test_writes_are_atomic(protocol, monkeypatch, tmp_path) -> None:
    """A write that fails half-way leaves the previous file whole and no temporary."""
    folder = tmp_path / "o"
    run = protocol.Protocol("bench_x", quick=False, results=str(folder))
    run.write({"t.md": "old\n"})
    before = (folder / "t.md").read_text()
    real = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        run.write({"t.md": "new table that is longer\n"})
    monkeypatch.undo()
    assert (folder / "t.md").read_text() == before
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "t.md"]


def test_flags(protocol) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    protocol.add_arguments(parser)
    args = parser.parse_args(["--quick", "--repeats", "3", "--allow-loaded"])
    run = protocol.Protocol.from_args("bench_x", args)
    assert (run.repeats, run.allow_loaded, run.quick) == (3, True, True)
    assert protocol.fmt_pair((0.0123, 0.0456), 1e3, 1) == "12.3 / 45.6"


def _bench(name: str):
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_bench_open_goals_are_ratios_of_medians_against_the_same_file() -> None:
    bench = _bench("bench_open")

    def recs(key, values):
        return [{key: v, "wall_s": 1.0} for v in values]

    records = {
        "patchwise | wsi20000.svs": recs("region_median_s", [0.010, 0.030, 0.020]),
        "tiffslide | wsi20000.svs": recs("region_median_s", [0.010, 0.010, 0.012]),
        "openslide | wsi20000.svs": recs("region_median_s", [0.040, 0.025, 0.030]),
    }
    rows = [r.rstrip(" |") for r in bench.goals_table(records).splitlines()[2:]]
    assert len(rows) == 2  # the goals whose cases were not run are left out
    assert rows[0].split(" | ")[4:8] == ["2.00", "1.00", "<= 1.0", "no"]  # 20 / 10, 10 / 10
    assert rows[1].split(" | ")[4:8] == ["0.67", "0.40", "<= 0.8", "yes"]  # 20 / 30, 10 / 25
    assert bench._majority({"a": "x", "b": "y", "c": "x"}) == "x"
    assert bench._kind("napari-ome-zarr | wsi8192.ome.zarr") == "napari-ome-zarr | zarr"


def test_bench_wsi_throughput_ratios_by_hand() -> None:
    bench = _bench("bench_wsi_throughput")
    records = {
        bench.FLOOR: [{"wall_s": w, "tiles": 100} for w in (2.0, 4.0, 6.0)],  # 25 tiles/s
        "patchwise stats": [{"wall_s": w, "patches": 100} for w in (5.0, 6.0, 7.0)],
        bench.FORWARD: [{"wall_s": 1.0, "patches": 64, "rate": r} for r in (10.0, 20.0, 30.0)],
        "patchwise predict": [{"wall_s": w, "patches": 40} for w in (2.0, 4.0, 3.0)],
    }
    text = bench.tables(records)
    assert "| stats time / decode floor | 1.50 | <= 1.5 | yes |" in text  # 6 / 4
    # predict: 40 / 3 = 13.3 patches/s; bound min(forward 20, floor 25 tiles/s) = 20
    assert "| predict rate / its bound (forward, 20.0 patches/s) | 0.67 | >= 0.8 | no |" in text
    assert f"| {bench.FORWARD} | 1.000 / 1.000 | 64 | 30.0 / 20.0 |" in text
    ring = bench.annotations(1000)["features"][0]["geometry"]["coordinates"]
    assert ring[0][0] == [100.0, 100.0] and ring[1][2] == [650.0, 650.0]  # Stroma with a hole
