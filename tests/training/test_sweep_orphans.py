"""A sweep's worker processes die with it, and a rerun takes over a run an orphan holds.

Real sweeps (tests/_cohort.py, smallcnn, one thread) in subprocesses; the main process is
killed with SIGKILL alone (not its process group), as an out-of-memory killer or a batch
system's hard limit does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from _cohort import make_cohort
from napari_patchwise._atomic import lock_holder, pid_alive
from napari_patchwise.training.runs import LOCK

pytestmark = pytest.mark.torch
SWEEP = ["--method", "erm", "--model", "smallcnn", "--patch-size", "16", "--batch-size", "16"]
SWEEP += ["--num-threads", "1", "--quiet"]


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_of_the_sweep_process_ends_its_worker_within_seconds(tmp_path):
    pytest.importorskip("torch")
    manifest = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "napari_patchwise.cli", "sweep", str(manifest), *SWEEP]
    argv += ["--grid", "lr=0.01", "--steps", "100000", "--eval-every", "50000", "--out", str(out)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lock = out / "lr=0.01_seed=0" / LOCK
    deadline = time.monotonic() + 120
    while len(lock_holder(lock)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    worker, sweep = lock_holder(lock)  # the run lock names its worker and that one's sweep
    assert sweep == proc.pid and worker != proc.pid
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the main process only
        proc.communicate(timeout=60)
        assert _wait_gone(worker, 5.0), "the worker outlived its sweep"
    finally:
        if pid_alive(worker):
            os.killpg(proc.pid, signal.SIGKILL)  # the old behaviour: leave nothing running


_HOLDER = """
import sys, time
from napari_patchwise.training import runs
runs.lock_note = "sweep " + sys.argv[2]
with runs.run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_rerun_takes_over_a_run_an_orphan_of_a_dead_sweep_holds(tmp_path, monkeypatch, caplog):
    """An orphan that did not die (no parent-death signal): the rerun's worker ends it and
    trains the run (before, the run failed: "another patchwise train is writing")."""
    pytest.importorskip("torch")
    from napari_patchwise.training import runs
    from napari_patchwise.training.config import TrainConfig
    from napari_patchwise.training.sweep import train_run

    manifest = make_cohort(tmp_path / "cohort")
    run = tmp_path / "out" / "lr=0.01_seed=0"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_sweep = int(dead.stdout)  # a pid that ran and is gone: the killed sweep
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    orphan = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run), str(dead_sweep)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert orphan.stdout.readline().strip() == "held"
        monkeypatch.setattr(runs, "lock_note", f"sweep {os.getpid()}")  # the rerun's worker
        config = TrainConfig.from_options(
            manifest=str(manifest), out=str(run), model="smallcnn", patch_size=16, steps=2,
            eval_every=2, batch_size=16, num_threads=1,
        )  # fmt: skip
        assert train_run(config, str(tmp_path / "stop"), True) == ("run", "")
        assert orphan.wait(10) is not None and (run / "metrics.json").is_file()
        assert f"ending pid {orphan.pid}, an orphan of sweep pid {dead_sweep}" in caplog.text
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_run_held_by_a_live_sweep_or_a_plain_train_is_not_taken_over(tmp_path, monkeypatch):
    from napari_patchwise.training import runs
    from napari_patchwise.training.sweep import _take_over_from_orphan

    run = tmp_path / "run"
    monkeypatch.setattr(runs, "lock_note", f"sweep {os.getpid()}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for sweep in (os.getppid(), os.getpid()):  # another live sweep; this very sweep
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run), str(sweep)],
                                  stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            started = time.monotonic()
            _take_over_from_orphan(run)
            assert time.monotonic() - started < 1.0 and holder.poll() is None
        finally:
            holder.kill()
            holder.wait()
