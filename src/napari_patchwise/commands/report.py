"""``patchwise report``: one self-contained HTML report over training runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="HTML report of training runs (Table 1, per-group accuracy, curves, Figure 1)",
        description="Table-1-style WGA/BCA per tau (mean ± std over seeds), per-group test "
        "accuracies, learning curves and the Figure-1 histograms, in one HTML file.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories, or one `patchwise sweep` folder",
    )
    p.add_argument("--out", required=True, metavar="REPORT", help="report.html")
    return p


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_output
    from ..errors import PatchwiseError
    from ..report_run import write_report, write_sweep_report
    from ..runs import run_files
    from ..sweep import is_sweep

    runs = [Path(r) for r in args.runs]
    if len(runs) == 1 and is_sweep(runs[0]):
        # the grid of a sweep: every file in its folder is an input
        check_output(args.out, inputs=[runs[0], *(f for f in runs[0].rglob("*") if f.is_file())])
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
    check_output(args.out, inputs=[*runs, *(f for r in runs for f in run_files(r))])
    print(write_report(args.runs, args.out))
    return 0
