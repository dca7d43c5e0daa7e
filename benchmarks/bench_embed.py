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
import os
import statistics
import tempfile
import time
from pathlib import Path

MODELS = {"ViT-S/16": "timm:vit_small_patch16_224", "ViT-L/16": "timm:vit_large_patch16_224"}
HEADER = "| model | patches | embed patches/s (min / median) | forward only | embed / forward |"
MIN_REPEATS = 5  # fewer are never written into docs/
LOAD_LIMIT_PER_CORE = 0.5  # 1-min load average per core above which a run is "loaded"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def check_conditions(
    folder: Path, load_start, repeats: int, *, allow_loaded: bool, cores: int | None = None
) -> bool:
    """Whether the run is "loaded"; refuse (one line) a table for docs/ it must not write.

    A table goes into docs/ only from at least :data:`MIN_REPEATS` repeats, and only when
    the 1-minute load average at start was at most :data:`LOAD_LIMIT_PER_CORE` per core —
    unless ``allow_loaded``, and then the table says "LOADED machine" in its first line.
    (Local on purpose: the shared benchmark protocol helper may replace it.)
    """
    cores = cores or os.cpu_count() or 1
    per_core = float(load_start[0]) / cores
    loaded = per_core > LOAD_LIMIT_PER_CORE
    try:
        folder.resolve().relative_to(DOCS.resolve())
    except ValueError:
        return loaded  # not publishing: anything goes
    if repeats < MIN_REPEATS:
        raise SystemExit(
            f"bench_embed: {folder}: {repeats} repeats — figures in docs/ need at least "
            f"{MIN_REPEATS} (--repeats), or give another --results"
        )
    if loaded and not allow_loaded:
        raise SystemExit(
            f"bench_embed: {folder}: load average {load_start[0]:.2f} on {cores} cores at "
            f"start ({per_core:.2f} per core > {LOAD_LIMIT_PER_CORE}) — rerun on a quiet "
            "machine, give another --results, or pass --allow-loaded to label it 'loaded'"
        )
    return loaded


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


def measure(
    manifest: Path, name: str, *, device: str, batch: int, repeats: int, folder: Path,
    input_size: int | None = None,
):  # fmt: skip
    """``(n patches, embed seconds list, floor seconds list)`` of one model (at
    ``input_size`` px: default the model's 224)."""
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
    load_start = os.getloadavg()  # before this run adds its own load
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"interleaved repeats (default {MIN_REPEATS}; --quick 2)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--models", nargs="*", default=None, choices=list(MODELS))
    parser.add_argument("--results", default=None, help="where the table goes")
    parser.add_argument(
        "--allow-loaded", action="store_true",
        help=f"write into docs/ although the 1-min load at start is above {LOAD_LIMIT_PER_CORE}"
        " per core (the table is then labelled 'loaded')",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from _results_io import results_dir, write_results

    repeats = args.repeats or (2 if args.quick else MIN_REPEATS)
    folder = results_dir("bench_embed", quick=args.quick, given=args.results)
    loaded = check_conditions(folder, load_start, repeats, allow_loaded=args.allow_loaded)
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
            n, embeds, floors = measure(
                manifest, MODELS[label], device=args.device, batch=batch,
                repeats=repeats, folder=folder_tmp, input_size=64 if args.quick else None,
            )  # fmt: skip
            rows.append(report(label, n, embeds, floors))
    cores = os.cpu_count() or 1
    state = "LOADED machine" if loaded else "quiet machine"
    head = (
        f"<!-- {state}: load average {'/'.join(f'{x:.2f}' for x in load_start)} (1/5/15 min) "
        f"at start on {cores} cores; device {args.device}, batch {batch}, {repeats} "
        f"interleaved repeats, min / median{'; QUICK: 64 px input' if args.quick else ''} -->"
    )
    table = "\n".join([head, HEADER, "|---|---|---|---|---|", *rows]) + "\n"
    print(table, end="")
    meta = {
        "conditions": "loaded" if loaded else "quiet",
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "load_limit_per_core": LOAD_LIMIT_PER_CORE,
        "device": args.device,
        "batch_size": batch,
        "repeats": repeats,
        "models": {label: MODELS[label] for label in models},
        "weights": "random",
    }
    # one file per device: a GPU run (bench_gpu.py) never replaces the CPU table
    write_results(folder, {f"embed_{args.device}.md": table}, meta, f"{args.device}.meta.json")
    print(f"written: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
