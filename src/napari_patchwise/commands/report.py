"""``patchwise report``: one self-contained HTML report over training runs."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="HTML report of training runs (Table 1, per-group accuracy, curves, Figure 1)",
        description="Table-1-style WGA/BCA per tau (mean ± std over seeds), per-group test "
        "accuracies, learning curves and the Figure-1 histograms, in one HTML file.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="REPORT", help="report.html")
    return p


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_output
    from ..report_run import write_report

    check_output(args.out, inputs=args.runs)
    print(write_report(args.runs, args.out))
    return 0
