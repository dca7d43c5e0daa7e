"""``patchwise metrics``: group counts and robustness metrics of a patch table.

Prints one line per tissue-size group (patches, share of its class, accuracy) and the
overall accuracy, worst-group accuracy, balanced-class accuracy and calibration error, or
the same as JSON. A table without ``prob``/``pred`` gets group counts only.
"""

from __future__ import annotations

import argparse
import json
import math

from ._args import probability


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "metrics",
        help="group counts, WGA, BCA, accuracy and ECE of a patch table",
        description="Split a patch table into the four label x tissue-size groups with tau "
        "and report per-group and overall metrics of its predictions.",
    )
    p.add_argument("table", metavar="TABLE", help=".parquet, .csv or .csv.gz patch table")
    p.add_argument(
        "--tau", type=probability, default=0.1, help="tissue-ratio threshold in [0, 1] (0.1)"
    )
    p.add_argument(
        "--threshold", type=probability, default=0.5, help="decision threshold on prob (0.5)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--compare",
        metavar="TABLE_B",
        default=None,
        help="a second run's predictions of the same patches: both runs side by side, "
        "per-patch agreement, patches fixed and broken by B (labels from TABLE)",
    )
    p.add_argument(
        "--threshold-b",
        type=probability,
        default=None,
        help="decision threshold of the --compare run (default: --threshold)",
    )
    p.add_argument(
        "--names", nargs=2, metavar=("A", "B"), default=("A", "B"), help="the runs' names"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ..io.tables import check_values, read_table
    from ..metrics import evaluate

    if args.compare is not None:
        return run_compare(args)
    table = read_table(args.table)
    # Every patch needs a prediction here (a table saved from the dock may have gaps).
    check_values(table, path=args.table, missing_ok=False)
    ev = evaluate(
        table["label"].to_numpy(),
        table["tissue_ratio"].to_numpy(),
        prob=table["prob"].to_numpy() if "prob" in table else None,
        pred=table["pred"].to_numpy() if "pred" in table else None,
        tau=args.tau,
        threshold=args.threshold,
    )
    if args.json:
        print(json.dumps(ev.to_dict(), indent=2, allow_nan=False))
    else:
        print(format_evaluation(ev))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``--compare``: runs A (TABLE, which holds the labels) and B side by side."""
    from ..compare import compare_predictions, paired_predictions
    from ..io.tables import read_table

    table_a = read_table(args.table, required=("row", "col", "prob", "label", "tissue_ratio"))
    table_b = read_table(args.compare, required=("row", "col", "prob"))
    paired = paired_predictions(None, table_a, table_b, sources=(args.table, args.compare))
    result = compare_predictions(
        paired["label"].to_numpy(),
        paired["tissue_ratio"].to_numpy(),
        paired["prob_a"].to_numpy(),
        paired["prob_b"].to_numpy(),
        tau=args.tau,
        threshold=args.threshold,
        threshold_b=args.threshold_b,
        names=tuple(args.names),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(format_comparison(result))
    return 0


def format_comparison(result) -> str:
    """A plain-text side-by-side report of a :class:`~napari_patchwise.compare.Comparison`."""
    from ..compare import COMPARISON_NAMES, side_by_side

    a, b = result.evaluation_a, result.evaluation_b
    name_a, name_b = result.names
    thresholds = (
        f"{a.threshold:g}" if a.threshold == b.threshold else f"{a.threshold:g} / {b.threshold:g}"
    )
    lines = [
        f"{a.n} patches scored by both, tau = {a.tau:g}, threshold = {thresholds}",
        "",
        f"{'':<22}{'patches':>10}{name_a:>12}{name_b:>12}{'B - A':>10}",
    ]
    for name, n, value_a, value_b in side_by_side(a, b):
        delta = value_b - value_a
        lines.append(
            f"{name:<22}{'' if n is None else n:>10}{_pct(value_a):>12}{_pct(value_b):>12}"
            f"{'n/a' if math.isnan(delta) else f'{100 * delta:+.2f}':>10}"
        )
    lines.append("")
    names = [n.replace("A", name_a).replace("B", name_b) for n in COMPARISON_NAMES]
    lines.append("  ·  ".join(f"{n} {int(c)}" for n, c in zip(names, result.counts, strict=True)))
    lines.append(
        f"fixed by {name_b}: {result.fixed.size}  ·  broken by {name_b}: {result.broken.size}"
    )
    return "\n".join(lines)


def format_evaluation(ev) -> str:
    """A plain-text report of an :class:`~napari_patchwise.metrics.Evaluation`."""
    from ..groups import GROUP_NAMES

    source = "predictions" if ev.has_predictions else "no predictions: counts only"
    lines = [
        f"{ev.n} patches, tau = {ev.tau:g}"
        + (f", threshold = {ev.threshold:g}" if ev.has_predictions else "")
        + f" ({source})",
        "",
        f"{'group':<17}{'patches':>10}{'share of class':>16}"
        + (f"{'accuracy':>10}" if ev.has_predictions else ""),
    ]
    class_counts = ev.class_counts
    for g, name in enumerate(GROUP_NAMES):
        n = int(ev.group_counts[g])
        share = n / class_counts[g // 2] if class_counts[g // 2] else math.nan
        line = f"{name:<17}{n:>10}{_pct(share):>16}"
        if ev.has_predictions:
            line += f"{_pct(ev.per_group_accuracy[g]) if n else 'empty':>10}"
        lines.append(line)
    if ev.has_predictions:
        worst = f" ({ev.worst_group})" if ev.worst_group else ""
        tn, fp, fn, tp = ev.confusion
        lines += [
            "",
            f"accuracy                 {_pct(ev.accuracy)}",
            f"worst-group accuracy     {_pct(ev.wga)}{worst}",
            f"balanced-class accuracy  {_pct(ev.bca)}",
            f"worst-class accuracy     {_pct(ev.worst_class_accuracy)}",
            f"group-balanced accuracy  {_pct(ev.group_balanced_accuracy)}",
            f"ECE (10 bins, tumor)     {'n/a' if math.isnan(ev.ece) else f'{ev.ece:.4f}'}",
            f"confusion                TN {tn}  FP {fp}  FN {fn}  TP {tp}",
        ]
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}%"
