"""``patchwise convert``: any readable image to a tiled pyramidal OME-TIFF or OME-Zarr."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._atomic import FILE, check_output, naming
from .._progress import tqdm_progress
from ..errors import PatchwiseError
from ..io import open_slide
from ._args import MAX_TILE, positive_finite_float, tile_side


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="write any readable image as a pyramidal OME-TIFF or OME-Zarr",
        description="Read an image lazily (OME-TIFF/TIFF, OME-Zarr, PNG, JPEG; vendor slides "
        "and DICOM WSI with the wsi extra) and write it tile by tile as a tiled, compressed, "
        "pyramidal OME-TIFF or OME-Zarr. Stored pyramid levels are reused; a missing "
        "pyramid is built once, each level from the one above it.",
    )
    p.add_argument("input", metavar="IN", help="image file or OME-Zarr store")
    p.add_argument("--out", required=True, help="*.ome.tif or *.ome.zarr")
    p.add_argument("--channel-names", nargs="+", metavar="NAME", help="override channel names")
    p.add_argument(
        "--pixel-size", type=positive_finite_float, help="override micrometres per pixel"
    )
    p.add_argument(
        "--tile",
        type=tile_side,
        default=512,
        help=f"TIFF tile / zarr chunk side, a multiple of 16 up to {MAX_TILE} (512)",
    )
    p.add_argument(
        "--zarr-version", choices=("0.5", "0.4"), default="0.5", help="OME-Zarr version (0.5)"
    )
    p.add_argument(
        "--labels",
        action="store_true",
        help="the input is a label image (mask): nearest, not mean, downsampling",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OME-Zarr image (a TIFF file is always replaced); a folder "
        "that is not an OME-Zarr image is never replaced",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..io.pyramid_cache import staged_pyramid
    from ..io.write import OME_ZARR, write_ome_tiff, write_ome_zarr

    out = Path(args.out)
    name = out.name.lower()
    is_zarr = name.endswith(".zarr")
    if not (is_zarr or name.endswith((".tif", ".tiff"))):
        raise PatchwiseError(
            "unknown output type", path=out, hint="name the output *.ome.tif or *.ome.zarr"
        )
    if args.tile <= 0 or args.tile % 16:
        raise PatchwiseError(f"--tile {args.tile} is not a positive multiple of 16")
    check_output(
        out, inputs=[args.input], kind=OME_ZARR if is_zarr else FILE, overwrite=args.overwrite
    )
    # Stored levels are reused; a single-level input gets its pyramid built below, with
    # each level computed once (never the lazy chain that re-reads level 0 per level).
    slide = open_slide(
        args.input,
        channel_names=args.channel_names,
        pixel_size=args.pixel_size,
        pyramid=False,  # the stored levels only: nothing built that is not written
    )
    stored_levels = len(slide.levels)

    def write(levels, progress) -> None:
        common = dict(
            channel_names=list(slide.channel_names),
            pixel_size=slide.pixel_size,
            progress=progress,
        )
        if is_zarr:
            write_ome_zarr(
                out,
                levels,
                chunk=args.tile,
                version=args.zarr_version,
                contrast_limits=slide.contrast_limits,
                overwrite=args.overwrite,
                **common,
            )
        else:
            write_ome_tiff(out, levels, tile=args.tile, **common)

    # an error of the scratch pyramid beside the output names the output
    with tqdm_progress("convert", disable=args.quiet) as progress, naming([out]):
        if stored_levels > 1:
            write(list(slide.levels), progress)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            method = "nearest" if args.labels else "mean"
            with staged_pyramid(slide.levels[0], workdir=out.parent, method=method) as levels:
                write(levels, progress)
    print(out)
    return 0
