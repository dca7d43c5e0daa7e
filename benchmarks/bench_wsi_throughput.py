"""`patchwise stats` and `patchwise predict` on a scanner slide against the decode floor.

On a JPEG Aperio SVS (50,000 x 50,000 RGB, 256 px tiles, pyramid; ``_slides.py``), in
one process, interleaved in an order that rotates between repeats (``_protocol.py``):

* **floor**: decoding every level-0 tile with imagecodecs (through tifffile's own segment
  decoder: the bytes read with ``os.pread``, one thread per core) — what any reader of
  this file must pay for the whole of level 0;
* ``patchwise stats SLIDE --mask ANNOTATIONS.geojson --tissue intensity`` (256 px patches;
  labels from a QuPath GeoJSON with a Tumor and a Stroma polygon, tissue from intensity,
  so every level-0 tile is decoded except those the Tumor polygon covers throughout,
  whose tissue changes no count; the results say how many); goal: at most 1.5x the floor;
* **forward**: a randomly initialised ``smallcnn`` forward pass (CPU, batches of 64,
  normalised float32) on 256 px patches already in memory — the model's own rate;
* ``patchwise predict SLIDE --checkpoint best.pt --stride 1024`` (the same model and
  batch size, CPU); goal: at least 0.8x whichever rate bounds it, the model's forward
  rate or the decode floor's tiles per second. smallcnn costs ~0.8 GFLOP per 256 px
  patch, so predicting all ~38,000 patches of a 50k slide on a CPU takes most of an hour
  per repeat; ``--predict-stride`` (default 4 patches) predicts every 4th patch in each
  direction instead. The patches stay aligned to the 256 px tiles (one tile each), so
  the decode-bound rate is the floor's tiles per second whatever the stride.

The slide (about 0.7 GB at 50k), its annotations and the checkpoint are written once into
``--data`` (default ``benchmarks/_data/``, git-ignored). Writes ``throughput.md`` and
``records.json`` into ``docs/results/bench_wsi_throughput/`` (quick: into
``benchmarks/_results/bench_wsi_throughput_quick/``).

    .venv/bin/python benchmarks/bench_wsi_throughput.py            # 50k, 5 repeats
    .venv/bin/python benchmarks/bench_wsi_throughput.py --quick    # 4096 px, 2 repeats
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _protocol import Protocol, add_arguments, fmt_pair, summarize
from _slides import write_periodic_svs

HERE = Path(__file__).resolve().parent
PATCH, BATCH = 256, 64
STATS_GOAL, PREDICT_GOAL = 1.5, 0.8
FLOOR = "floor: decode every level-0 tile (imagecodecs)"
FORWARD = "forward: smallcnn on in-memory patches"


def ensure_inputs(size: int, data: Path) -> tuple[Path, Path, Path, float | None]:
    """The SVS, its GeoJSON annotations and a random smallcnn checkpoint (written if missing)."""
    data.mkdir(parents=True, exist_ok=True)
    svs = data / f"wsi{size}.svs"
    written = None
    if not svs.is_file():
        start = time.perf_counter()
        tmp = svs.with_name(f".{svs.name}.partial")
        write_periodic_svs(tmp, size)
        tmp.rename(svs)  # a stopped run never leaves a truncated slide under the real name
        written = round(time.perf_counter() - start, 1)
    geojson = data / f"wsi{size}_annotations.geojson"
    if not geojson.is_file():
        geojson.write_text(json.dumps(annotations(size)))
    checkpoint = data / "smallcnn_random" / "best.pt"
    if not checkpoint.is_file():
        write_random_checkpoint(checkpoint)
    return svs, geojson, checkpoint, written


def annotations(size: int) -> dict:
    """A QuPath FeatureCollection: a Tumor square in the middle, Stroma around it."""

    def square(lo: float, hi: float) -> list:
        return [[[lo, lo], [hi, lo], [hi, hi], [lo, hi], [lo, lo]]]

    def feature(name: str, rings: list) -> dict:
        return {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "classification": {"name": name}},
        }

    outer, inner = square(0.1 * size, 0.9 * size), square(0.35 * size, 0.65 * size)
    return {
        "type": "FeatureCollection",
        "features": [feature("Stroma", outer + inner), feature("Tumor", inner)],
    }


def write_random_checkpoint(path: Path) -> None:
    """A ``best.pt`` that ``patchwise predict`` accepts: smallcnn, 3 channels, random init."""
    import torch

    from napari_patchwise.training.models import build_architecture

    torch.manual_seed(0)
    model = build_architecture("smallcnn", 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model_name": "smallcnn", "in_channels": 3, "patch_size": PATCH, "threshold": 0.5}
    meta.update(mean=[180.0, 160.0, 170.0], std=[40.0, 40.0, 40.0])
    torch.save({"model": model.state_dict(), **meta}, path)


def decode_floor(svs: Path) -> dict:
    """Decode every level-0 tile of ``svs`` with imagecodecs, one thread per core."""
    import tifffile

    with tifffile.TiffFile(svs) as tif:
        page = tif.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        fd = os.open(svs, os.O_RDONLY)
        try:

            def decode(i: int) -> int:
                data = os.pread(fd, counts[i], offsets[i])
                tile = page.decode(data, i, jpegtables=page.jpegtables)[0]
                return int(tile.shape[-1])  # touch the result

            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                done = sum(1 for _ in pool.map(decode, range(len(offsets))))
        finally:
            os.close(fd)
    return {"tiles": done}


def run_cli(argv: list[str], out: Path) -> dict:
    """``patchwise ARGV`` in this process (imports already paid); its table's row count."""
    import pandas as pd

    from napari_patchwise.cli import main

    out.unlink(missing_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, "--quiet", "--out", str(out)])
    if code not in (0, None):
        raise SystemExit(f"patchwise {argv[0]} exited with {code}")
    return {"patches": len(pd.read_parquet(out))}


def forward_case(checkpoint: Path, n_patches: int):
    """The model's forward rate on normalised patches already in memory (same batch)."""
    import numpy as np
    import torch

    from napari_patchwise.training.runs import load_model

    model, meta = load_model(checkpoint, "cpu")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (BATCH, 3, PATCH, PATCH), np.uint8) for _ in range(4)]
    mean = torch.tensor(meta["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(meta["std"], dtype=torch.float32)[:, None, None]

    def run() -> dict:
        start = time.perf_counter()
        done = 0
        with torch.no_grad():
            while done < n_patches:
                x = (torch.from_numpy(batches[done // BATCH % 4].astype(np.float32)) - mean) / std
                torch.softmax(model(x).float(), dim=1)
                done += BATCH
        return {"patches": done, "rate": done / (time.perf_counter() - start)}

    return run


def stats_argv(svs: Path, geojson: Path) -> list[str]:
    stats = ["stats", str(svs), "--mask", str(geojson), "--patch-size", str(PATCH)]
    stats += ["--mask-map", "Tumor=tumor,Stroma=healthy", "--tissue", "intensity"]
    return [*stats, "--background", "bright"]


def level0_tiles_decoded(argv: list[str], out: Path) -> int:
    """How many level-0 tiles ``patchwise ARGV`` decodes (an untimed run, counted)."""
    from napari_patchwise.io._tiles import TiffLevelView

    decoded = set()
    original = TiffLevelView._decode

    def counting(self, page: int, index: int):
        if self._level == 0:
            decoded.add(index)
        return original(self, page, index)

    TiffLevelView._decode = counting
    try:
        run_cli(argv, out)
    finally:
        TiffLevelView._decode = original
    return len(decoded)


def cases(
    svs: Path, geojson: Path, checkpoint: Path, work: Path, forward_n: int, stride: int
) -> dict:
    stats = stats_argv(svs, geojson)
    predict = ["predict", str(svs), "--checkpoint", str(checkpoint), "--device", "cpu"]
    predict += ["--batch-size", str(BATCH), "--stride", str(stride)]
    predict += ["--tissue", "intensity", "--background", "bright"]
    return {
        FLOOR: lambda: decode_floor(svs),
        "patchwise stats": lambda: run_cli(stats, work / "stats.parquet"),
        FORWARD: forward_case(checkpoint, forward_n),
        "patchwise predict": lambda: run_cli(predict, work / "predict.parquet"),
    }


def tables(records: dict) -> str:
    """Times and rates (min / median over the repeats) and the two goals as ratios."""
    lines = [
        "| case | seconds (min / median) | patches or tiles | per second (max / median) |",
        "|---|---:|---:|---:|",
    ]
    for name, recs in records.items():
        count = recs[0].get("patches", recs[0].get("tiles"))
        rates = [r.get("rate", count / r["wall_s"]) for r in recs]
        rate = (max(rates), statistics.median(rates))
        seconds = fmt_pair(summarize({name: recs})[name])
        lines.append(f"| {name} | {seconds} | {count} | {fmt_pair(rate, 1, 1)} |")
    floor_s, stats_s, predict_s = (
        summarize({0: records[k]})[0][1] for k in (FLOOR, "patchwise stats", "patchwise predict")
    )
    n_predicted = records["patchwise predict"][0]["patches"]
    forward_rate = summarize({0: records[FORWARD]}, "rate")[0][1]
    tiles_per_s = records[FLOOR][0]["tiles"] / floor_s  # one tile per (aligned) patch
    bound, which = min((forward_rate, "forward"), (tiles_per_s, "decode floor"))
    ratio_stats, ratio_predict = stats_s / floor_s, n_predicted / predict_s / bound
    lines += ["", "| goal | ratio of medians | goal | met |", "|---|---:|---:|---|"]
    lines.append(
        f"| stats time / decode floor | {ratio_stats:.2f} | <= {STATS_GOAL} "
        f"| {'yes' if ratio_stats <= STATS_GOAL else 'no'} |"
    )
    lines.append(
        f"| predict rate / its bound ({which}, {bound:.1f} patches/s) | {ratio_predict:.2f} "
        f"| >= {PREDICT_GOAL} | {'yes' if ratio_predict >= PREDICT_GOAL else 'no'} |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="slide side (50000; quick 4096)")
    parser.add_argument("--quick", action="store_true", help="4096 px slide, 2 repeats")
    parser.add_argument(
        "--data", type=Path, default=None, help="where the slide is kept (benchmarks/_data/)"
    )
    parser.add_argument(
        "--predict-stride", type=int, default=4, help="predict every Nth patch per axis (4)"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    size = args.size or (4096 if args.quick else 50_000)
    data = args.data or HERE / "_data" / ("quick" if args.quick else "")
    protocol = Protocol.from_args("bench_wsi_throughput", args)  # refuses a loaded machine
    svs, geojson, checkpoint, written = ensure_inputs(size, data)
    import torch

    import napari_patchwise.cli.main  # noqa: F401 - imports paid before any clock starts

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PATCHWISE_CACHE_DIR"] = str(Path(tmp) / "cache")  # nothing reused
        forward_n = 128 if args.quick else 512
        stride = PATCH * args.predict_stride
        records = protocol.interleave(
            cases(svs, geojson, checkpoint, Path(tmp), forward_n, stride),
            progress=lambda r, c: print(f"repeat {r + 1}: {c}", file=sys.stderr, flush=True),
        )
        decoded = level0_tiles_decoded(stats_argv(svs, geojson), Path(tmp) / "count.parquet")
    text = f"{size} x {size} JPEG SVS, {PATCH} px patches; predict every {stride} px\n\n"
    text += tables(records)
    n_tiles = records[FLOOR][0]["tiles"]
    text += (
        f"\nstats decodes {decoded} of the {n_tiles} level-0 tiles (an untimed run, "
        "counted): a tile the Tumor polygon covers throughout needs no decoding.\n"
    )
    print(text)
    protocol.write(
        {"throughput.md": text, "records.json": json.dumps(records, indent=1)},
        {
            "size": size,
            "svs_write_s": written,
            "patch": PATCH,
            "batch": BATCH,
            "predict_stride": stride,
            "torch_threads": torch.get_num_threads(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
