"""``patchwise report``: one self-contained HTML report over training runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._atomic import check_output
from ..errors import PatchwiseError
from ..groups import attribute_threshold
from ..training.runs import run_files
from ._args import finite_float, probability


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="HTML report of training runs (Table 1, per-group accuracy, curves, Figure 1)",
        description="Table-1-style WGA/BCA per tau (mean ± std over the seeds of each "
        "configuration, slide-bootstrap interval of WGA), per-group test accuracies, "
        "learning curves and the Figure-1 histograms, in one HTML file; Table 1 also as "
        "table1.csv next to it. Runs are pooled as seeds only when their config.json agree "
        "on everything but the seed and runtime settings.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories, or one `patchwise sweep` folder",
    )
    p.add_argument("--out", required=True, metavar="REPORT", help="report.html")
    p.add_argument(
        "--attribute",
        default=None,
        metavar="COLUMN",
        help="regroup every run's test predictions by this attribute (default: each run's "
        "own groups, tissue_ratio at its tau unless trained with --attribute)",
    )
    p.add_argument(
        "--attribute-threshold",
        type=finite_float,
        default=None,
        metavar="T",
        help="threshold of --attribute: attribute >= T is high",
    )
    p.add_argument(
        "--tau", type=probability, default=None, help="with --attribute tissue_ratio: its tau"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ..reporting.html import table1_csv_path, write_report, write_sweep_report
    from ..training.sweep import is_sweep

    runs = [Path(r) for r in args.runs]
    attribute = _attribute(args)
    if len(runs) == 1 and is_sweep(runs[0]):
        if attribute[0] is not None:
            raise PatchwiseError(
                "--attribute applies to run directories, not to a sweep folder",
                hint="give the sweep's run folders (SWEEP/*/) to regroup them",
            )
        # the grid of a sweep: every file in its folder is an input
        inputs = [runs[0], *(f for f in runs[0].rglob("*") if f.is_file())]
        for out in (args.out, table1_csv_path(args.out)):
            check_output(out, inputs=inputs)
        print(write_sweep_report(runs[0], args.out))
        return 0
    seen: dict[Path, Path] = {}
    for run in runs:
        if run.resolve() in seen:
            raise PatchwiseError(
                f"run listed twice ({seen[run.resolve()]} and {run})",
                hint="list each run directory once; repeats would count as separate seeds",
            )
        seen[run.resolve()] = run
    inputs = [*runs, *(f for r in runs for f in run_files(r))]
    for out in (args.out, table1_csv_path(args.out)):
        check_output(out, inputs=inputs)
    print(
        write_report(args.runs, args.out, attribute=attribute[0], attribute_threshold=attribute[1])
    )
    return 0


def _attribute(args: argparse.Namespace) -> tuple[str | None, float | None]:
    """``(attribute, threshold)`` to regroup by, or ``(None, None)`` for the runs' own."""

    if args.attribute is None:
        if args.attribute_threshold is not None or args.tau is not None:
            raise PatchwiseError(
                "--attribute-threshold and --tau regroup the runs: give --attribute too",
                hint="e.g. --attribute mean_CARS --attribute-threshold 40",
            )
        return None, None
    if args.attribute != "tissue_ratio" and args.tau is not None:
        raise PatchwiseError(
            f"--tau is the threshold of tissue_ratio; --attribute {args.attribute} takes "
            "--attribute-threshold"
        )
    return args.attribute, attribute_threshold(args.attribute, args.attribute_threshold, args.tau)
