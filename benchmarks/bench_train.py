"""Training data pipeline vs model: is the loader the bottleneck?

Measures, in one run on the same machine:

* loader throughput (patches/s): random training batches from the on-disk patch cache,
  normalised and augmented (flips / 90-degree rotations), through a torch DataLoader with
  0 and 2 worker processes;
* the baseline it must beat: the model's training rate (patches/s) — ResNet-18 on the CPU,
  batch 32, forward + backward + SGD step;
* for reference, random patch reads straight from a tiled, compressed OME-TIFF slide
  (what the cache avoids).

    .venv/bin/python benchmarks/bench_train.py [--patch 64] [--n 8192]

``--quick`` (what ``make bench`` runs): 512 cached patches, 10 loader batches, 2 model
steps, 50 reads from a 1024 px slide; the same comparison and table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def loader_rate(dataset, batch_size: int, batches: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    from napari_patchwise.data import identity_collate
    from napari_patchwise.samplers import UniformSampler

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


def model_rate(patch: int, channels: int, batch_size: int, steps: int) -> float:
    import warnings

    import torch

    from napari_patchwise.models import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("resnet18", channels)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, channels, patch, patch)
    y = torch.randint(0, 2, (batch_size,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def slide_read_rate(folder: Path, patch: int, n: int, side: int = 4096) -> float:
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--n", type=int, default=None, help="patches in the cache (8192)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=None, help="(150)")
    parser.add_argument("--model-steps", type=int, default=None, help="(5)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args(argv)
    quick = {"n": 512, "batches": 10, "model_steps": 2}
    full = {"n": 8192, "batches": 150, "model_steps": 5}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    reads, read_side = (50, 1024) if args.quick else (300, 4096)

    import torch

    from napari_patchwise.data import PatchDataset

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        cache = folder / "cache.npy"
        arr = np.lib.format.open_memmap(
            cache, mode="w+", dtype=np.uint8, shape=(args.n, 3, args.patch, args.patch)
        )
        arr[:] = rng.integers(0, 255, arr.shape, dtype=np.uint8)
        arr.flush()
        del arr
        table = pd.DataFrame(
            {"label": rng.integers(0, 2, args.n), "tissue_ratio": rng.random(args.n)}
        )
        dataset = PatchDataset([cache], table, 0.1, [128.0] * 3, [64.0] * 3)

        print(f"torch threads: {torch.get_num_threads()}; patches {args.patch} px x 3 channels")
        rates = {}
        for workers in (0, 2):
            rates[f"loader, {workers} workers"] = loader_rate(
                dataset, args.batch_size, args.batches, workers
            )
        # the model at its best on this machine: 1 or all intra-op threads (on a shared
        # machine spin-waiting threads can make "all" far slower)
        threads = torch.get_num_threads()
        best = 0.0
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            rate = model_rate(args.patch, 3, args.batch_size, args.model_steps)
            print(f"ResNet-18 with {n} thread(s): {rate:.1f} patches/s")
            best = max(best, rate)
        torch.set_num_threads(threads)
        rates["ResNet-18 training (baseline)"] = best
        rates["uncached random reads from a tiled OME-TIFF"] = slide_read_rate(
            folder, args.patch, reads, read_side
        )

    base = rates["ResNet-18 training (baseline)"]
    print(f"{'pipeline':48s} {'patches/s':>10s} {'x model':>8s}")
    for name, rate in rates.items():
        print(f"{name:48s} {rate:10.0f} {rate / base:8.1f}")
    worst_loader = min(rates["loader, 0 workers"], rates["loader, 2 workers"])
    verdict = "not the bottleneck" if worst_loader > base else "THE BOTTLENECK"
    print(
        f"loader is {verdict}: slowest loader setting {worst_loader / base:.1f}x the model's rate"
    )


if __name__ == "__main__":
    main()
