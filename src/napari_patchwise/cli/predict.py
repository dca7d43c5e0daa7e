"""``patchwise predict``: tumor probability of every patch of a slide.

With ``--mask`` the output is the full patch table (labels, counts, ratios) plus
``prob`` and ``pred``, ready for ``patchwise metrics``; without a mask there are no
labels, so the table holds the patch geometry (slide, row, col, y, x, height, width,
n_pixels) plus ``prob`` and ``pred``. ``--attributes`` adds the extra per-patch attributes
of ``patchwise stats`` (docs/attributes.md), e.g. to rank them.
"""

from __future__ import annotations

import argparse

from .._atomic import check_output
from .._progress import tqdm_progress
from ..errors import PatchwiseError
from ..io import open_slide
from ..io.tables import table_format, write_table
from ..reporting.qupath import write_patches
from ..schema import BACKGROUNDS, TISSUE_MODES
from ..training.inference import DEFAULT_BATCH_SIZE
from ..training.runs import resolve_checkpoint, run_files
from ._args import (
    add_attribute_arguments,
    add_geojson_arguments,
    pixels,
    positive_int,
    probability,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="classify every patch of a slide with a trained run",
        description="Batched inference over a slide's patch grid with the run's selected "
        "checkpoint (best.pt) or any checkpoint of it (best_val_*.pt, last.pt); patches are "
        "read lazily, a band at a time.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR",
        help="run directory (its best.pt), or best.pt, best_val_*.pt or last.pt",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="MASK",
        help="adds labels and ratios to the table (label image or QuPath .geojson)",
    )
    p.add_argument(
        "--mask-map",
        default=None,
        metavar="SPEC",
        help='e.g. "0=background,1=healthy,2=tumor" or "Tumor=tumor,Stroma=healthy"',
    )
    p.add_argument(
        "--stride", type=pixels, default=None, metavar="N", help="default: the patch size"
    )
    p.add_argument("--tissue", choices=TISSUE_MODES, default=None, help="default: the run's")
    p.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default=None,
        help="default: the run's; for runs that left it to each slide, the slide's",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="decision threshold in [0, 1] (default: the run's)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"patches per forward pass ({DEFAULT_BATCH_SIZE})",
    )
    add_attribute_arguments(
        p, "also write extra per-patch attributes (e.g. for 'patchwise metrics --rank-attributes')"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--geojson",
        default=None,
        metavar="PATH",
        help="also export the patches for QuPath (needs --mask; docs/annotations.md)",
    )
    add_geojson_arguments(p, predictions=True)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="TABLE", help=".parquet, .csv or .csv.gz")
    return p


def run(args: argparse.Namespace) -> int:
    from ..training.predict import check_options, predict_slide

    # every option and the checkpoint are checked before any slide is read
    table_format(args.out)
    check_options(args.batch_size, args.threshold)
    if "border" in args.attributes and args.mask is None:
        raise PatchwiseError(
            "the border fraction needs to know where tissue is", hint="pass --mask MASK"
        )
    ckpt = resolve_checkpoint(args.checkpoint)
    inputs = [args.image, args.mask, args.checkpoint, *run_files(ckpt)]
    check_output(args.out, inputs=inputs)
    if args.geojson:
        if args.mask is None:
            raise PatchwiseError(
                "--geojson classes patches by their label, which needs a mask",
                hint="pass --mask MASK",
            )
        check_output(args.geojson, inputs=inputs)
        check_output(args.geojson, inputs=[args.out], role="--out (the table)")
    with (
        tqdm_progress(
            "patch statistics", disable=args.quiet or args.mask is None
        ) as stats_progress,
        tqdm_progress("predicting", unit="patch", disable=args.quiet) as progress,
    ):
        table = predict_slide(
            args.image,
            ckpt,
            mask=args.mask,
            mask_map=args.mask_map,
            stride=args.stride,
            tissue=args.tissue,
            background=args.background,
            batch_size=args.batch_size,
            device=args.device,
            threshold=args.threshold,
            attributes=args.attributes,
            border_margin=args.border_margin,
            stats_progress=stats_progress,
            progress=progress,
        )
    write_table(table, args.out)
    if args.geojson:
        _write_geojson(table, args)
    print(args.out)
    return 0


def _write_geojson(table, args: argparse.Namespace) -> None:
    """The QuPath objects of the predicted patches (outcomes at the table's ``pred``)."""

    pixel_size = open_slide(args.image, pyramid=False).pixel_size  # metadata only
    write_patches(
        table,
        args.geojson,
        scheme=args.geojson_classes,
        errors_only=args.errors_only,
        tau=args.tau,
        threshold=None,  # the run's (or --threshold's) decisions, as in the table
        pixel_size=pixel_size,
    )
