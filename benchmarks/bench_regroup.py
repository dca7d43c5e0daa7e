"""Regrouping benchmark: groups, group counts and all metrics after a tau/threshold change.

1,000,000 patches. Measured in the same run:

* ``Evaluator.evaluate`` — what the viewer calls on every slider move (label/prob already
  prepared once);
* ``metrics.evaluate`` — the one-shot function (validates and converts the arrays, and
  recomputes the calibration error, every call);
* baseline: the same numbers the obvious way — a pandas groupby for per-group counts and
  accuracy plus scikit-learn's accuracy, balanced accuracy and confusion matrix.

Budget (docs/benchmarks.md, "Budgets"): under 16 ms median.

    .venv/bin/python benchmarks/bench_regroup.py [--n 1000000] [--repeats 25]

``--quick`` (what ``make bench`` runs): 100,000 patches, 10 repeats; the same comparison
and table, as a smoke run (the 16 ms budget is about the full size).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _timed(fn, repeats):
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="patches (1000000; quick 100000)")
    parser.add_argument("--repeats", type=int, default=None, help="changes timed (25; quick 10)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    if args.n is None:
        args.n = 100_000 if args.quick else 1_000_000
    if args.repeats is None:
        args.repeats = 10 if args.quick else 25

    import pandas as pd
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    from napari_patchwise.metrics import Evaluator, evaluate

    rng = np.random.default_rng(0)
    n = args.n
    label = (rng.random(n) < 0.3).astype(np.int8)
    tissue = rng.random(n) ** np.where(label == 1, 0.7, 2.0)
    prob = np.clip(0.6 * label + 0.5 * tissue - 0.1 + rng.normal(0, 0.2, n), 0, 1)
    taus = np.linspace(0.02, 0.3, args.repeats)
    thresholds = np.linspace(0.3, 0.7, args.repeats)

    t0 = time.perf_counter()
    ev = Evaluator(label, tissue, prob=prob)
    prepare_ms = (time.perf_counter() - t0) * 1e3

    def viewer(i):
        return ev.evaluate(taus[i], thresholds[i])

    def one_shot(i):
        return evaluate(label, tissue, prob=prob, tau=taus[i], threshold=thresholds[i])

    def baseline(i):
        pred = (prob >= thresholds[i]).astype(np.int8)
        df = pd.DataFrame({"group": 2 * label + (tissue >= taus[i]), "ok": pred == label})
        per_group = df.groupby("group")["ok"].agg(["size", "sum", "mean"])
        return (
            per_group,
            per_group["mean"].min(),
            accuracy_score(label, pred),
            balanced_accuracy_score(label, pred),
            confusion_matrix(label, pred),
        )

    # Same numbers from all three (checked once, outside the timing).
    a, b, c = viewer(3), one_shot(3), baseline(3)
    assert a.to_dict() == b.to_dict()
    assert np.allclose(a.per_group_accuracy, c[0]["mean"].to_numpy())
    assert abs(a.bca - c[3]) < 1e-12 and abs(a.accuracy - c[2]) < 1e-12

    rows = [
        ("Evaluator.evaluate (viewer path)", *_timed(viewer, args.repeats)),
        ("metrics.evaluate (one-shot)", *_timed(one_shot, args.repeats)),
        ("baseline: pandas groupby + sklearn", *_timed(baseline, max(5, args.repeats // 5))),
    ]
    print(f"{n:,} patches; Evaluator preparation (once): {prepare_ms:.1f} ms")
    print(f"{'':36}{'median ms':>10}{'min ms':>9}")
    for name, med, best in rows:
        print(f"{name:36}{med:>10.2f}{best:>9.2f}")
    base = rows[2][1]
    print(f"speed-up of the viewer path over the baseline: {base / rows[0][1]:.0f}x; "
          f"budget 16 ms: {'met' if rows[0][1] < 16 else 'MISSED'}")  # fmt: skip
    if args.quick:
        print("(quick smoke run: the budget is about 1,000,000 patches)")


if __name__ == "__main__":
    main()
