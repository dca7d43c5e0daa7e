"""``patchwise predict``: tumor probability of every patch of a slide.

With ``--mask`` the output is the full patch table (labels, counts, ratios) plus
``prob`` and ``pred``, ready for ``patchwise metrics``; without a mask there are no
labels, so the table holds the patch geometry (slide, row, col, y, x, height, width,
n_pixels) plus ``prob`` and ``pred``.
"""

from __future__ import annotations

import argparse

from ..schema import BACKGROUNDS, TISSUE_MODES
from ._args import pixels, positive_int, probability


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
        "--mask", default=None, metavar="MASK", help="adds labels and ratios to the table"
    )
    p.add_argument(
        "--mask-map", default=None, metavar="SPEC", help='e.g. "0=background,1=healthy,2=tumor"'
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
        "--batch-size", type=positive_int, default=256, metavar="B", help="patches per forward pass"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="TABLE", help=".parquet, .csv or .csv.gz")
    return p


def run(args: argparse.Namespace) -> int:
    from .._atomic import check_output
    from .._progress import tqdm_progress
    from ..grid import PatchGrid
    from ..io import open_slide
    from ..io.tables import table_format, write_table
    from ..predict import check_options, geometry_table, predict_table
    from ..runs import checkpoint_meta, resolve_checkpoint, run_files, run_patch_settings

    # every option and the checkpoint are checked before any slide is read
    table_format(args.out)
    check_options(args.batch_size, args.threshold)
    ckpt = resolve_checkpoint(args.checkpoint)
    check_output(args.out, inputs=[args.image, args.mask, args.checkpoint, *run_files(ckpt)])
    meta = checkpoint_meta(ckpt)
    settings = run_patch_settings(ckpt)  # defaults for a checkpoint copied out of its run
    patch_size = int(meta["patch_size"])
    # Level 0 only: prediction never builds or writes a display pyramid, and the mask's
    # values are checked in the pass that counts them.
    slide = open_slide(
        args.image,
        mask=args.mask,
        mask_map=args.mask_map or settings.mask_map,
        pyramid=False,
        check_mask_values=False,
    )
    grid = PatchGrid(patch_size, args.stride)
    grid.check_fits(*slide.shape[1:], path=args.image)  # never an empty table
    if args.mask is not None:
        from ..grid import patch_stats

        with tqdm_progress("patch statistics", disable=args.quiet) as progress:
            table = patch_stats(
                slide,
                grid,
                tissue=args.tissue or settings.tissue,
                tissue_threshold=settings.tissue_threshold,
                background=args.background or settings.background,
                progress=progress,
            )
    else:
        table = geometry_table(slide, patch_size, args.stride)
    with tqdm_progress("predicting", unit="patch", disable=args.quiet) as progress:
        table = predict_table(
            slide,
            table,
            ckpt,
            batch_size=args.batch_size,
            device=args.device,
            threshold=args.threshold,
            progress=progress,
        )
    write_table(table, args.out)
    print(args.out)
    return 0
