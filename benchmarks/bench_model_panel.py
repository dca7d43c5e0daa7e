"""Model panel: what training in a spawned process costs against training in-process.

The dock trains in a spawned process (triton after Mesa segfaults in the viewer's
process; see ``_napari/train_worker.py``). Baseline, measured in the same run:
``train.train`` in this process (torch already imported, caches warm). Reported: time
to the first step event and total time for a 40-step smallcnn run on the tiny test cohort.

    .venv/bin/python benchmarks/bench_model_panel.py [--steps 40] [--quick]

``--quick`` (what ``make bench`` runs): 10 steps instead of 40, the same comparison.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _cohort import make_cohort
from napari_patchwise._napari.jobs.training_work import Step, run_training
from napari_patchwise.training.loop import TrainCallbacks, TrainConfig, train


class FirstStep(TrainCallbacks):
    def on_step(self, step, total, loss):
        if step == 1:
            self.at = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (40; quick 10)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    steps = args.steps or (10 if args.quick else 40)
    folder = Path(tempfile.mkdtemp(prefix="bench_model_panel_"))
    manifest = make_cohort(folder, patch=16)

    def config(name: str) -> TrainConfig:
        return TrainConfig.from_options(
            manifest=str(manifest),
            out=str(folder / name),
            model="smallcnn",
            patch_size=16,
            steps=steps,
            eval_every=max(1, steps // 2),
            batch_size=16,
            num_threads=1,
            seed=0,
        )

    train(config("warm"))  # patch caches built, torch.optim (and triton) imported
    t0 = time.perf_counter()
    callbacks = FirstStep()
    train(config("in_process"), callbacks)
    total = time.perf_counter() - t0
    print(f"in-process (baseline): first step {callbacks.at - t0:.2f} s, total {total:.2f} s")

    t0 = time.perf_counter()
    first = None
    generator = run_training(config("spawned"))
    try:
        while True:
            batch = next(generator)
            if first is None and any(isinstance(e, Step) for e in batch):
                first = time.perf_counter()
    except StopIteration:
        pass
    total = time.perf_counter() - t0
    print(f"spawned process (panel): first step {first - t0:.2f} s, total {total:.2f} s")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
