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

Repeats are interleaved in a rotating order (benchmarks/_protocol.py) so a change in the load
hits both; min and median (of >= 5 repeats) are written with the load average at start
into ``docs/results/bench_embed/embed_DEVICE.md`` (and ``DEVICE.meta.json``; DEVICE is
``cpu`` or ``cuda``). The goal is embed >= 0.9x
its floor: the pipeline around the model should cost little.

A run whose 1-minute load average at start is above 0.5 per core is refused docs/
(``--allow-loaded`` writes it, labelled "LOADED machine"); so is one of fewer than 5
repeats.

    .venv/bin/python benchmarks/bench_embed.py [--quick] [--device cpu|cuda] [--repeats 5]
        [--results DIR] [--allow-loaded]

``--quick`` (what ``make bench`` runs; under a minute): one 128 px slide (4 patches), ViT-S
only on the CPU at a 64 px input (16 tokens; a check that the benchmark works, not a
figure), 2 repeats, into ``benchmarks/_results/bench_embed_quick/`` (ViT-L/16 at 224 px is
~60 GFLOPs a patch: minutes on a loaded CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _protocol import Protocol, add_arguments, summarize

MODELS = {"ViT-S/16": "timm:vit_small_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}
HEADER = "| model | patches | embed patches/s (best / median) | forward only | embed / forward |"


def make_cohort(folder: Path, size: int, n_slides: int) -> Path:
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

    lines = ["image,mask,split"]
    for i in range(n_slides):
        image, mask = folder / f"s{i}.ome.tif", folder / f"s{i}_mask.tif"
        write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=i))
        lines.append(f"{image.name},{mask.name},train")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def cases(
    manifest: Path, name: str, *, device: str, batch: int, folder: Path,
    input_size: int | None = None,
) -> tuple[int, Callable[[], dict], Callable[[], dict]]:  # fmt: skip
    """``(n patches, embed case, floor case)`` of one model (at ``input_size`` px: default
    the model's 224); each case returns ``{"seconds": ...}`` for all ``n`` patches."""
    import warnings

    import numpy as np
    import torch
    import zarr

    from napari_patchwise.training.data import PatchSettings
    from napari_patchwise.training.embed import (
        EmbedSource,
        _Embedder,
        cohort_jobs,
        embed,
        embed_slide,
    )

    settings = PatchSettings(patch_size=64)
    store = folder / f"{name.replace(':', '_')}.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, channels as RGB: known here
        source = EmbedSource(backbone=name, input_size=input_size)
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

    def run_embed() -> dict:
        for i in range(len(jobs)):
            flags = zarr.open_array(str(store / "done" / str(i)), mode="r+")
            flags[:] = 0
        start = time.perf_counter()
        for i, job in enumerate(jobs):
            embed_slide(store, i, job, embedder=embedder)
        sync()
        return {"seconds": time.perf_counter() - start}

    def run_floor() -> dict:
        rounds = -(-n // len(x))
        sync()
        start = time.perf_counter()
        for _ in range(rounds):
            with torch.inference_mode(), embedder.forward.autocast():
                embedder.forward.model(x).float().cpu()
        sync()
        return {"seconds": (time.perf_counter() - start) * n / (rounds * len(x))}

    run_floor()  # warm-up (kernels, allocator)
    return n, run_embed, run_floor


def report(label: str, n: int, embed_s: tuple, floor_s: tuple) -> str:
    """One table row from the (min, median) seconds of the embed and of its floor."""
    e_best, e_med = n / embed_s[0], n / embed_s[1]
    f_best, f_med = n / floor_s[0], n / floor_s[1]
    return (
        f"| {label} | {n} | {e_best:.1f} / {e_med:.1f} | {f_best:.1f} / {f_med:.1f} | "
        f"{e_best / f_best:.2f}x / {e_med / f_med:.2f}x |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--models", nargs="*", default=None, choices=list(MODELS))
    add_arguments(parser)  # --repeats, --results, --allow-loaded
    args = parser.parse_args(argv)
    protocol = Protocol.from_args("bench_embed", args)  # refuses a loaded machine up front
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_embed: skipped: no CUDA device")
        return 0
    quick_cpu = args.quick and args.device == "cpu"
    models = args.models or (["ViT-S/16"] if quick_cpu else list(MODELS))
    size, n_slides = (128, 1) if args.quick else (512, 2)
    batch = args.batch_size or (16 if args.device == "cpu" else 128)
    with tempfile.TemporaryDirectory() as tmp:
        folder_tmp = Path(tmp)
        manifest = make_cohort(folder_tmp, size, n_slides)
        rows = []
        for label in models:
            n, run_embed, run_floor = cases(
                manifest, MODELS[label], device=args.device, batch=batch,
                folder=folder_tmp, input_size=64 if args.quick else None,
            )  # fmt: skip
            records = protocol.interleave({"embed": run_embed, "forward": run_floor})
            seconds = summarize(records, key="seconds")
            rows.append(report(label, n, seconds["embed"], seconds["forward"]))
    note = f"<!-- device {args.device}, batch {batch}{'; QUICK: 64 px input' if args.quick else ''} -->"
    table = "\n".join([note, HEADER, "|---|---|---|---|---|", *rows]) + "\n"
    print(table, end="")
    extra = {
        "device": args.device,
        "batch_size": batch,
        "models": {label: MODELS[label] for label in models},
        "weights": "random",
        "timm": _version("timm"),
    }
    # one file per device: a GPU run (bench_gpu.py) never replaces the CPU table
    protocol.write({f"embed_{args.device}.md": table}, extra, meta_name=f"{args.device}.meta.json")
    return 0


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
