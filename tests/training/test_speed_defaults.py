"""Training at the hardware's speed: torch's thread count and OpenMP wait policy by default.

Why (docs/benchmarks.md, "Training speed"): with torch's OpenMP threads spinning while
they wait, two threads ran smallcnn 3x slower than one on the 2-core machine as soon as
another process held a core; sleeping threads are as fast as one there, and ~1.8x faster
on a quiet machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402
from napari_patchwise.training import loop as train_module  # noqa: E402
from napari_patchwise.training.loop import (  # noqa: E402
    TrainCallbacks,
    TrainConfig,
    cgroup_cpu_limit,
    default_num_threads,
    passive_openmp_waits,
    train,
    usable_cores,
)


# -- the rule ----------------------------------------------------------------------------------
def _cgroup(tmp_path, **files):
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    assert cgroup_cpu_limit(_cgroup(tmp_path / "a", **{"cpu.max": "250000 100000\n"})) == 2.5
    assert cgroup_cpu_limit(_cgroup(tmp_path / "b", **{"cpu.max": "max 100000\n"})) is None
    v1 = {"cpu__cpu.cfs_quota_us": "150000\n", "cpu__cpu.cfs_period_us": "100000\n"}
    assert cgroup_cpu_limit(_cgroup(tmp_path / "c", **v1)) == 1.5
    unlimited = {"cpu__cpu.cfs_quota_us": "-1\n", "cpu__cpu.cfs_period_us": "100000\n"}
    assert cgroup_cpu_limit(_cgroup(tmp_path / "d", **unlimited)) is None
    assert cgroup_cpu_limit(_cgroup(tmp_path / "e", **{"cpu.max": "garbage\n"})) is None
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_usable_cores_are_the_affinity_mask_capped_by_the_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "none") == affinity
    # 1.5 CPUs of quota keep one thread busy, not two; a tiny quota still leaves one
    assert usable_cores(_cgroup(tmp_path / "a", **{"cpu.max": "150000 100000"})) == 1
    assert usable_cores(_cgroup(tmp_path / "b", **{"cpu.max": "10000 100000"})) == 1
    big = _cgroup(tmp_path / "c", **{"cpu.max": f"{100000 * (affinity + 8)} 100000"})
    assert usable_cores(big) == affinity


@pytest.mark.parametrize(
    ("torch_threads", "cores", "expected"),
    [(2, 2, 2), (32, 4, 4), (1, 16, 1), (16, 64, 16), (4, 1, 1)],
)
def test_default_threads_are_one_per_usable_core_within_torchs_default(
    torch_threads, cores, expected
):
    assert default_num_threads(torch_threads, cores) == expected


# -- the OpenMP wait policy -------------------------------------------------------------------
def test_passive_waits_are_set_only_before_torch_loads_and_never_over_the_users(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert passive_openmp_waits() is False  # torch is loaded here: too late to matter
    assert "OMP_WAIT_POLICY" not in os.environ

    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh `patchwise train` process
    assert passive_openmp_waits() is True
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert passive_openmp_waits() is True
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_patchwise_train_sets_passive_waits_before_torch_is_imported(tmp_path):
    """The real command in a fresh process: the policy is in place when torch loads."""
    manifest = make_cohort(tmp_path / "cohort")
    script = textwrap.dedent(
        """
        import json, os, sys

        seen = {}

        class WatchTorch:  # notes the policy at the moment torch is first imported
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and "policy" not in seen:
                    seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
                return None

        sys.meta_path.insert(0, WatchTorch())
        from napari_patchwise.cli.main import main

        rc = main(sys.argv[1:])
        print(json.dumps({"rc": rc, **seen}))
        """
    )
    argv = [str(manifest), "--out", str(tmp_path / "run"), "--model", "smallcnn"]
    argv += ["--patch-size", "16", "--steps", "1", "--eval-every", "1", "--batch-size", "8"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", script, "train", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"rc": 0, "policy": "PASSIVE"}


# -- the loop uses the rule -------------------------------------------------------------------
class ThreadsSeen(TrainCallbacks):
    def __init__(self):
        self.threads = []

    def on_step(self, step, total, loss):
        self.threads.append(torch.get_num_threads())


def _config(manifest, out, **kw):
    return TrainConfig.from_options(
        manifest=str(manifest),
        out=str(out),
        model="smallcnn",
        patch_size=16,
        steps=2,
        eval_every=2,
        batch_size=8,
        device="cpu",
        **kw,
    )


def test_train_runs_the_default_thread_count_and_restores_torchs(tmp_path, monkeypatch):
    manifest = make_cohort(tmp_path / "cohort")
    before = torch.get_num_threads()
    monkeypatch.setattr(train_module, "usable_cores", lambda: 1)  # e.g. a 1-CPU quota
    torch.set_num_threads(2)
    try:
        seen = ThreadsSeen()
        train(_config(manifest, tmp_path / "default"), seen)
        assert seen.threads == [1, 1]
        assert torch.get_num_threads() == 2

        seen = ThreadsSeen()  # an explicit --num-threads wins over the rule
        train(_config(manifest, tmp_path / "explicit", num_threads=2), seen)
        assert seen.threads == [2, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
