"""``patchwise predict``: tumor probability of every patch of a slide.

With ``--mask`` the output is the full patch table (labels, counts, ratios) plus
``prob`` and ``pred``, ready for ``patchwise metrics``; without a mask there are no
labels, so the table holds the patch geometry (slide, row, col, y, x, height, width,
n_pixels) plus ``prob`` and ``pred``.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="classify every patch of a slide with a trained run",
        description="Batched inference over a slide's patch grid with the run's selected "
        "checkpoint (best.pt); patches are read lazily, a band at a time.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--checkpoint", required=True, metavar="RUN_DIR", help="run directory or .pt file"
    )
    p.add_argument(
        "--mask", default=None, metavar="MASK", help="adds labels and ratios to the table"
    )
    p.add_argument(
        "--mask-map", default=None, metavar="SPEC", help='e.g. "0=background,1=healthy,2=tumor"'
    )
    p.add_argument("--stride", type=int, default=None, metavar="N", help="default: the patch size")
    p.add_argument(
        "--tissue", choices=("auto", "mask", "intensity"), default=None, help="default: the run's"
    )
    p.add_argument(
        "--background", choices=("dark", "bright"), default=None, help="default: the run's"
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="decision threshold (default: the run's)"
    )
    p.add_argument("--batch-size", type=int, default=256, metavar="B")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="TABLE", help=".parquet, .csv or .csv.gz")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from .._progress import tqdm_progress
    from ..io import open_slide
    from ..io.tables import table_format, write_table
    from ..predict import checkpoint_path, geometry_table, predict_table

    table_format(args.out)  # fail on a bad output name before any work
    ckpt = checkpoint_path(args.checkpoint)
    config_file = ckpt.parent / "config.json"
    run_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    import torch

    meta = torch.load(ckpt, map_location="cpu", weights_only=True)
    patch_size = int(meta["patch_size"])
    slide = open_slide(
        args.image, mask=args.mask, mask_map=args.mask_map or run_config.get("mask_map")
    )
    if args.mask is not None:
        from ..grid import PatchGrid, patch_stats

        with tqdm_progress("patch statistics", disable=args.quiet) as progress:
            table = patch_stats(
                slide,
                PatchGrid(patch_size, args.stride),
                tissue=args.tissue or run_config.get("tissue", "auto"),
                tissue_threshold=run_config.get("tissue_threshold"),
                background=args.background or run_config.get("background", "dark"),
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
