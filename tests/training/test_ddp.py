"""Data-parallel training: two CPU processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from napari_patchwise.training.loop import TrainCallbacks, TrainConfig, train

    class Log(TrainCallbacks):
        def __init__(self):
            self.losses = []
        def on_step(self, step, total, loss):
            self.losses.append(loss)

    manifest, out, logs = sys.argv[1:4]
    cb = Log()
    config = TrainConfig.from_options(manifest=manifest, out=out, method="gerne", beta=0.5,
                                      model="smallcnn", patch_size=16, steps=4, eval_every=2,
                                      batch_size=16, device="cpu", num_threads=1)
    train(config, cb)
    rank = torch.distributed.get_rank()
    # every rank reports its own losses
    with open(os.path.join(logs, f"rank{rank}.json"), "w") as fh:
        json.dump({"losses": cb.losses, "world": torch.distributed.get_world_size()}, fh)
    """
)


def test_two_cpu_processes_train_data_parallel(tmp_path):
    manifest = make_cohort(tmp_path / "cohort")
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(manifest), str(out), str(logs),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and len(r["losses"]) == 4 for r in ranks)
    # each rank draws its own batches (own seed): the local losses differ
    assert ranks[0]["losses"] != ranks[1]["losses"]
    # only rank 0 wrote the run directory, completely
    assert {"config.json", "best.pt", "last.pt", "history.csv", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    assert pd.read_csv(out / "history.csv")["step"].tolist() == [2, 4]
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
