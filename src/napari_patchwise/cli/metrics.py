"""``patchwise metrics``: group counts and robustness metrics of a patch table.

Prints one line per tissue-size group (patches, share of its class, accuracy) and the
overall accuracy, worst-group accuracy, balanced-class accuracy and calibration error, or
the same as JSON. A table without ``prob``/``pred`` gets group counts only.
``--attribute COLUMN --attribute-threshold T`` groups by any numeric attribute instead of
tissue size; ``--rank-attributes`` ranks every numeric attribute by the worst-group
accuracy gap of the table's predictions, beside its permutation noise floor and, with
``--train-table``, the training split's tumor-rate gap (``docs/attributes.md``).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from ..analysis.metrics import DEFAULT_MIN_GROUP_SIZE, evaluate, group_size_warnings
from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, attribute_threshold, attribute_values
from ..io.tables import check_values, read_table
from ..schema import DEFAULT_THRESHOLD
from ._args import finite_float, int_range, non_negative_int, positive_int, probability, seed


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "metrics",
        help="group counts, WGA, BCA, accuracy and ECE of a patch table",
        description="Split a patch table into the four label x attribute groups (tissue "
        "size split at tau by default; any numeric column with --attribute) "
        "and report per-group and overall metrics of its predictions.",
    )
    p.add_argument("table", metavar="TABLE", help=".parquet, .csv or .csv.gz patch table")
    p.add_argument(
        "--tau",
        type=probability,
        default=None,
        help=f"tissue-ratio threshold in [0, 1] ({DEFAULT_TAU})",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=DEFAULT_THRESHOLD,
        help=f"decision threshold on prob ({DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--attribute",
        default=DEFAULT_ATTRIBUTE,
        metavar="COLUMN",
        help="numeric per-patch column that splits each class into low/high groups "
        "(default: tissue_ratio, split at --tau)",
    )
    p.add_argument(
        "--attribute-threshold",
        type=finite_float,
        default=None,
        metavar="T",
        help="groups: attribute >= T is high (needed for any attribute but tissue_ratio)",
    )
    _add_ranking_arguments(p)
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
        "--names", nargs=2, metavar=("A", "B"), default=None, help="the runs' names (A B)"
    )
    add_interval_arguments(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before reading a table, a flag that would have no effect (one line each)."""
    flags = {
        "--compare": args.compare is not None,
        "--threshold-b": args.threshold_b is not None,
        "--names": args.names is not None,
        "--min-share": args.min_share is not None,
        "--permutations": args.permutations is not None,
        "--train-table": args.train_table is not None,
    }
    if args.rank_attributes:
        if (
            args.attribute != "tissue_ratio"
            or args.attribute_threshold is not None
            or args.tau is not None
        ):
            raise PatchwiseError(
                "--rank-attributes searches every attribute and threshold itself",
                hint="drop --attribute, --attribute-threshold and --tau",
            )
        if args.ci:
            raise PatchwiseError("--ci applies to the metrics of one table or --compare")
        needs = {"--compare": "", "--threshold-b": "--compare", "--names": "--compare"}
        for flag, other in needs.items():
            if flags[flag]:
                raise PatchwiseError(
                    f"{flag} has no effect with --rank-attributes",
                    hint="rank the attributes of one table at a time"
                    + (f"; drop {flag}" if not other else f"; drop {flag} and {other}"),
                )
        return
    if not args.ci and (args.n_boot is not None or args.ci_seed is not None):
        raise PatchwiseError("--n-boot and --ci-seed apply to --ci only")
    for flag in ("--min-share", "--permutations", "--train-table"):
        if flags[flag]:
            raise PatchwiseError(f"{flag} applies to --rank-attributes only")
    for flag in ("--threshold-b", "--names"):
        if flags[flag] and args.compare is None:
            raise PatchwiseError(
                f"{flag} has no effect without --compare", hint=f"drop {flag}, or add --compare"
            )
    if args.attribute != "tissue_ratio" and args.tau is not None:
        raise PatchwiseError(
            f"--tau is the threshold of tissue_ratio; --attribute {args.attribute} takes "
            "--attribute-threshold"
        )


def _add_ranking_arguments(p: argparse.ArgumentParser) -> None:
    """``--rank-attributes`` and its options (docs/attributes.md, "Ranking")."""
    p.add_argument(
        "--rank-attributes",
        action="store_true",
        help="rank every numeric attribute column by the worst-group accuracy gap of the "
        "predictions, each at its largest-gap threshold",
    )
    p.add_argument(
        "--min-share",
        type=probability,
        default=None,
        metavar="F",
        help="--rank-attributes: smallest share of its class a group may hold (0.02)",
    )
    p.add_argument(
        "--permutations",
        type=int_range(0, 100_000),
        default=None,
        metavar="N",
        help="--rank-attributes: shuffles of each attribute for its noise floor, the 95th "
        "percentile of their largest gaps (100; 0: no floor)",
    )
    p.add_argument(
        "--permutation-seed",
        type=int_range(0, 2**32 - 1),
        default=0,
        metavar="SEED",
        help="--rank-attributes: seed of the shuffles (0)",
    )
    p.add_argument(
        "--train-table",
        metavar="TRAIN_TABLE",
        default=None,
        help="--rank-attributes: the training split's patch table (label and the attribute "
        "columns): each attribute's tumor-rate gap there, at its chosen threshold",
    )


def add_interval_arguments(p: argparse.ArgumentParser) -> None:
    """``--ci``, ``--n-boot``, ``--ci-seed`` and ``--min-group-size`` (docs/numbers.md)."""
    p.add_argument(
        "--ci",
        action="store_true",
        help="95%% slide-level bootstrap intervals of WGA and BCA (needs a 'slide' column "
        "with at least 2 slides); with --compare, the interval of WGA(B) - WGA(A)",
    )
    p.add_argument(
        "--n-boot", type=positive_int, default=None, metavar="N", help="--ci draws (2000)"
    )
    p.add_argument(
        "--ci-seed", type=seed, default=None, metavar="N", help="--ci resampling seed (0)"
    )
    p.add_argument(
        "--min-group-size",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="warn about groups with fewer patches than N (20), and about empty groups",
    )


def run(args: argparse.Namespace) -> int:
    check_args(args)
    if args.rank_attributes:
        return _rank(args)
    threshold = attribute_threshold(args.attribute, args.attribute_threshold, args.tau)
    if args.compare is not None:
        return run_compare(args, threshold)
    table = read_table(args.table, required=("label",))
    values = attribute_values(table, args.attribute, path=args.table)
    _check_spread(values, args.attribute, args.table)
    # Every patch needs a prediction here (a table saved from the dock may have gaps).
    check_values(table, path=args.table, missing_ok=False)
    ev = evaluate(
        table["label"].to_numpy(),
        values,
        prob=table["prob"].to_numpy() if "prob" in table else None,
        pred=table["pred"].to_numpy() if "pred" in table else None,
        tau=threshold,
        threshold=args.threshold,
        attribute=args.attribute,
    )
    # counts only: no WGA to qualify (the dock shows none either)
    warnings = (
        group_size_warnings(ev.group_counts, ev.group_names, _min_group_size(args))
        if ev.has_predictions
        else []
    )
    ci = _table_interval(args, table, threshold) if args.ci else None
    if args.json:
        result = ev.to_dict()
        result["warnings"] = warnings
        if ci is not None:
            result.update(wga_ci=ci.wga.as_list(), bca_ci=ci.bca.as_list(), ci=_ci_info(ci.wga))
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_evaluation(ev))
        if ci is not None:
            print(format_intervals(ci))
        print_warnings(warnings)
    return 0


def _min_group_size(args: argparse.Namespace) -> int:
    return DEFAULT_MIN_GROUP_SIZE if args.min_group_size is None else args.min_group_size


def _table_interval(args: argparse.Namespace, table, group_threshold: float):
    from ..analysis.intervals import slide_bootstrap_ci, table_slide_counts

    counts = table_slide_counts(
        table,
        attribute=args.attribute,
        tau=group_threshold,
        threshold=args.threshold,
        path=args.table,
    )
    return slide_bootstrap_ci(counts, path=args.table, **_boot_options(args))


def _boot_options(args: argparse.Namespace) -> dict:
    from ..analysis.intervals import DEFAULT_N_BOOT

    return {
        "n_boot": DEFAULT_N_BOOT if args.n_boot is None else args.n_boot,
        "seed": 0 if args.ci_seed is None else args.ci_seed,
    }


def _ci_info(interval) -> dict:
    return {
        "level": interval.level,
        "n_boot": interval.n_boot,
        "n_slides": interval.n_slides,
        "resampled": "slides",
    }


def format_intervals(ci) -> str:
    """Two lines: the slide-level intervals of WGA and BCA."""
    w, b = ci.wga, ci.bca
    head = f"{100 * w.level:g}% slide-bootstrap interval ({w.n_slides} slides, {w.n_boot} draws)"
    return "\n".join(
        [
            "",
            head,
            f"worst-group accuracy     [{_pct(w.low)}, {_pct(w.high)}]",
            f"balanced-class accuracy  [{_pct(b.low)}, {_pct(b.high)}]",
        ]
    )


def print_warnings(warnings: list[str]) -> None:
    """Each group-size warning on its own line of stdout, after the report."""
    if warnings:
        print()
    for line in warnings:
        print(f"warning: {line}")


def run_compare(args: argparse.Namespace, group_threshold: float) -> int:
    """``--compare``: runs A (TABLE, which holds the labels) and B side by side, grouped
    by ``--attribute`` (of table A) at ``group_threshold``."""
    from ..analysis.compare import compare_predictions, paired_predictions

    table_a = read_table(args.table, required=("row", "col", "prob", "label"))
    check_values(table_a, path=args.table)  # labels, ratios in [0, 1]...
    values = attribute_values(table_a, args.attribute, path=args.table)  # present, numeric
    _check_spread(values, args.attribute, args.table)
    table_b = read_table(args.compare, required=("row", "col", "prob"))
    paired = paired_predictions(None, table_a, table_b, sources=(args.table, args.compare))
    result = compare_predictions(
        paired["label"].to_numpy(),
        attribute_values(paired, args.attribute),
        paired["prob_a"].to_numpy(),
        paired["prob_b"].to_numpy(),
        tau=group_threshold,
        threshold=args.threshold,
        threshold_b=args.threshold_b,
        names=tuple(args.names or ("A", "B")),
    )
    a = result.evaluation_a
    warnings = group_size_warnings(a.group_counts, a.group_names, _min_group_size(args))
    diff = _paired_interval(args, paired, result, group_threshold) if args.ci else None
    if args.json:
        data = result.to_dict()
        data["warnings"] = warnings
        if diff is not None:
            data.update(wga_diff=diff.estimate, wga_diff_ci=diff.as_list(), ci=_ci_info(diff))
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(format_comparison(result))
        if diff is not None:
            name_a, name_b = result.names
            print(
                f"\nWGA {name_b} - {name_a}: {100 * diff.estimate:+.2f} points, "
                f"{100 * diff.level:g}% paired slide-bootstrap interval "
                f"[{100 * diff.low:+.2f}, {100 * diff.high:+.2f}] "
                f"({diff.n_slides} slides, {diff.n_boot} draws)"
            )
        print_warnings(warnings)
    return 0


def _paired_interval(args: argparse.Namespace, paired, result, group_threshold: float):
    """Interval of WGA(B) - WGA(A) over the same resampled slides of the paired table."""
    from ..analysis.intervals import paired_wga_difference_ci, slide_counts

    if "slide" not in paired:
        raise PatchwiseError(
            "--ci needs a 'slide' column in both tables to resample slides",
            path=args.table,
            hint="use tables written by 'patchwise predict' or a run's predictions.parquet",
        )
    a, b = result.evaluation_a, result.evaluation_b
    values = attribute_values(paired, args.attribute)
    common = {"tau": group_threshold}
    counts_a = slide_counts(
        paired["slide"],
        paired["label"],
        values,
        prob=paired["prob_a"],
        threshold=a.threshold,
        **common,
    )
    counts_b = slide_counts(
        paired["slide"],
        paired["label"],
        values,
        prob=paired["prob_b"],
        threshold=b.threshold,
        **common,
    )
    return paired_wga_difference_ci(counts_a, counts_b, path=args.table, **_boot_options(args))


def format_comparison(result) -> str:
    """A plain-text side-by-side report of a :class:`~napari_patchwise.analysis.compare.Comparison`."""
    from ..analysis.compare import COMPARISON_NAMES, side_by_side

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


def _rank(args: argparse.Namespace) -> int:
    from ..analysis.attribute_ranking import (
        DEFAULT_MIN_SHARE,
        DEFAULT_PERMUTATIONS,
        NOISE_QUANTILE,
        format_ranking,
        rank_attributes,
    )

    min_share = DEFAULT_MIN_SHARE if args.min_share is None else args.min_share
    table = read_table(args.table, required=("label",))
    check_values(table, path=args.table, missing_ok=False)
    train = None
    if args.train_table is not None:
        train = read_table(args.train_table, required=("label",))
        check_values(train, path=args.train_table, missing_ok=False)
    permutations = DEFAULT_PERMUTATIONS if args.permutations is None else args.permutations
    ranks = rank_attributes(
        table,
        threshold=args.threshold,
        min_share=min_share,
        permutations=permutations,
        seed=args.permutation_seed,
        train=train,
        path=args.table,
    )
    if args.json:
        result = {
            "threshold": args.threshold,
            "min_share": min_share,
            "permutations": permutations,
            "permutation_seed": args.permutation_seed,
            "noise_quantile": NOISE_QUANTILE,
            "train_table": args.train_table,
            "ranking": [r.to_dict() for r in ranks],
        }
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_ranking(ranks, decision_threshold=args.threshold, min_share=min_share))
    return 0


def _check_spread(values, attribute: str, path: str) -> None:
    """Refuse an attribute the user chose that holds one value: one group per class, so
    every "worst group" is a class and the groups say nothing. (Tissue ratio, the
    default, may: a table of whole-tissue patches still has its counts.)"""

    present = np.unique(values[~np.isnan(values)])
    if attribute != "tissue_ratio" and present.size <= 1:
        value = f"{present[0]:g}" if present.size else "none"
        raise PatchwiseError(
            f"attribute column {attribute!r} holds a single value ({value}) in every patch: "
            "the groups would be the classes",
            path=path,
            hint="choose an attribute that varies ('--rank-attributes' lists them)",
        )


def format_evaluation(ev) -> str:
    """A plain-text report of an :class:`~napari_patchwise.analysis.metrics.Evaluation`."""
    source = "predictions" if ev.has_predictions else "no predictions: counts only"
    split = (
        f"tau = {ev.tau:g}" if ev.attribute == "tissue_ratio" else f"{ev.attribute} >= {ev.tau:g}"
    )
    lines = [
        f"{ev.n} patches, {split}"
        + (f", threshold = {ev.threshold:g}" if ev.has_predictions else "")
        + f" ({source})",
        "",
        f"{'group':<17}{'patches':>10}{'share of class':>16}"
        + (f"{'accuracy':>10}" if ev.has_predictions else ""),
    ]
    class_counts = ev.class_counts
    for g, name in enumerate(ev.group_names):
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
