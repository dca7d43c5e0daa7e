"""``patchwise synth``: write a synthetic multimodal slide and its 3-class mask."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._atomic import FILE, check_output, naming
from .._progress import tqdm_progress
from ..errors import PatchwiseError
from ._args import (
    MAX_SYNTH_SIDE,
    MAX_TILE,
    MIN_SYNTH_SIDE,
    SYNTH_MIN_BYTES_PER_PIXEL,
    check_free_space,
    pixels,
    positive_finite_float,
    probability,
    seed,
    synth_side,
    tile_side,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic CARS/TPEF/SHG slide with its tumor mask",
        description="Generate a synthetic multimodal slide chunk by chunk (any size, "
        "bounded memory) and write it as a tiled pyramidal OME-TIFF or OME-Zarr, with its "
        "mask (0 background, 1 healthy, 2 tumor). --spurious sets how strongly tissue "
        "size goes with the label.",
    )
    p.add_argument(
        "--size",
        nargs=2,
        type=synth_side,
        metavar=("H", "W"),
        required=True,
        help=f"pixels ({MIN_SYNTH_SIDE} to {MAX_SYNTH_SIDE} per side)",
    )
    p.add_argument("--out", required=True, help="slide: *.ome.tif or *.ome.zarr")
    p.add_argument("--mask-out", help="mask (default: <stem>_mask.tif beside the slide)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing OME-Zarr images (TIFF files are always replaced); a folder "
        "that is not an OME-Zarr image is never replaced",
    )
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 or more (0)")
    p.add_argument(
        "--spurious",
        type=probability,
        default=1.0,
        help="tissue-size/label correlation strength in [0, 1] (1.0)",
    )
    p.add_argument(
        "--tumor-fraction",
        type=probability,
        default=0.35,
        help="share of tissue that is tumor at --spurious 0 (0.35)",
    )
    p.add_argument(
        "--tile",
        type=tile_side,
        default=512,
        help=f"TIFF tile / zarr chunk side, a multiple of 16 up to {MAX_TILE} (512)",
    )
    p.add_argument(
        "--pixel-size", type=positive_finite_float, default=0.5, help="micrometres per pixel (0.5)"
    )
    p.add_argument(
        "--artefact",
        action="append",
        default=[],
        metavar="KIND=STRENGTH",
        help="plant an artefact on whole patches, correlated with the patch label: KIND is "
        "pen, stain or blur; STRENGTH in [-1, 1] is P(artefact | tumor) - P(artefact | "
        "non-tumor) (repeatable; docs/shortcuts.md). Writes <slide>.artefacts.parquet",
    )
    p.add_argument(
        "--artefact-patch-size",
        type=pixels,
        default=64,
        help="side of the patch grid the artefacts are planted on (64)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..io.write import OME_ZARR
    from ..synthetic.artefacts import artefacts_path, checked_artefacts, parse_artefact
    from ..synthetic.slides import SynthConfig, default_mask_path, write_synthetic_slide

    if args.tile <= 0 or args.tile % 16:
        raise PatchwiseError(f"--tile {args.tile} is not a positive multiple of 16")
    config = SynthConfig(
        size=tuple(args.size),
        seed=args.seed,
        spurious=args.spurious,
        tumor_fraction=args.tumor_fraction,
        pixel_size=args.pixel_size,
    )
    artefacts = checked_artefacts([parse_artefact(a) for a in args.artefact])
    h, w = config.size
    check_free_space(
        args.out, SYNTH_MIN_BYTES_PER_PIXEL * h * w, what=f"a {h} x {w} synthetic slide"
    )
    # Bad names fail here, before the progress bar appears.
    for path in filter(None, (args.out, args.mask_out)):
        default_mask_path(path)
    mask_out = Path(args.mask_out) if args.mask_out else default_mask_path(args.out)
    outputs = [(Path(args.out), (), "--out"), (mask_out, (args.out,), "--mask-out")]
    if artefacts:
        outputs.append((Path(artefacts_path(args.out)), (args.out, mask_out), "--out"))
    for path, others, flag in outputs:
        is_zarr = path.name.lower().endswith(".zarr")
        check_output(
            path,
            inputs=others,
            kind=OME_ZARR if is_zarr else FILE,
            overwrite=args.overwrite,
            role="the slide (--out)",
            flag=flag,
        )
    with tqdm_progress("synth", unit="‰", disable=args.quiet) as progress, naming([args.out]):
        out, mask_out = write_synthetic_slide(
            args.out,
            mask_out,
            config,
            tile=args.tile,
            overwrite=args.overwrite,
            progress=progress,
            artefacts=artefacts,
            artefact_patch=args.artefact_patch_size,
        )
    print(out)
    print(mask_out)
    if artefacts:
        print(artefacts_path(out))
    return 0
