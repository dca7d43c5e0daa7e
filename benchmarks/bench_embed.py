"""Embed speed: ``patchwise embed`` with a timm ViT against the same model's forward pass.

For a ViT-S/16 and a ViT-L/16 (random weights: the speed does not depend on them), on a
small synthetic cohort (``patchwise synth`` slides, 64 px patches resized to 224 px),
patches per second of

* the embed — :func:`embed.embed_slide` over every slide of a finished store whose done
  flags are cleared (patches read from the patch cache, mixed, resized, normalised,
  encoded, pooled, written as float16 chunks), the loaded model reused;
* its floor — the same model (the same wrapper: resize and normalisation included) on one
  batch of the same patches already in memory, on the same device, under the same
  ``torch.inference_mode`` and autocast.

Repeats are interleaved (embed, floor, embed, floor...) so a change in the machine's load
hits both; min and median are printed with the load average. The goal is embed >= 0.9x
its floor: the pipeline around the model should cost little.

    .venv/bin/python benchmarks/bench_embed.py [--quick] [--device cpu|cuda] [--repeats 3]

``--quick`` (what ``make bench`` runs): one 256 px slide (16 patches), ViT-S only on the
CPU (ViT-L/16 at 224 px is ~60 GFLOPs a patch: minutes on a loaded CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

MODELS = {"ViT-S/16": "timm:vit_small_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}


def make_cohort(folder: Path, size: int, n_slides: int) -> Path:
    from napari_patchwise.synth import SynthConfig, write_synthetic_slide

    lines = ["image,mask,split"]
    for i in range(n_slides):
        image, mask = folder / f"s{i}.ome.tif", folder / f"s{i}_mask.tif"
        write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=i))
        lines.append(f"{image.name},{mask.name},train")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def measure(manifest: Path, name: str, *, device: str, batch: int, repeats: int, folder: Path):
    """``(n patches, embed seconds list, floor seconds list)`` of one model."""
    import warnings

    import numpy as np
    import torch
    import zarr

    from napari_patchwise.data import PatchSettings
    from napari_patchwise.embed import EmbedSource, _Embedder, cohort_jobs, embed, embed_slide

    settings = PatchSettings(patch_size=64)
    store = folder / f"{name.replace(':', '_')}.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, channels as RGB: known here
        source = EmbedSource(backbone=name)
        embed(manifest, store, source, settings=settings, device=device, batch_size=batch)
    jobs = cohort_jobs(manifest, settings)
    embedder = _Embedder(store, device, batch)
    n = sum(len(j) for j in jobs)
    patches = np.concatenate([np.load(j.cache) for j in jobs])[:batch]
    x = torch.from_numpy(patches.astype(np.float32)).to(embedder.device)
    if embedder.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def sync():
        if embedder.device.type == "cuda":
            torch.cuda.synchronize()

    def run_embed() -> float:
        for i in range(len(jobs)):
            flags = zarr.open_array(str(store / "done" / str(i)), mode="r+")
            flags[:] = 0
        start = time.perf_counter()
        for i, job in enumerate(jobs):
            embed_slide(store, i, job, embedder=embedder)
        sync()
        return time.perf_counter() - start

    def run_floor() -> float:
        rounds = -(-n // len(x))
        sync()
        start = time.perf_counter()
        for _ in range(rounds):
            with torch.inference_mode(), embedder.autocast():
                embedder.backbone(x).float().cpu()
        sync()
        return (time.perf_counter() - start) * n / (rounds * len(x))

    run_floor()  # warm-up (kernels, allocator)
    embeds, floors = [], []
    for _ in range(repeats):
        embeds.append(run_embed())
        floors.append(run_floor())
    return n, embeds, floors


def report(label: str, n: int, embeds: list[float], floors: list[float]) -> str:
    rate = lambda seconds: n / seconds  # noqa: E731 - patches per second
    e_best, f_best = rate(min(embeds)), rate(min(floors))
    e_med, f_med = rate(statistics.median(embeds)), rate(statistics.median(floors))
    return (
        f"| {label} | {n} | {e_best:.1f} / {e_med:.1f} | {f_best:.1f} / {f_med:.1f} | "
        f"{e_best / f_best:.2f}x / {e_med / f_med:.2f}x |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--models", nargs="*", default=None, choices=list(MODELS))
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_embed: skipped: no CUDA device")
        return 0
    quick_cpu = args.quick and args.device == "cpu"
    models = args.models or (["ViT-S/16"] if quick_cpu else list(MODELS))
    size, n_slides = (256, 1) if args.quick else (512, 2)
    batch = args.batch_size or (16 if args.device == "cpu" else 128)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_cohort(folder, size, n_slides)
        rows = []
        for label in models:
            n, embeds, floors = measure(
                manifest, MODELS[label], device=args.device, batch=batch,
                repeats=args.repeats, folder=folder,
            )  # fmt: skip
            rows.append(report(label, n, embeds, floors))
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    state = "loaded" if load[0] > 0.5 * cores else "idle"
    print(f"device {args.device}, batch {batch}, {args.repeats} interleaved repeats; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {cores} cores "
          f"({state} machine)")  # fmt: skip
    print("| model | patches | embed patches/s (min / median) | forward only | embed / forward |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
