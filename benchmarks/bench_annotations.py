"""GeoJSON annotation masks: rasterisation throughput and peak memory on a huge slide.

A QuPath-style export is generated for a ``--side`` x ``--side`` slide (default 50 000):
one tissue outline ("Tissue", 20 000 vertices, 40 holes), and ``--blobs`` tumor and stroma
blobs (128 vertices each, 150-1500 px radius) overlapping each other and the outline. The
mask is read with ``read_mask`` (parse + edge index, nothing rasterised), then level 0 is
streamed once, chunk by chunk, counting the pixels of each class (what ``patchwise stats``
does with a mask). Baseline, same run: the same mask written as a tiled label OME-TIFF
(``write_label_tiff``, zlib) and streamed the same way through ``read_mask``. Both counts
must agree exactly. Also timed: the smallest display level (the viewer's first frame),
filled from the polygons against the TIFF's stored level.

Reported per path: open time, level-0 stream time, throughput (megapixels/s), and peak
resident memory above the process's baseline during the stream (sampled every 20 ms).

``--quick`` (what ``make bench`` runs): an 8192 px slide with 200 blobs.

Run:  .venv/bin/python benchmarks/bench_annotations.py [--side 50000] [--blobs 3000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import dask
import numpy as np
import psutil

MAP = "Tumor=tumor,Stroma=healthy,Tissue=healthy"


class PeakRSS:
    """Sample this process's resident memory every 20 ms (peak above the start)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def blob(rng, cx, cy, radius, n) -> list[list[float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    # smooth lobes plus ~1 px of hand jitter, as a brush or polygon tool draws
    wobble = 1 + 0.25 * np.sin(5 * t + rng.uniform(0, 6)) + 0.05 * np.sin(23 * t)
    r = radius * wobble + rng.normal(0, 0.7, n)
    ring = np.c_[cx + r * np.cos(t), cy + r * np.sin(t)]
    return np.vstack([ring, ring[:1]]).round(2).tolist()


def feature(name, rings) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": rings},
        "properties": {"objectType": "annotation", "classification": {"name": name}},
    }


def write_export(path: Path, side: int, blobs: int, seed: int = 0) -> int:
    """A QuPath-style FeatureCollection for a ``side`` x ``side`` slide; returns vertices."""
    rng = np.random.default_rng(seed)
    c = side / 2
    holes = [blob(rng, *rng.uniform(0.2 * side, 0.8 * side, 2), side / 80, 64) for _ in range(40)]
    features = [feature("Tissue", [blob(rng, c, c, 0.42 * side, 20_000), *holes])]
    scale = min(1.0, 4 * side / 50_000)  # smaller blobs on a small (quick) slide
    for k in range(blobs):
        x, y = rng.uniform(0.1 * side, 0.9 * side, 2)
        radius = rng.uniform(150, 1500) * scale
        features.append(feature("Tumor" if k % 2 else "Stroma", [blob(rng, x, y, radius, 128)]))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return 20_000 + 40 * 64 + 128 * blobs


def class_counts(mask) -> np.ndarray:
    """Pixels per class over level 0, one chunk at a time."""
    per_chunk = mask.map_blocks(
        lambda b: np.bincount(b.ravel(), minlength=3)[None, None, :3],
        dtype=np.int64,
        chunks=(1, 1, 3),
        new_axis=2,
    )
    return per_chunk.sum(axis=(0, 1)).compute()


def measure(label: str, path: Path, side: int, mask_map: str) -> dict:
    from napari_patchwise.io import read_mask

    start = time.perf_counter()
    mask, _, _ = read_mask(path, (side, side), mask_map, check_values=False)
    opened = time.perf_counter() - start
    with PeakRSS() as rss:
        start = time.perf_counter()
        counts = class_counts(mask)
        streamed = time.perf_counter() - start
    return {
        "path": label,
        "open_s": opened,
        "stream_s": streamed,
        "mpx_s": side * side / streamed / 1e6,
        "rss_mb": rss.extra_mb,
        "counts": counts,
    }


def thumbnail_seconds(geojson: Path, tif: Path, side: int) -> tuple[float, float]:
    import tifffile

    from napari_patchwise.io.annotations import mask_pyramid
    from napari_patchwise.io.mask import read_mask

    mask, _, _ = read_mask(geojson, (side, side), MAP)
    start = time.perf_counter()
    mask_pyramid(mask)[-1].compute()
    direct = time.perf_counter() - start
    start = time.perf_counter()
    with tifffile.TiffFile(tif) as tiff:
        tiff.series[0].levels[-1].asarray()
    return direct, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=50_000)
    parser.add_argument("--blobs", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="8192 px, 200 blobs")
    args = parser.parse_args()
    if args.quick:
        args.side, args.blobs = 8192, 200
    from napari_patchwise.io.annotations import read_annotations, write_label_tiff
    from napari_patchwise.io.mask import MaskMap

    with tempfile.TemporaryDirectory() as tmp:
        geojson, tif = Path(tmp) / "slide.geojson", Path(tmp) / "slide_mask.ome.tif"
        vertices = write_export(geojson, args.side, args.blobs)
        print(f"{args.side} x {args.side} slide, {args.blobs + 1} annotations, {vertices} vertices,"
              f" {geojson.stat().st_size / 2**20:.1f} MB GeoJSON; {dask.system.CPU_COUNT} cores")  # fmt: skip
        start = time.perf_counter()
        write_label_tiff(tif, read_annotations(geojson), (args.side, args.side),
                         MaskMap.parse(MAP).name_classes())  # fmt: skip
        print(f"label TIFF written from the polygons in {time.perf_counter() - start:.1f} s "
              f"({tif.stat().st_size / 2**20:.1f} MB)")  # fmt: skip
        rows = [
            measure("label TIFF (baseline)", tif, args.side, "default"),
            measure("GeoJSON", geojson, args.side, MAP),
        ]
        direct, stored = thumbnail_seconds(geojson, tif, args.side)
    print("\n| mask | open (s) | level-0 stream (s) | Mpx/s | peak RSS above start (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['open_s']:.2f} | {r['stream_s']:.1f} | {r['mpx_s']:.0f} | "
              f"{r['rss_mb']:.0f} |")  # fmt: skip
    same = np.array_equal(rows[0]["counts"], rows[1]["counts"])
    print(f"\nclass counts (background, healthy, tumor): {rows[1]['counts'].tolist()}; "
          f"identical to the label TIFF's: {same}")  # fmt: skip
    print(
        f"smallest display level: {direct:.2f} s from the polygons, {stored:.2f} s from the "
        "TIFF's stored level"
    )
    if not same:
        raise SystemExit("class counts differ between the GeoJSON and its label TIFF")


if __name__ == "__main__":
    main()
