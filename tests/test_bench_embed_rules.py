"""benchmarks/bench_embed.py publishes only quiet, repeated figures; bench_gpu.py's ViT-L
embed case and its no-CUDA path. Nothing here embeds (the checks run before any work)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_embed")


def test_a_loaded_machine_is_refused_docs(bench):
    docs = ROOT / "docs" / "results" / "bench_embed"
    # 1.2 on 2 cores = 0.6 per core > 0.5: refused, with the figures and the way out
    with pytest.raises(SystemExit, match=r"load average 1\.20 on 2 cores.*0\.60 per core"):
        bench.check_conditions(docs, (1.2, 1.0, 1.0), 5, allow_loaded=False, cores=2)
    # at the limit: quiet
    assert bench.check_conditions(docs, (1.0, 9, 9), 5, allow_loaded=False, cores=2) is False
    # allowed: written, and said to be loaded (the table's first line says so)
    assert bench.check_conditions(docs, (1.2, 1, 1), 5, allow_loaded=True, cores=2) is True


def test_docs_need_five_repeats_and_other_folders_take_anything(bench, tmp_path):
    docs = ROOT / "docs" / "results" / "bench_embed"
    with pytest.raises(SystemExit, match="3 repeats — figures in docs/ need at least 5"):
        bench.check_conditions(docs, (0.0, 0, 0), 3, allow_loaded=False, cores=2)
    assert bench.check_conditions(tmp_path, (9.0, 9, 9), 1, allow_loaded=False, cores=2)


def test_a_loaded_run_into_docs_stops_before_any_work(bench, monkeypatch):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    monkeypatch.setattr(bench, "make_cohort", lambda *a: pytest.fail("work was started"))
    with pytest.raises(SystemExit, match="rerun on a quiet machine"):
        bench.main(["--repeats", "5"])


def test_bench_gpu_runs_the_vit_l_embed_case_on_cuda(monkeypatch, tmp_path):
    pytest.importorskip("timm")
    monkeypatch.syspath_prepend(str(BENCH))
    gpu = importlib.import_module("bench_gpu")
    embed = importlib.import_module("bench_embed")
    calls: list[list[str]] = []
    monkeypatch.setattr(embed, "main", lambda argv: calls.append(argv))

    class Device:
        def __init__(self, kind: str) -> None:
            self.type = kind

    gpu.vit_embed_rows(Device("cuda"), False)
    assert calls[-1] == ["--device", "cuda", "--models", "ViT-L/16"]  # publishes embed_cuda.md
    gpu.vit_embed_rows(Device("cpu"), True)
    assert calls[-1] == ["--device", "cpu", "--models", "ViT-S/16", "--quick"]
    gpu.vit_embed_rows(Device("cpu"), False)  # a CPU script check never writes into docs/
    assert calls[-1][:4] == ["--device", "cpu", "--models", "ViT-S/16"]
    assert calls[-1][4] == "--results" and "docs" not in calls[-1][5]

    def refuse(argv):
        raise SystemExit("bench_embed: docs/...: load average 9 — rerun on a quiet machine")

    monkeypatch.setattr(embed, "main", refuse)
    gpu.vit_embed_rows(Device("cuda"), False)  # said, and bench_gpu goes on


def test_bench_gpu_and_embed_skip_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the skip path is not taken")
    for script, args in (
        ("bench_gpu.py", ["--quick"]),
        ("bench_embed.py", ["--device", "cuda", "--quick"]),
    ):
        done = subprocess.run(
            [sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "skipped: no CUDA device" in done.stdout
