"""``patchwise train``: train a patch classifier on a cohort manifest.

Every :class:`~napari_patchwise.training.loop.TrainConfig` option is a flag (``--batch-size``,
``--eval-every``...), so the flags, the napari panel and ``config.json`` are the same
object. Ctrl-C stops after the current step and writes ``last.pt``; ``--resume``
continues exactly from there.

``--preset NAME`` fills in a recipe's values (``docs/presets.md``) beneath the flags given,
which always win. So that an explicit flag can be told from an untouched one, option flags
leave the namespace without the attribute when not given (``argparse.SUPPRESS``):
:func:`options_from_args` reads the options given, :func:`config_from_args` resolves them.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .._progress import tqdm_progress
from ..errors import PatchwiseError
from ..schema import BACKGROUNDS, TISSUE_MODES
from ..training.config import SELECT_CHOICES, TrainConfig, check_used
from ..training.encoder_presets import get_encoder_preset
from ..training.encoders import encoder_names_help
from ..training.loop import (
    DEVICES,
    PRECISIONS,
    TrainCallbacks,
    check_inputs,
    passive_openmp_waits,
    train,
)
from ..training.methods import METHOD_LABELS, METHOD_NAMES
from ..training.models import MODEL_NAMES, is_model_name
from ..training.presets import PRESET_NAMES
from ..training.runs import LAST, read_metrics
from ._args import (
    finite_float,
    non_negative_float,
    non_negative_int,
    pixels,
    positive_finite_float,
    positive_int,
    probability,
    seed,
)

HELP = {
    "preset": "a recipe of option values beneath the flags given: paper (needs --weights) "
    "or cpu-quick; the defaults shown below are those without a preset (docs/presets.md)",
    "method": "training method",
    "tau": "tissue-ratio threshold that splits small and large tissue (the groups)",
    "attribute": "the spurious attribute of the groups: tissue_ratio (split at --tau), "
    "mean_<channel>, std_<channel>, border_fraction or slide_index (docs/attributes.md)",
    "attribute_threshold": "threshold of --attribute: attribute >= T is high (needed for "
    "any attribute but tissue_ratio)",
    "patch_size": "patch side in level-0 pixels",
    "stride": "distance between patches (default: the patch size)",
    "tissue": "where tissue comes from",
    "tissue_threshold": "brightness threshold for intensity tissue (default: Otsu)",
    "background": "dark (fluorescence, nonlinear microscopy) or bright (brightfield); "
    "default: each slide's own (bright for brightfield whole-slide images, else dark)",
    "keep_edges": "also keep the patches that run past the image's bottom or right edge "
    "(the part inside the image is read, the rest zero-padded)",
    "mask_map": "mask values (or GeoJSON class names) -> classes, e.g. "
    '"0=background,1=healthy,2=tumor" or "Tumor=tumor,Stroma=healthy"',
    "model": "backbone: resnet50, resnet18, smallcnn, timm:NAME (any timm model) or an "
    "encoder preset (uni, uni2-h, virchow2, h-optimus-0, prov-gigapath; docs/encoders.md)",
    "weights": "local state dict of the backbone (torchvision ImageNet for the ResNets; "
    ".safetensors/.bin/.pth for a timm encoder); never downloaded",
    "channels": "a timm encoder's R,G,B from the slides' channels: names or indices, a+b "
    "for their mean (default: RGB as RGB; docs/encoders.md)",
    "input_size": "input side of a timm:NAME encoder (default: the architecture's)",
    "steps": "optimisation steps",
    "batch_size": "patches per batch (GERNE: per each of its two batches)",
    "lr": "SGD learning rate",
    "weight_decay": "SGD weight decay",
    "momentum": "SGD momentum",
    "beta": "GERNE extrapolation factor, in [-1, beta_max)",
    "c": "GERNE debiasing strength of the less-biased batch, in (0, 1]",
    "eta": "GroupDRO step size of the group weights",
    "jtt_fraction": "JTT: the first-stage ERM model's share of --steps (docs/shortcuts.md)",
    "jtt_up": "JTT: how many times the first stage's misclassified training patches count",
    "infer_fraction": "gerne-inferred: t, the share of each class with the lowest probability "
    "for its own class under a biased ERM model, the pseudo-minority group",
    "class_balanced": "ERM with class-balanced batches",
    "augment": "flips and 90-degree rotations of training patches",
    "freeze_bn": "keep the BatchNorm statistics of --weights fixed (SubpopBench's default; "
    "--preset paper sets it)",
    "gerne_train_bn": "let GERNE with beta > 0 train a ResNet's BatchNorm on batch statistics "
    '(refused otherwise: docs/methods.md, "BatchNorm")',
    "eval_every": "validate every N steps",
    "select": "validation metric that selects the best checkpoint (val_worst_slice: the "
    "worst accuracy over the slices of --slices, for cohorts without known groups)",
    "slices": "patchwise discover's --out on the validation split: adds the worst slice's "
    "accuracy (val_worst_slice) to every evaluation (docs/shortcuts.md)",
    "threshold": "decision threshold on the tumor probability",
    "seed": "random seed",
    "device": "auto: CUDA when available",
    "precision": "auto: bf16 (or fp16) autocast on CUDA, fp32 on the CPU",
    "channels_last": "channels-last memory format on CUDA",
    "num_workers": "DataLoader worker processes",
    "num_threads": "torch intra-op threads (default: one per usable core)",
    "eval_batch_size": "patches per batch when evaluating",
    "cache_dir": "patch cache folder (default: .patchwise-cache beside the manifest)",
    "features": "train a linear head on this feature store (patchwise embed) instead of a "
    "whole model: seconds on a CPU; the head's checkpoints hold the full model "
    "(docs/features.md)",
    "resume": "continue the run in --out from its last.pt",
}
CHOICES = {"tissue": TISSUE_MODES, "background": BACKGROUNDS}
OPTIONAL_TYPES = {
    "slices": str,
    "stride": int,
    "tissue_threshold": float,
    "mask_map": str,
    "weights": str,
    "preset": str,
    "num_threads": int,
    "cache_dir": str,
    "features": str,
    "attribute_threshold": float,
    "channels": str,
    "input_size": int,
}


def model_name(text: str) -> str:
    """``--model``: a built-in model, ``timm:NAME`` or an encoder preset (its canonical name)."""

    if not is_model_name(text):
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}: {', '.join(MODEL_NAMES)}, or {encoder_names_help()}"
        )
    preset = get_encoder_preset(text)
    return preset.name if preset is not None else text


# Values no run can use stop at the parser (one line, exit 2). Ranges that depend on
# other options (GERNE's beta and c) are TrainConfig.validate()'s; floats not listed
# here are at least finite.
ARG_TYPES = {
    "tau": probability,
    "threshold": probability,
    "patch_size": pixels,
    "stride": pixels,
    "steps": positive_int,
    "jtt_up": positive_int,
    "batch_size": positive_int,
    "eval_batch_size": positive_int,
    "eval_every": positive_int,
    "lr": positive_finite_float,
    "weight_decay": non_negative_float,
    "momentum": non_negative_float,
    "seed": seed,
    "num_workers": non_negative_int,
    "num_threads": positive_int,
    "input_size": pixels,
    "model": model_name,
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    choices = dict(
        CHOICES,
        preset=PRESET_NAMES,
        method=METHOD_NAMES,
        select=SELECT_CHOICES,
        device=DEVICES,
        precision=PRECISIONS,
    )
    p = subparsers.add_parser(
        "train",
        help=f"train a patch classifier ({', '.join(METHOD_LABELS.values())})",
        description="Train on the train split of a cohort manifest, select the best "
        "checkpoint on the val split, report test metrics (see docs/methods.md).",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="cohort CSV: image, mask, split[, slide]")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    for field in TrainConfig.option_fields():
        if field.name in ("manifest", "out"):
            continue
        p.add_argument("--" + field.name.replace("_", "-"), **_flag_kwargs(field, choices))
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (only a folder that is recognisably a run: "
        "its config.json and nothing but run files); without it a folder holding any run "
        "file is refused",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _flag_kwargs(field, choices: dict) -> dict:
    """``add_argument`` keywords of one option: not given, it leaves no attribute."""
    kwargs = {"default": argparse.SUPPRESS, "help": HELP.get(field.name, "")}
    if isinstance(field.default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    elif field.name in choices:
        kwargs["choices"] = choices[field.name]
    else:
        kind = OPTIONAL_TYPES.get(field.name, type(field.default))
        kwargs["type"] = ARG_TYPES.get(field.name, finite_float if kind is float else kind)
        kwargs["metavar"] = field.name.split("_")[-1].upper()
    if kwargs["help"] and field.default is not None:
        shown = f"--{field.name.replace('_', '-')}" if field.default is True else field.default
        shown = f"--no-{field.name.replace('_', '-')}" if field.default is False else shown
        # %% : argparse %-formats help strings
        kwargs["help"] += f" (default: {shown})".replace("%", "%%")
    return kwargs


def options_from_args(args: argparse.Namespace) -> dict:
    """The training options given as flags (``manifest`` and ``out`` included).

    Flags not given are absent, so that a preset's values (and otherwise the
    :class:`TrainConfig` defaults) fill them in: pass the result to
    ``TrainConfig.from_options``.
    """
    names = [f.name for f in TrainConfig.option_fields()]
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` the parsed flags describe (a preset resolved beneath them)."""
    config = TrainConfig.from_options(options_from_args(args))
    if config.features is not None:  # a head run's model and patches are the store's
        from ..training.head import with_store_settings

        config = with_store_settings(config)  # (sweep compares configs built here)
    return config


def check_args(args: argparse.Namespace, *, device: bool = True):
    """Every check ``patchwise train`` can make before cutting a patch; the config.

    Runs first, so that a run that cannot work is refused in seconds rather than after
    hours of patch caches: the values (:meth:`TrainConfig.validate`, the method's own
    ranges and needs included), flags that would have no effect (another method's
    hyperparameter, patch settings of a head run: :func:`train_config.check_used`), and
    the inputs (manifest, weights file, device: :func:`train.check_inputs`).
    """

    given = options_from_args(args)
    # before the feature store is read: what has no effect depends on the flags only
    check_used(TrainConfig.from_options(given), [n for n in given if n not in ("manifest", "out")])
    config = config_from_args(args)
    config.validate()
    check_inputs(config, device=device)
    return config


def run(args: argparse.Namespace) -> int:
    passive_openmp_waits()  # before the checks load torch (train.py, "CPU threads")
    config = check_args(args)
    # "stepped": a training step has run, so a Ctrl-C can end the run cleanly by writing
    # last.pt after the current step. Before that (cache preparation) there is nothing to
    # save: the interrupt is raised at once and the atomic cache writes clean up.
    interrupted = {"flag": False, "stepped": False}

    class CLICallbacks(TrainCallbacks):
        def __init__(self, prepare, steps):
            self.prepare_bar, self.step_bar = prepare, steps
            self.last_eval = ""

        def on_prepare(self, done, total):
            self.prepare_bar(done, total)

        def on_step(self, step, total, loss):  # noqa: ARG002 - the callback's signature
            interrupted["stepped"] = True
            self.step_bar(step, total)

        def on_eval(self, step, metrics):
            print(
                f"step {step}: loss {metrics.get('loss', float('nan')):.4f}  "
                f"val WGA {metrics['val_wga']:.4f}  val BCA {metrics['val_bca']:.4f}",
                file=sys.stderr,
            )

        def should_stop(self):
            return interrupted["flag"]

    def on_sigint(signum, frame):  # noqa: ARG001
        if interrupted["flag"] or not interrupted["stepped"]:  # stop at once
            raise KeyboardInterrupt
        interrupted["flag"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with (
            tqdm_progress("preparing patches", unit="", disable=args.quiet) as prepare,
            tqdm_progress("training", unit="step", disable=args.quiet) as steps,
        ):
            run_dir = train(config, CLICallbacks(prepare, steps), overwrite=args.overwrite)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted["flag"]:
        print(
            f"patchwise train: interrupted; {run_dir / LAST} written — continue with --resume",
            file=sys.stderr,
        )
        return 130
    _print_group_warnings(run_dir)
    print(run_dir)
    return 0


def _print_group_warnings(run_dir) -> None:
    """The run's empty/tiny validation and test groups (metrics.json "warnings"), on stderr."""

    try:
        warnings = read_metrics(run_dir).get("warnings")
    except PatchwiseError:  # a data-parallel worker rank writes no metrics.json
        return
    for line in warnings or []:
        print(f"patchwise train: warning: {line}", file=sys.stderr)
