"""``patchwise stats``: per-patch labels, counts and ratios of one or more slides.

Slides come as image/mask pairs (``IMAGE... --mask MASK...``, paired in order) or as a
cohort manifest CSV (``manifest.csv``, its ``split`` column is kept in the table). The
output is one table with a ``slide`` column, written atomically. ``--workers N`` runs the
counting on a local ``dask.distributed`` cluster of N processes, ``--scheduler ADDRESS``
on an existing one. ``--attributes intensity,border,slide`` adds candidate spurious
attributes (``docs/attributes.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .._atomic import check_output
from .._compute import dask_client
from .._progress import tqdm_progress
from ..cohort.manifest import read_manifest
from ..errors import PatchwiseError
from ..io import open_slide
from ..io.mask import MaskMap, as_mask_map
from ..io.reader import slide_name
from ..io.tables import table_format, write_table
from ..reporting.qupath import write_patches
from ..schema import BACKGROUNDS, TISSUE_MODES
from ..settings import PatchSettings
from ._args import (
    add_attribute_arguments,
    add_geojson_arguments,
    finite_float,
    offset,
    pixels,
    positive_int,
    scheduler_address,
)

if TYPE_CHECKING:
    import pandas as pd


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats",
        help="per-patch labels, tumor/tissue counts and ratios of slides",
        description="Cut slides into patches and write one row per patch: exact tumor, "
        "healthy and tissue pixel counts, label and ratios (see docs/numbers.md).",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (paired in order with --mask), or one cohort manifest .csv",
    )
    p.add_argument(
        "--mask",
        nargs="+",
        default=None,
        metavar="MASK",
        help="one mask per image: a label image or QuPath annotations (.geojson)",
    )
    p.add_argument("--patch-size", type=pixels, required=True, metavar="N")
    p.add_argument("--stride", type=pixels, default=None, metavar="N", help="default: patch size")
    p.add_argument("--origin", type=offset, nargs=2, default=(0, 0), metavar=("Y", "X"))
    p.add_argument("--keep-edges", action="store_true", help="keep partial patches (right/bottom)")
    p.add_argument(
        "--mask-map",
        default=None,
        metavar="SPEC",
        help="mask values -> classes for every slide: VALUE=CLASS pairs "
        '(e.g. "0=background,255=tumor") or a preset: default (0=background,1=healthy,'
        "2=tumor), binary (0=background,1=tumor), binary255 (0=background,255=tumor). "
        "GeoJSON masks map class names: Tumor=tumor,Stroma=healthy,Other=healthy. "
        "Default: default — a 0/1 mask is read as healthy tissue without tumor, never "
        "guessed to be binary",
    )
    p.add_argument("--tissue", choices=TISSUE_MODES, default="auto")
    p.add_argument(
        "--tissue-threshold",
        type=finite_float,
        default=None,
        metavar="T",
        help="brightness threshold for intensity tissue (default: Otsu)",
    )
    p.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default=None,
        help="image background for intensity tissue (default: the slide's: bright for "
        "brightfield whole-slide images, else dark)",
    )
    p.add_argument(
        "--channels", nargs="+", default=None, metavar="CH", help="channel names or indices"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        type=scheduler_address,
        default=None,
        metavar="ADDRESS",
        help="dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    where.add_argument(
        "--workers", type=positive_int, default=None, metavar="N", help="start a local cluster"
    )
    add_attribute_arguments(p, "extra per-patch attributes")
    p.add_argument("--geojson", default=None, metavar="PATH", help="also export for QuPath")
    add_geojson_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="TABLE", help=".parquet, .csv or .csv.gz")
    return p


def run(args: argparse.Namespace) -> int:
    from ..patches.table import settings_grid, table_metadata

    # Fail on a bad output name before any work; never overwrite an input or a folder.
    table_format(args.out)
    inputs = [*args.images, *(args.mask or [])]
    check_output(args.out, inputs=inputs)
    if args.geojson:
        check_output(args.geojson, inputs=inputs)
        check_output(args.geojson, inputs=[args.out], role="--out (the table)")
    if args.geojson_classes == "outcome" or args.errors_only:
        raise PatchwiseError(
            "--geojson-classes outcome and --errors-only need predictions, which a stats "
            "table has none of",
            hint="use 'patchwise predict --geojson', or label or group classes",
        )
    if args.workers is not None and args.workers < 1:
        raise PatchwiseError(f"--workers must be at least 1, got {args.workers}")
    jobs = _jobs(args.images, args.mask)
    _check_unique_names(jobs)
    settings = _settings(args)
    mask_map = settings.mask_map
    grid = settings_grid(settings, args.origin)  # checks the geometry before any work
    options = {"origin": tuple(args.origin), "channels": args.channels}
    extra = {"kinds": args.attributes, "border_margin": args.border_margin}
    tables, pixel_sizes = [], {}
    with dask_client(args.scheduler, args.workers) as client:
        pending = []  # (position, future) of slides counted whole on a worker
        for i, (image, mask, _split, name) in enumerate(jobs, start=1):
            slide = open_headless(image, mask, mask_map, name)
            pixel_sizes[slide.name] = slide.pixel_size  # the GeoJSON's µm measurements
            grid.check_fits(*slide.shape[1:], path=image)  # before anything is allocated
            if client is not None and not _picklable(slide):
                # This reader's arrays hold open files and cannot be shipped chunk by
                # chunk: open and count the whole slide on one worker instead.
                future = client.submit(
                    stats_for_slide, image, mask, name, settings, options, (extra, i - 1),
                    pure=False,
                )  # fmt: skip
                pending.append((len(tables), future))
                tables.append(None)
            else:
                desc = f"[{i}/{len(jobs)}] {slide.name}"
                # dask's local callbacks do not see a distributed cluster's tasks.
                with tqdm_progress(desc, unit="task", disable=args.quiet) as bar:
                    bar = None if client is not None else bar
                    table = count_slide(slide, settings, options, extra, i - 1, progress=bar)
                tables.append(table)
        for position, future in pending:
            tables[position] = future.result()
    _check_same_channels(tables, jobs, args.attributes)
    for table, (_, _, split, _) in zip(tables, jobs, strict=True):
        if split is not None:
            table["split"] = split
    out = pd.concat(tables, ignore_index=True)
    _warn_if_no_tumor(out, mask_map)
    # the grid and settings travel with the table (parquet metadata, docs/numbers.md)
    write_table(out, args.out, metadata=table_metadata(grid, settings))
    if args.geojson:
        write_patches(
            out, args.geojson, scheme=args.geojson_classes, tau=args.tau, pixel_size=pixel_sizes
        )
    n_slides = len(jobs)
    print(f"{len(out)} patches from {n_slides} slide{'s' * (n_slides != 1)} -> {args.out}")
    return 0


def _settings(args: argparse.Namespace):
    """The command's :class:`~napari_patchwise.settings.PatchSettings`."""

    return PatchSettings(
        patch_size=args.patch_size,
        stride=args.stride,
        tissue=args.tissue,
        tissue_threshold=args.tissue_threshold,
        background=args.background,
        # One map for the whole cohort, decided by the user (never guessed per slide).
        mask_map=str(as_mask_map(args.mask_map) or MaskMap.default()),
        keep_edges=args.keep_edges,
    )


def stats_for_slide(image, mask, name, settings, options, attributes=None) -> pd.DataFrame:
    """Open one slide and count its patches with the local threaded scheduler.

    Runs as a task on a distributed worker, so it must be a picklable top-level function.
    ``attributes`` is ``(extra, slide_index)`` as :func:`count_slide` takes them.
    """
    import dask

    extra, index = attributes or ({"kinds": ()}, 0)
    slide = open_headless(image, mask, settings.mask_map, name)
    with dask.config.set(scheduler="threads"):
        return count_slide(slide, settings, options, extra, index)


def count_slide(slide, settings, options, extra, index, progress=None) -> pd.DataFrame:
    """The patch table of one slide (:func:`~napari_patchwise.patches.table.build_patch_table`),
    with the extra attributes ``extra["kinds"]`` joined; ``options``: origin and channels."""
    from ..patches.table import build_patch_table

    return build_patch_table(
        slide,
        settings,
        attributes=extra["kinds"],
        border_margin=extra.get("border_margin"),
        slide_index=index,
        progress=progress,
        **options,
    ).frame


def _check_same_channels(tables, jobs, kinds) -> None:
    """Intensity columns are named by channel: every slide must have the same ones."""
    if "intensity" not in kinds or len(tables) < 2:
        return
    first = list(tables[0].columns)
    names = [c for c in first if c.startswith(("mean_", "std_"))]
    for table, (image, *_rest) in zip(tables[1:], jobs[1:], strict=True):
        if list(table.columns) != first:
            raise PatchwiseError(
                "slides have different channels, so their mean_/std_ intensity columns differ",
                path=image,
                hint=f"the first slide's columns are {', '.join(names)}; give slides "
                "with the same channel names, or drop intensity from --attributes",
            )


def open_headless(image, mask, mask_map: str, name: str | None):
    """Open a slide for counting: level 0 only, the mask's values checked as it is read.

    Nothing is written (no display pyramid) and the mask is decoded once: its values are
    checked in the same pass that counts them.
    """

    slide = open_slide(image, mask=mask, mask_map=mask_map, pyramid=False, check_mask_values=False)
    return slide if name is None else dataclasses.replace(slide, name=name)


def _warn_if_no_tumor(table: pd.DataFrame, mask_map: str) -> None:
    """Say so when no slide has a tumor pixel: it is usually a wrong mask map."""

    if len(table) and int(table["n_tumor"].sum()) == 0:
        print(
            f"warning: no tumor pixel in any slide under the mask map {mask_map}; every "
            "patch is labelled 0 — if your masks mark tumor with 1 (or 255), pass "
            "--mask-map binary (or binary255)",
            file=sys.stderr,
        )


def _picklable(slide) -> bool:
    try:
        pickle.dumps((slide.levels[0], slide.mask))
    except Exception:  # noqa: BLE001 - any failure means "cannot ship this graph"
        return False
    return True


def _jobs(
    images: list[str], masks: list[str] | None
) -> list[tuple[Path, Path, str | None, str | None]]:
    """(image, mask, split, slide id) from image/mask pairs or one manifest."""
    if any(i.lower().endswith(".csv") for i in images) and masks:
        raise PatchwiseError(
            "a cohort manifest names each slide's mask itself; --mask is for image files",
            path=next(i for i in images if i.lower().endswith(".csv")),
            hint="drop --mask, or give image files instead of the manifest",
        )
    if len(images) == 1 and images[0].lower().endswith(".csv") and not masks:
        return [
            (e.image, e.mask, e.split, e.slide) for e in read_manifest(images[0], require_splits=())
        ]
    if not masks:
        raise PatchwiseError(
            "labels need a tumor mask for every image",
            path=images[0],
            hint="pass --mask MASK (one per image) or a cohort manifest .csv",
        )
    if len(masks) != len(images):
        raise PatchwiseError(
            f"{len(images)} image(s) but {len(masks)} mask(s)",
            hint="give one --mask per image, in the same order",
        )
    return [(Path(i), Path(m), None, None) for i, m in zip(images, masks, strict=True)]


def _check_unique_names(jobs) -> None:
    seen: dict[str, Path] = {}
    files: set[Path] = set()
    for image, _, _, given in jobs:
        if Path(image).resolve() in files:
            raise PatchwiseError(
                "the same image is given twice", path=image, hint="list each slide once"
            )
        files.add(Path(image).resolve())
        name = given or slide_name(Path(image))
        if name in seen and Path(image) != seen[name]:
            raise PatchwiseError(
                f"two images are both named slide {name!r} ({seen[name]} and {image})",
                hint="rename one, or list them in a manifest with distinct 'slide' ids",
            )
        seen[name] = Path(image)
