"""Cohort browser benchmark: a slider move over a whole cohort, and counting a cohort.

Measured in the same run:

1. **Slider move** (tau dragged, then the threshold): what the Cohort tab computes per
   refresh — every slide's counts and accuracy/WGA for the list and the open slide's
   column, pooled for the cohort column (``slide_evaluations`` + ``pooled``, O(log N)
   per slide) — against the baseline of evaluating the same patches directly: one
   ``metrics.Evaluator`` per slide plus one over the concatenated cohort, each prepared
   once (O(N) per move; the viewer's single-slide path before ``slider_eval``). Both
   give the same numbers (checked here).
2. **Counting** synthetic slides with ``cohort_slide_table``: computed (first browse,
   baseline) against reused from the training patch cache (a browse after
   ``patchwise train``, or the second browse).

    .venv/bin/python benchmarks/bench_cohort.py [--slides 200] [--patches 10000]

``--quick`` (``make bench``): 20 slides x 5,000 patches, 2 slides of 1024 px to count.
Full: 200 x 10,000 (2 M patches), 3 slides of 4096 px.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def fake_summaries(n_slides: int, n_patches: int, seed: int = 0) -> list:
    """Slides with a planted tissue-size shortcut and predictions on half of them."""
    from napari_patchwise.training.cohort_summary import SlideSummary

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_slides):
        label = (rng.random(n_patches) < 0.3).astype(np.int8)
        ratio = rng.random(n_patches) ** np.where(label == 1, 0.7, 2.0)
        table = pd.DataFrame({"label": label, "tissue_ratio": ratio})
        if i % 2:
            noise = rng.normal(0, 0.2, n_patches)
            table["prob"] = np.clip(0.6 * label + 0.5 * ratio - 0.1 + noise, 0, 1)
        split = ("train", "val", "test")[i % 3]
        out.append(SlideSummary.from_table(f"s{i}", split, table, "computed"))
    return out


def moves(repeats: int) -> list[tuple[float, float]]:
    """A tau drag at threshold 0.5, then a threshold drag at the last tau."""
    taus = np.linspace(0.02, 0.3, repeats)
    thresholds = np.linspace(0.3, 0.7, repeats)
    return [(t, 0.5) for t in taus] + [(taus[-1], t) for t in thresholds]


def browser_refresh(summaries, tau, threshold):
    """What ``CohortBrowser.refresh_metrics`` computes (the Qt cell updates left out)."""
    from napari_patchwise.training.cohort_summary import pooled, slide_evaluations

    evaluations = slide_evaluations(summaries, tau, threshold)
    rows = [metrics for _, metrics in evaluations]
    return rows, evaluations[1], pooled(evaluations, tau, threshold)


def baseline(summaries):
    """Evaluators over each slide's and the whole cohort's predicted patches, prepared once."""
    from napari_patchwise.analysis.metrics import Evaluator

    def prepared(parts):
        label = np.concatenate([p.table["label"].to_numpy() for p in parts])
        ratio = np.concatenate([p.table["tissue_ratio"].to_numpy() for p in parts])
        if "prob" not in parts[0].table:
            return Evaluator(label, ratio)
        return Evaluator(label, ratio, prob=np.concatenate([p.table["prob"] for p in parts]))

    scored = [s for s in summaries if s.scored is not None]
    per_slide = [prepared([s]) if s.scored is not None else None for s in summaries]
    counts, metrics = prepared(summaries), prepared(scored)

    def refresh(tau, threshold):
        rows = [None if e is None else e.evaluate(tau, threshold) for e in per_slide]
        return rows, counts.evaluate(tau, threshold), metrics.evaluate(tau, threshold)

    return refresh


def bench_sliders(n_slides: int, n_patches: int, repeats: int) -> None:
    summaries = fake_summaries(n_slides, n_patches)
    steps = moves(repeats)
    direct = baseline(summaries)
    for tau, threshold in steps[:: max(1, len(steps) // 5)]:  # same numbers
        _, _, (_, ours) = browser_refresh(summaries, tau, threshold)
        _, _, theirs = direct(tau, threshold)
        assert np.array_equal(ours.group_correct, theirs.group_correct)
        assert ours.wga == theirs.wga or (np.isnan(ours.wga) and np.isnan(theirs.wga))
    timings = {}
    for name, fn in (
        ("Cohort tab (slider_eval sums)", lambda t, h: browser_refresh(summaries, t, h)),
        ("baseline (Evaluator per move)", direct),
    ):
        times = []
        for tau, threshold in steps:
            t0 = time.perf_counter()
            fn(tau, threshold)
            times.append(time.perf_counter() - t0)
        timings[name] = (statistics.median(times) * 1e3, max(times) * 1e3)
    total = n_slides * n_patches
    print(f"\nslider move, {n_slides} slides x {n_patches:,} patches ({total:,}), "
          f"{len(steps)} moves")  # fmt: skip
    print("| computation per move | median ms | max ms |\n|---|---|---|")
    for name, (median, worst) in timings.items():
        print(f"| {name} | {median:.2f} | {worst:.2f} |")


def bench_counting(n_slides: int, side: int) -> None:
    from napari_patchwise.cohort.manifest import read_manifest
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide
    from napari_patchwise.training.cohort_summary import cohort_slide_table
    from napari_patchwise.training.data import PatchSettings

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = ["image,mask,split"]
        for i in range(n_slides):
            image, mask = folder / f"s{i}.ome.tif", folder / f"s{i}_mask.tif"
            write_synthetic_slide(image, mask, SynthConfig(size=(side, side), seed=i))
            lines.append(f"{image.name},{mask.name},test")
        (folder / "cohort.csv").write_text("\n".join(lines) + "\n")
        entries = read_manifest(folder / "cohort.csv", require_splits=())
        settings = PatchSettings(patch_size=64)
        rows = []
        for label in ("computed (baseline)", "training cache"):
            t0 = time.perf_counter()
            sources = {
                cohort_slide_table(e, settings, cache_dir=folder / ".patchwise-cache")[1]
                for e in entries
            }
            rows.append((label, time.perf_counter() - t0, sources))
    print(f"\ncounting {n_slides} synthetic slides of {side} x {side} px, 64 px patches")
    print("| tables | seconds | source |\n|---|---|---|")
    for label, seconds, sources in rows:
        print(f"| {label} | {seconds:.2f} | {', '.join(sorted(sources))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=None, help="slides (200; quick 20)")
    parser.add_argument("--patches", type=int, default=None, help="per slide (10000; quick 5000)")
    parser.add_argument("--repeats", type=int, default=25, help="moves per slider")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    n_slides = args.slides or (20 if args.quick else 200)
    n_patches = args.patches or (5_000 if args.quick else 10_000)
    bench_sliders(n_slides, n_patches, args.repeats)
    if args.quick:
        bench_counting(2, 1024)
    else:
        bench_counting(3, 4096)


if __name__ == "__main__":
    main()
