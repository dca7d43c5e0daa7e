"""Attribute benchmark: the extra per-patch attributes and the attribute ranking.

Measured in the same run:

* **stats**: ``attributes.patch_attributes`` (intensity: per-channel mean and std; border
  fraction at the default 16 px margin) on a synthetic 3-channel slide written as a tiled
  OME-TIFF and opened level-0 only, against the baseline ``grid.patch_stats`` (the counts
  every table already pays for; with a 3-class mask it reads only the mask) and the floor
  of any intensity statistic, decoding and summing the whole image once.
* **ranking**: ``attribute_rank.rank_attributes`` (every distinct value of every attribute
  is a candidate threshold: one sort and cumulative sums per attribute) against the
  baseline a user would write — ``metrics.Evaluator`` prepared once per attribute, then
  ``evaluate`` at 100 quantile thresholds — on a table of N patches and 8 attributes (one
  planted). Both report the best gap they found; the ranking's is exact over all
  thresholds, the baseline's over its 100.

    .venv/bin/python benchmarks/bench_attributes.py [--side 8192] [--n 1000000]

``--quick`` (what ``make bench`` runs): a 2048 x 2048 slide and 100,000 patches.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeats=1):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_stats(side: int, patch: int) -> None:
    from napari_patchwise.io import open_slide
    from napari_patchwise.patches.attributes import patch_attributes
    from napari_patchwise.patches.grid import PatchGrid, patch_stats
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "slide.ome.tif"
        image, mask = write_synthetic_slide(out, config=SynthConfig(size=(side, side), seed=0))
        slide = open_slide(image, mask=mask, pyramid=False)
        grid = PatchGrid(patch)
        rows = []
        base, table = _time(lambda: patch_stats(slide, grid), repeats=2)
        rows.append(("patch_stats (baseline)", base))
        # the floor of any statistic over the image: decode every chunk and sum it
        floor, _ = _time(lambda: slide.levels[0].sum(axis=(1, 2), dtype=np.float64).compute(), 2)
        rows.append(("read + sum the image (floor)", floor))
        for kind in ("intensity", "border"):
            t, attrs = _time(lambda k=kind: patch_attributes(slide, grid, [k]), repeats=2)
            assert len(attrs) == len(table)
            rows.append((f"patch_attributes {kind}", t))
    mpix = side * side / 1e6
    print(f"\nstats: {side} x {side} synthetic slide (3 x uint8), {patch} px patches, "
          f"{len(table)} patches; best of 2")  # fmt: skip
    print("| computation | seconds | Mpixel/s | x baseline |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {mpix / t:.0f} | {t / base:.2f} |")


def bench_ranking(n: int) -> None:
    import pandas as pd

    from napari_patchwise.analysis.attribute_ranking import rank_attributes
    from napari_patchwise.analysis.metrics import Evaluator

    rng = np.random.default_rng(0)
    label = (rng.random(n) < 0.3).astype(np.int8)
    columns = {f"noise_{i}": rng.normal(size=n) for i in range(6)}
    columns["tissue_ratio"] = rng.random(n)
    planted = np.where(rng.random(n) < 0.85, label, 1 - label) * 40 + rng.normal(100, 15, n)
    columns["mean_SHG"] = planted
    prob = np.clip(0.2 + 0.6 * (planted >= 120) + rng.normal(0, 0.1, n), 0, 1)
    table = pd.DataFrame({"label": label, **columns, "prob": prob})

    t_rank, ranks = _time(lambda: rank_attributes(table), repeats=3)

    def baseline():
        best = {}
        share = np.repeat(np.bincount(label, minlength=2), 2) * 0.02
        for name, values in columns.items():
            ev = Evaluator(label, values, prob=prob)
            gaps = []
            for t in np.quantile(values, np.linspace(0.01, 0.99, 100)):
                e = ev.evaluate(t, 0.5)
                if np.all(e.group_counts >= share):
                    acc = e.per_group_accuracy.reshape(2, 2)
                    gaps.append(np.max(e.per_class_accuracy - acc.min(axis=1)))
            best[name] = max(gaps) if gaps else math.nan
        return best

    t_base, best = _time(baseline, repeats=1)
    print(f"\nranking: {n:,} patches x {len(columns)} attributes")
    print(
        "| method | thresholds per attribute | seconds | first | its gap |\n|---|---|---|---|---|"
    )
    first = max(best, key=lambda k: best[k])
    print(
        f"| Evaluator at quantiles (baseline) | 100 | {t_base:.2f} | {first} | {100 * best[first]:.2f}% |"
    )
    print(f"| rank_attributes | every distinct value (~{n:,}) | {t_rank:.2f} | "
          f"{ranks[0].attribute} | {100 * ranks[0].gap:.2f}% |")  # fmt: skip
    per_base = t_base / (100 * len(columns))
    per_rank = t_rank / (n * len(columns))
    print(
        f"per threshold: baseline {1e3 * per_base:.2f} ms, rank_attributes {1e6 * per_rank:.2f} us "
        f"({per_base / per_rank:,.0f}x); the baseline at every distinct value would take "
        f"~{per_base * n * len(columns) / 60:,.0f} min"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=None, help="slide side (8192; quick 2048)")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--n", type=int, default=None, help="patches (1000000; quick 100000)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    side = args.side or (2048 if args.quick else 8192)
    n = args.n or (100_000 if args.quick else 1_000_000)
    bench_stats(side, args.patch)
    bench_ranking(n)


if __name__ == "__main__":
    main()
