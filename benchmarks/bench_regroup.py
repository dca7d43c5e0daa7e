"""Regrouping benchmark: groups, group counts and all metrics after a tau/threshold change.

1,000,000 patches. Measured in the same run:

* ``Evaluator.evaluate`` — what the viewer calls on every slider move (label/prob already
  prepared once);
* ``metrics.evaluate`` — the one-shot function (validates and converts the arrays, and
  recomputes the calibration error, every call);
* baseline: the same numbers the obvious way — a pandas groupby for per-group counts and
  accuracy plus scikit-learn's accuracy, balanced accuracy and confusion matrix.

Budget (docs/benchmarks.md, "Budgets"): under 16 ms median.

The three are interleaved, one change each per repeat, in an order that rotates between
repeats (``_protocol.py``); every repeat uses a new tau and threshold. Writes
``regroup.md`` into ``docs/results/bench_regroup/`` (refused on a loaded machine).

    .venv/bin/python benchmarks/bench_regroup.py [--n 1000000] [--repeats 25]

``--quick`` (what ``make bench`` runs): 100,000 patches, 10 repeats; the same comparison
and table, as a smoke run (the 16 ms budget is about the full size).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _protocol import Protocol, add_arguments, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="patches (1000000; quick 100000)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    add_arguments(parser)  # --repeats (changes timed: 25; quick 10), --results, --allow-loaded
    args = parser.parse_args()
    if args.n is None:
        args.n = 100_000 if args.quick else 1_000_000
    if args.repeats is None:
        args.repeats = 10 if args.quick else 25
    protocol = Protocol.from_args("bench_regroup", args)  # refuses a loaded machine up front

    import pandas as pd
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    from napari_patchwise.analysis.metrics import Evaluator, evaluate

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

    cases = {
        "`Evaluator.evaluate` (viewer path)": viewer,
        "`metrics.evaluate` (one-shot)": one_shot,
        "baseline: pandas groupby + sklearn": baseline,
    }
    calls = dict.fromkeys(cases, 0)

    def case(name):
        def call():
            cases[name](calls[name])  # the repeat's tau and threshold
            calls[name] += 1

        return call

    records = protocol.interleave({name: case(name) for name in cases})
    times = summarize(records)
    viewer_median = times["`Evaluator.evaluate` (viewer path)"][1] * 1e3
    lines = ["| path | median ms | min ms |", "|---|---:|---:|"]
    lines += [
        f"| {name} | {med * 1e3:.2f} | {low * 1e3:.2f} |" for name, (low, med) in times.items()
    ]
    text = (
        f"{n} patches; `Evaluator` preparation (once): {prepare_ms:.1f} ms\n\n"
        + "\n".join(lines)
        + f"\n\nbudget: viewer path < 16 ms median: {'met' if viewer_median < 16 else 'MISSED'}\n"
    )
    print(text)
    protocol.write({"regroup.md": text}, {"patches": n})
    if args.quick:
        print("(quick smoke run: the budget is about 1,000,000 patches)")


if __name__ == "__main__":
    main()
