"""Training speed: ``patchwise train`` against the model's own step rate (the floor).

Measures, in one run on the same machine:

* ``patchwise train`` — the real command, in a fresh process, ``--device cpu`` — on a small
  synthetic cohort (``patchwise synth`` slides): its loop's steps per second, read from
  ``history.csv`` (``seconds`` at the one validation, after the last step: process start,
  cache preparation, validation and the final test are not in it);
* the floor: the same model's forward + backward + SGD step (the run's lr, momentum and
  weight decay) on one batch of the cohort's training patches already in memory (normalised
  as training does: random tensors ran 6 % slower) — same batch size, patch size, channels
  and torch threads — also timed from a fresh process, from its first step, as the
  command's loop is;

at torch's thread count by default (what ``train`` picks: one per usable core, OpenMP
threads waiting passively) and at each ``--threads`` count, command and floor interleaved
in an order that rotates between ``--repeats`` repeats (``_protocol.py``; best and median). Target (issue 10): the command at >= 0.8x the floor's
steps per second at the default threads (the exit status says whether it is met).

Then the data side, which must stay ahead of the model: the loader's throughput from an
on-disk patch cache (random batches, normalised, flips/rotations) with 0 and 2 worker
processes, against the floor's patches per second; and, for reference, random patch
reads straight from a tiled, compressed OME-TIFF (what the patch cache avoids).

    .venv/bin/python benchmarks/bench_train.py [--model smallcnn] [--steps 200]
        [--repeats 5] [--threads 1 2]

Writes ``train.md`` into ``docs/results/bench_train/`` (refused on a loaded machine).

``--quick`` (what ``make bench`` runs): 512 px slides, 20 steps, 2 repeats, the default
threads only, 512 cached patches for the loader, 50 uncached reads; the same tables, and
the target is reported but not enforced (20 steps are mostly warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _protocol import Protocol, add_arguments

SLIDES = Path(__file__).resolve().parent / "_data" / "bench_train"
TARGET = 0.8  # the command's steps/s as a fraction of the floor's
QUICK = {"size": 512, "steps": 20, "threads": [], "n": 512, "batches": 10}
FULL = {"size": 1024, "steps": 200, "threads": None, "n": 8192, "batches": 150}


# -- the cohort ------------------------------------------------------------------------------
def make_cohort(size: int) -> Path:
    """Synthetic train (2), val and test slides (kept in benchmarks/_data) and their manifest."""
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

    folder = SLIDES / str(size)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    for name, seed in (("train1", 11), ("train2", 12), ("val", 21), ("test", 31)):
        image, mask = folder / f"{name}.ome.tif", folder / f"{name}_mask.tif"
        if not (image.exists() and mask.exists()):
            write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=seed))
        lines.append(f"{image.name},{mask.name},{name.rstrip('12')}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


# -- the command and the floor, each in a fresh process ---------------------------------------
def command_rate(manifest: Path, out: Path, args, threads: int | None) -> float:
    """Steps/s of ``patchwise train``'s loop (``history.csv``'s ``seconds``)."""
    argv = [sys.executable, "-m", "napari_patchwise.cli", "train", str(manifest)]
    argv += ["--out", str(out), "--model", args.model, "--device", "cpu", "--seed", "0"]
    argv += ["--steps", str(args.steps), "--eval-every", str(args.steps)]
    argv += ["--batch-size", str(args.batch_size), "--patch-size", str(args.patch)]
    if threads is not None:
        argv += ["--num-threads", str(threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"patchwise train failed:\n{done.stderr[-3000:]}")
    seconds = float(pd.read_csv(out / "history.csv")["seconds"].iloc[-1])
    return args.steps / seconds


def floor_rate(manifest: Path, args, threads: int | None) -> tuple[float, int]:
    """Steps/s of the floor in a fresh process, and the thread count it ran with."""
    spec = {
        "manifest": str(manifest),
        "model": args.model,
        "batch_size": args.batch_size,
        "patch": args.patch,
        "threads": threads,
        "steps": args.steps,
    }
    argv = [sys.executable, __file__, "--floor-spec", json.dumps(spec)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the floor failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["steps_per_s"], result["threads"]


def run_floor(spec: dict) -> None:
    """The floor itself (``--floor-spec``): prints ``{"steps_per_s", "threads"}``."""
    from napari_patchwise.training.loop import default_num_threads, passive_openmp_waits

    passive_openmp_waits()  # as `patchwise train` does, before torch loads
    import warnings

    import torch

    from napari_patchwise.training.config import TrainConfig
    from napari_patchwise.training.data import (
        PatchSettings,
        channel_stats,
        load_cohort,
        make_dataset,
    )
    from napari_patchwise.training.models import build_model

    threads = spec["threads"] or default_num_threads(torch.get_num_threads())
    torch.set_num_threads(threads)
    cohort = load_cohort(spec["manifest"], PatchSettings(patch_size=spec["patch"]))
    mean, std = channel_stats([s.cache for s in cohort.splits["train"]])
    train_set = make_dataset(cohort, "train", 0.1, mean, std)
    pick = np.random.default_rng(0).choice(len(train_set), spec["batch_size"])
    x, y, _g = train_set.__getitems__(pick)  # one training batch, held in memory
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initialisation
        model = build_model(spec["model"], int(cohort.channels))
    model.train()
    defaults = {f: TrainConfig.__dataclass_fields__[f].default for f in ("lr", "momentum")}
    decay = TrainConfig.__dataclass_fields__["weight_decay"].default
    optimizer = torch.optim.SGD(model.parameters(), weight_decay=decay, **defaults)
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    rate = spec["steps"] / (time.perf_counter() - t0)
    print(json.dumps({"steps_per_s": rate, "threads": threads}))


def compare(manifest: Path, args, settings: list[int | None], protocol) -> list[dict]:
    """Command and floor for each thread setting, interleaved over the protocol's repeats."""
    used, calls = {}, [0]

    def command(s):
        def call() -> dict:
            calls[0] += 1
            return {"rate": command_rate(manifest, Path(tmp) / f"run-{calls[0]}", args, s)}

        return call

    def floor(s):
        def call() -> dict:
            rate, used[s] = floor_rate(manifest, args, s)
            return {"rate": rate}

        return call

    cases = {}
    for s in settings:
        cases[("command", s)], cases[("floor", s)] = command(s), floor(s)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        records = protocol.interleave(cases)
    rows = []
    for s in settings:
        rates = {kind: [r["rate"] for r in records[kind, s]] for kind in ("command", "floor")}
        rows.append({"setting": s, "threads": used[s], **rates})
    return rows


# -- the data side -----------------------------------------------------------------------------
def loader_rate(dataset, batch_size: int, batches: int, workers: int) -> float:
    """Patches/s of random augmented training batches through a DataLoader."""
    from torch.utils.data import DataLoader

    from napari_patchwise.training.data import identity_collate
    from napari_patchwise.training.samplers import UniformSampler

    sampler = UniformSampler(dataset.labels, dataset.groups, batch_size, seed=0)

    class Requests:
        def __iter__(self):
            return sampler.requests(0, batches, augment=True)

        def __len__(self):
            return batches

    loader = DataLoader(
        dataset, batch_sampler=Requests(), num_workers=workers, collate_fn=identity_collate
    )
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for x, _y, _g in it:
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def slide_read_rate(folder: Path, patch: int, n: int, side: int) -> float:
    """Patches/s read at random positions of a tiled zlib OME-TIFF (no cache)."""
    import tifffile

    from napari_patchwise.io import open_slide

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, side, side), dtype=np.uint8)
    path = folder / "slide.ome.tif"
    tifffile.imwrite(
        path, image, metadata={"axes": "CYX"}, ome=True, tile=(512, 512), compression="zlib"
    )
    level0 = open_slide(path, pyramid_cache=False).levels[0]
    ys = rng.integers(0, side - patch, n)
    xs = rng.integers(0, side - patch, n)
    t0 = time.perf_counter()
    for y, x in zip(ys, xs, strict=True):
        np.asarray(level0[:, y : y + patch, x : x + patch].compute())
    return n / (time.perf_counter() - t0)


def data_rates(args, protocol) -> dict[str, list[float]]:
    """Loader throughput (0 and 2 workers) and uncached slide reads, patches/s, interleaved."""
    from napari_patchwise.training.data import PatchDataset

    with tempfile.TemporaryDirectory(prefix="bench_train_data_") as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        cache = folder / "cache.npy"
        shape = (args.n, 3, args.patch, args.patch)
        arr = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=shape)
        arr[:] = rng.integers(0, 255, arr.shape, dtype=np.uint8)
        arr.flush()
        del arr
        table = pd.DataFrame(
            {"label": rng.integers(0, 2, args.n), "tissue_ratio": rng.random(args.n)}
        )
        dataset = PatchDataset([cache], table, 0.1, [128.0] * 3, [64.0] * 3)
        reads, side = (50, 1024) if args.quick else (300, 4096)
        cases = {
            f"loader from the patch cache, {w} workers": (
                lambda w=w: {"rate": loader_rate(dataset, args.batch_size, args.batches, w)}
            )
            for w in (0, 2)
        }
        cases["random reads straight from a tiled zlib OME-TIFF"] = lambda: {
            "rate": slide_read_rate(folder, args.patch, reads, side)
        }
        records = protocol.interleave(cases)
    return {name: [r["rate"] for r in recs] for name, recs in records.items()}


# -- main --------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--patch", type=int, default=64, help="patch side (train's default)")
    parser.add_argument("--batch-size", type=int, default=32, help="(train's default)")
    parser.add_argument("--size", type=int, default=None, help="slide side (1024)")
    parser.add_argument("--steps", type=int, default=None, help="(200)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="thread counts to compare besides the default (1 and the usable cores)",
    )
    parser.add_argument("--n", type=int, default=None, help="patches in the loader's cache")
    parser.add_argument("--batches", type=int, default=None, help="loader batches (150)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    parser.add_argument("--floor-spec", help=argparse.SUPPRESS)
    add_arguments(parser)  # --repeats, --results, --allow-loaded (_protocol.py)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def best_median(rates: list[float]) -> str:
    return f"{max(rates):.2f} / {statistics.median(rates):.2f}"


def tables(rows: list[dict], data: dict[str, list[float]], batch_size: int) -> tuple[str, float]:
    """The two tables (best / median over the repeats) and the command/floor ratio of
    medians at the default threads."""
    lines = [
        "| torch threads | command steps/s (best / median) | floor steps/s (best / median) "
        "| ratio of medians |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        name = f"{row['threads']} (default)" if row["setting"] is None else str(row["threads"])
        ratio = statistics.median(row["command"]) / statistics.median(row["floor"])
        lines.append(
            f"| {name} | {best_median(row['command'])} | {best_median(row['floor'])} "
            f"| {ratio:.2f} |"
        )
    default = rows[0]
    model = [rate * batch_size for rate in default["floor"]]
    lines += ["", "| data side | patches/s (best / median) | x floor (medians) |",
              "|---|---:|---:|",
              f"| floor at the default threads (model, in memory) | {best_median(model)} | 1.0 |"]  # fmt: skip
    for name, rates in data.items():
        ratio = statistics.median(rates) / statistics.median(model)
        lines.append(f"| {name} | {best_median(rates)} | {ratio:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    return text, statistics.median(default["command"]) / statistics.median(default["floor"])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.floor_spec:
        run_floor(json.loads(args.floor_spec))
        return 0
    from napari_patchwise.training.data import PatchSettings, load_cohort
    from napari_patchwise.training.loop import (
        default_num_threads,
        passive_openmp_waits,
        usable_cores,
    )

    passive_openmp_waits()  # this process's loader and torch wait as the command's do
    import torch

    protocol = Protocol.from_args("bench_train", args)  # refuses a loaded machine up front
    cores = usable_cores()
    if args.threads is None:
        args.threads = sorted({1, cores} - {default_num_threads(torch.get_num_threads())})
    t0 = time.perf_counter()
    manifest = make_cohort(args.size)
    cohort = load_cohort(manifest, PatchSettings(patch_size=args.patch))  # caches built once
    print(
        f"{args.model}, batch {args.batch_size}, {args.patch} px x {cohort.channels} channels, "
        f"{args.steps} steps, {protocol.repeats} repeats; usable cores {cores}, "
        f"load average {os.getloadavg()[0]:.2f}; cohort ready in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    rows = compare(manifest, args, [None, *args.threads], protocol)
    data = data_rates(args, protocol)
    text, ratio = tables(rows, data, args.batch_size)
    met = ratio >= TARGET
    text = (
        f"{args.model}, batch {args.batch_size}, {args.patch} px x {cohort.channels} channels, "
        f"{args.steps} steps; usable cores {cores}\n\n{text}\npatchwise train at {ratio:.2f}x "
        f"the floor's steps/s at the default threads (target >= {TARGET}x: "
        f"{'met' if met else 'NOT MET'})\n"
    )
    protocol.write({"train.md": text}, {"model": args.model, "steps": args.steps})
    print(
        f"\npatchwise train at {ratio:.2f}x the floor's steps/s at the default threads: "
        f"target >= {TARGET}x {'met' if met else 'NOT MET'}"
        f"{' (not enforced with --quick)' if args.quick else ''}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0 if met or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
