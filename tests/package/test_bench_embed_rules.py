"""benchmarks/bench_embed.py publishes only quiet, repeated figures; bench_gpu.py's ViT-L
embed case and its no-CUDA path. Nothing here embeds (the checks run before any work)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_embed")


def test_a_loaded_run_into_docs_stops_before_any_work(bench, monkeypatch):
    protocol = importlib.import_module("_protocol")
    monkeypatch.setattr(protocol.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    monkeypatch.setattr(bench, "make_cohort", lambda *a: pytest.fail("work was started"))
    with pytest.raises(SystemExit, match="rerun on a quiet machine"):
        bench.main(["--repeats", "5"])
    with pytest.raises(SystemExit, match="3 repeats — figures in docs/ need at least 5"):
        bench.main(["--repeats", "3"])


def test_a_quick_run_is_interleaved_and_written_outside_docs(bench, monkeypatch, tmp_path):
    pytest.importorskip("timm")
    bench.main(["--quick", "--results", str(tmp_path)])
    table = (tmp_path / "embed_cpu.md").read_text().splitlines()
    assert table[0].startswith("<!-- ") and "interleaved repeats" in table[0]
    row = next(line for line in table if line.startswith("| ViT-S/16 |"))
    assert row.count("/") >= 4 and row.rstrip().endswith("x |")
    meta = (tmp_path / "cpu.meta.json").read_text()
    assert '"load_average_start"' in meta and '"weights": "random"' in meta


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
