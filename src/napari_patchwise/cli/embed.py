"""``patchwise embed``: one feature vector per patch of a cohort (or an image).

The vectors (float16) and the patch table go into a feature store (``FEATURES.zarr``,
``docs/features.md``) that ``patchwise train --features`` trains linear heads on in
seconds. The store is written as ``FEATURES.zarr.partial`` chunk by chunk; an interrupted
embed continues when run again with the same inputs (other inputs are refused).
"""

from __future__ import annotations

import argparse
import sys

from .._atomic import check_output
from .._compute import dask_client
from .._progress import tqdm_progress
from ..cohort.manifest import read_manifest
from ..errors import PatchwiseError
from ..io.feature_store import FEATURE_STORE, LAYERS, partial_path
from ..schema import BACKGROUNDS, TISSUE_MODES
from ..settings import DEFAULT_PATCH_SIZE, PatchSettings
from ..training.encoder_presets import get_encoder_preset
from ..training.encoders import encoder_names_help, is_encoder_name
from ..training.inference import DEFAULT_BATCH_SIZE
from ..training.loop import passive_openmp_waits, resolve_device
from ..training.models import BATCHNORM_MODELS, check_weights_file
from ..training.runs import resolve_checkpoint, run_files
from ._args import pixels, positive_int, scheduler_address


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "embed",
        help="one feature vector per patch (for train --features)",
        description="Pass every patch of a cohort manifest (or one image) through a trained "
        "run's model, or a torchvision backbone, up to its penultimate layer, and store the "
        "vectors with the patch table (docs/features.md). Resumable: rerun to continue.",
    )
    p.add_argument("target", metavar="MANIFEST|IMAGE", help="cohort CSV, or one image file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", metavar="RUN_DIR", help="a run directory (its best.pt) or checkpoint"
    )
    source.add_argument(
        "--backbone",
        type=backbone_name,
        metavar="NAME",
        help=f"a backbone instead of a run: {', '.join(BATCHNORM_MODELS)} (torchvision), "
        f"{encoder_names_help()} (docs/encoders.md)",
    )
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="local state dict of --backbone (.safetensors, .bin, .pth); never downloaded",
    )
    p.add_argument(
        "--channels", metavar="SPEC",
        help="a timm encoder's R,G,B from the slide's channels: names or indices, a+b "
        "for their mean (default: RGB as RGB; docs/encoders.md)",
    )  # fmt: skip
    p.add_argument(
        "--input-size", type=pixels, default=None, metavar="PX",
        help="input side of a timm:NAME encoder (default: the architecture's)",
    )  # fmt: skip
    p.add_argument("--layer", choices=LAYERS, default="penultimate", help="which features")
    p.add_argument("--mask", metavar="MASK", help="the image's mask (labels in the table)")
    p.add_argument(
        "--patch-size", type=pixels, default=None,
        help="with --backbone (default: 64; a preset encoder: the side covering its "
        "training field of view at the slides' pixel size)",
    )  # fmt: skip
    p.add_argument("--stride", type=pixels, default=None, help="with --backbone")
    p.add_argument(
        "--tissue", choices=TISSUE_MODES, default=None, help="with --backbone (default: auto)"
    )
    p.add_argument(
        "--background", choices=BACKGROUNDS, default=None, help="with --backbone (default: dark)"
    )
    p.add_argument("--mask-map", metavar="SPEC", help="with --backbone, e.g. binary")
    p.add_argument("--cache-dir", metavar="DIR", help="patch cache (default: beside the input)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="B")
    p.add_argument(
        "--chunk-rows", type=positive_int, default=None, metavar="N",
        help="patches per stored chunk (default: about 4 MiB of vectors)",
    )  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--scheduler", type=scheduler_address, metavar="ADDRESS",
        help="one task per slide on a dask.distributed cluster (shared file system)",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing feature store (and an unfinished one of other inputs); "
        "a folder that is not a feature store is never replaced",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="FEATURES.zarr")
    return p


#: The patch flags of ``--backbone`` and their defaults (a run's own settings otherwise).
#: ``patch_size`` stays None: 64, or a preset encoder's field of view (see ``run``).
BACKBONE_DEFAULTS = {
    "patch_size": None, "stride": None, "tissue": "auto", "background": "dark",
    "mask_map": None,
}  # fmt: skip


def backbone_name(text: str) -> str:
    """``--backbone``: a torchvision ResNet, ``timm:NAME`` or an encoder preset."""

    if text in BATCHNORM_MODELS or is_encoder_name(text):
        preset = get_encoder_preset(text)
        return preset.name if preset is not None else text
    raise argparse.ArgumentTypeError(
        f"unknown backbone {text!r}: {', '.join(BATCHNORM_MODELS)}, or {encoder_names_help()}"
    )


def _check_args(args: argparse.Namespace) -> None:
    """Every check ``patchwise embed`` can make before cutting a patch; runs first.

    Flags with no effect (a patch flag with ``--checkpoint``: the run's settings are
    used), the weights file, the device (here, unless ``--scheduler`` sends the work
    elsewhere), the manifest (no patient in two splits) and the output.
    """

    for name, default in BACKBONE_DEFAULTS.items():
        given = getattr(args, name) is not None
        if given and args.checkpoint:
            flag = "--" + name.replace("_", "-")
            raise PatchwiseError(
                f"{flag} has no effect with --checkpoint",
                hint="the run's own patch settings are used; drop it",
            )
        if not given:
            setattr(args, name, default)
    _check_inputs(args)
    manifest = args.target.lower().endswith(".csv")
    if manifest and args.mask:
        raise PatchwiseError(
            "a cohort manifest names each slide's mask itself; --mask is for an image",
            path=args.target,
            hint="drop --mask",
        )
    if (args.channels or args.input_size) and not is_encoder_name(args.backbone):
        raise PatchwiseError(
            "--channels and --input-size go with a timm encoder",
            hint="give --backbone timm:NAME or a preset, or drop them",
        )
    if args.weights and not args.backbone:
        raise PatchwiseError("--weights goes with --backbone", hint="a run's weights are its own")
    inputs = [args.target, args.mask, args.weights]
    if args.checkpoint:
        inputs += [args.checkpoint, *run_files(resolve_checkpoint(args.checkpoint))]
    check_output(args.out, inputs=inputs, kind=FEATURE_STORE, overwrite=args.overwrite)


def _check_inputs(args: argparse.Namespace) -> None:
    """The weights file, the device and the manifest, before any patch is cut."""
    if args.weights and args.backbone:
        check_weights_file(args.weights, args.backbone)
    if args.scheduler is None:  # on a cluster the workers' devices count, not this one's
        resolve_device(args.device)
    if args.target.lower().endswith(".csv"):
        read_manifest(args.target, require_splits=())


def run(args: argparse.Namespace) -> int:
    from ..training.embed import EmbedSource

    passive_openmp_waits()  # before torch loads (train.py, "CPU threads")
    _check_args(args)

    patch_size = DEFAULT_PATCH_SIZE if args.patch_size is None else args.patch_size
    settings = PatchSettings(
        patch_size, args.stride, args.tissue, None, args.background, args.mask_map
    )
    fit_scale = args.patch_size is None and get_encoder_preset(args.backbone or "") is not None
    source = EmbedSource(
        args.checkpoint,
        args.backbone,
        args.weights,
        args.layer,
        args.channels,
        args.input_size,
        fit_scale,
    )
    try:
        out = _embed(args, source, settings)
    except KeyboardInterrupt:
        partial = partial_path(args.out)
        if partial.exists():
            print(
                f"patchwise embed: {partial} keeps the chunks done; run the same command "
                "again to continue",
                file=sys.stderr,
            )
        raise
    print(out)
    return 0


def _embed(args: argparse.Namespace, source, settings):
    from ..training.embed import embed

    with (
        dask_client(args.scheduler, None) as client,
        tqdm_progress("preparing patches", unit="", disable=args.quiet) as prepare,
        tqdm_progress("embedding", unit="chunk", disable=args.quiet) as progress,
    ):
        out = embed(
            args.target,
            args.out,
            source,
            mask=args.mask,
            settings=settings,
            cache_dir=args.cache_dir,
            device=args.device,
            batch_size=args.batch_size,
            chunk_rows=args.chunk_rows,
            client=client,
            overwrite=args.overwrite,
            progress=progress,
            prepare_progress=prepare,
        )
    return out
