"""``patchwise split``: assign a cohort's slides to train / val / test, whole patients at once.

``patchwise split cohort.csv --by patient --fractions 0.7 0.15 0.15 --seed 0 --out
split.csv`` writes the manifest with its ``split`` column filled in: every patient's
slides in one split, slide counts as close to the fractions as whole patients allow, the
same assignment for the same seed (:mod:`napari_patchwise.cohort.split`).
"""

from __future__ import annotations

import argparse
import sys

from .._atomic import check_output
from ..cohort.split import DEFAULT_FRACTIONS, SPLIT_BY, check_fractions, split_manifest
from ._args import non_negative_float, seed


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "split",
        help="assign slides to train/val/test, each patient's slides to one split",
        description="Write the manifest with its split column assigned: whole patients "
        "(the manifest's patient column) or slides go to train, val and test, slide "
        "counts as close to --fractions as they allow, deterministic for a --seed "
        "(see docs/guide-researchers.md, Cohorts).",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="cohort CSV: image, mask[, patient]")
    p.add_argument(
        "--by", choices=SPLIT_BY, default="patient", help="the unit kept whole (patient)"
    )
    p.add_argument(
        "--fractions",
        nargs=3,
        type=non_negative_float,
        default=DEFAULT_FRACTIONS,
        metavar=("TRAIN", "VAL", "TEST"),
        help="shares of the slides, summing to 1 (default: 0.7 0.15 0.15)",
    )
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 or more (0)")
    p.add_argument("--out", required=True, metavar="SPLIT.csv", help="the new manifest")
    return p


def run(args: argparse.Namespace) -> int:
    check_fractions(args.fractions)  # before reading anything
    check_output(args.out, inputs=[args.manifest], role="the input manifest")
    summary = split_manifest(
        args.manifest, args.out, by=args.by, fractions=args.fractions, seed=args.seed
    )
    parts = [
        f"{split} {summary['slides'][split]} slide(s)"
        + (f" of {summary['units'][split]} patient(s)" if args.by == "patient" else "")
        for split in summary["slides"]
    ]
    print(f"patchwise split: {', '.join(parts)}", file=sys.stderr)
    print(args.out)
    return 0
