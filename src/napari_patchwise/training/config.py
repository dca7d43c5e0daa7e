"""The settings of a training run: :class:`TrainConfig` (the CLI flags and ``config.json``).

Kept apart from the loop (:mod:`.train`) so that what reads a run's settings — the run
directory (:mod:`.runs`), the dock's training form — needs neither torch nor the loop.
A config is flat on disk and on the command line (``"patch_size"``, ``--patch-size``)
and composed in memory: how slides are cut into patches is one
:class:`~napari_patchwise.settings.PatchSettings`, ``config.patch``.

Defaults
--------
The tumor paper (Asaad et al., arXiv 2511.13527) fine-tunes an ImageNet-pretrained
ResNet-50 and gives no optimiser settings; the GERNE paper (arXiv 2503.13236, App. F)
trains its ResNet-50 on Waterbirds/CelebA with SGD (momentum 0.9, lr 1e-4, weight decay
1e-2); frozen BatchNorm statistics are SubpopBench's default for pretrained backbones.
Without pretrained weights (this project never downloads any) such a small learning rate
barely moves a randomly initialised network, so the defaults here are lr 0.01 and weight
decay 1e-4 with momentum 0.9, which make the CPU planted-bias benchmark
(``benchmarks/planted_bias.py``) learn. ``preset="paper"`` (``--preset paper --weights
PATH``) sets those pretrained-ResNet-50 settings, ``preset="cpu-quick"`` the small-CNN
ones (:mod:`.presets`; every value's source: ``docs/presets.md``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, attribute_threshold
from ..schema import DEFAULT_THRESHOLD
from ..settings import PatchSettings
from .encoders import encoder_names_help
from .inference import DEFAULT_BATCH_SIZE
from .methods import METHOD_NAMES, get_method, hyperparameters
from .methods.base import SGD_OPTIONS
from .models import BATCHNORM_MODELS, MODEL_NAMES, is_model_name
from .presets import PRESET_NAMES, get_preset, resolve

SELECT_METRICS: tuple[str, ...] = ("val_wga", "val_bca")
#: selection on the worst accuracy over the slices ``patchwise discover`` found on the
#: validation split (``--slices``): for cohorts without known groups (docs/shortcuts.md)
WORST_SLICE = "val_worst_slice"
SELECT_CHOICES: tuple[str, ...] = (*SELECT_METRICS, WORST_SLICE)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# Samplers seed numpy with seed * 1000 + rank and torch with seed: keep both in range.
MAX_SEED = 2**32 // 1000 - 1
_PATCH_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PatchSettings))
#: What a head run (``features``) takes from its feature store or does not have: the
#: patches are the store's, the model its model, and a linear head has no BatchNorm and
#: no augmentation (vectors are not flipped).
HEAD_UNUSED: tuple[str, ...] = (
    *_PATCH_OPTIONS, "model", "weights", "freeze_bn", "gerne_train_bn", "augment"
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a training run depends on (the CLI flags and ``config.json``).

    How slides are cut into patches is a :class:`~napari_patchwise.settings.PatchSettings`
    (``patch``), declared once there; its fields are options of the run like any other:
    flags (``--patch-size``), ``config.json`` keys (``"patch_size"``, a flat file) and
    keys of :meth:`from_options` / :meth:`to_options`. Build a config from such flat
    options with :meth:`from_options`.

    See the module docstring for why ``lr`` and ``weight_decay`` differ from GERNE's (App. F).
    ``preset`` names the recipe whose values :meth:`from_options` filled in beneath the
    options given (:mod:`.presets`); the fields hold the resolved values.
    ``batch_size`` is the size of each batch; GERNE draws two such batches per step
    (``batch_size / 2`` per class each).
    The groups are ``2 * label + (attribute >= threshold)``: ``attribute`` is
    ``tissue_ratio`` split at ``tau`` by default (the paper); any other attribute
    (``docs/attributes.md``) needs ``attribute_threshold`` (:attr:`group_threshold`).
    """

    manifest: str
    out: str
    preset: str | None = None
    method: str = "erm"
    tau: float = DEFAULT_TAU
    attribute: str = DEFAULT_ATTRIBUTE
    attribute_threshold: float | None = None
    patch: PatchSettings = field(default_factory=PatchSettings)
    model: str = "resnet50"
    weights: str | None = None
    channels: str | None = None
    input_size: int | None = None
    steps: int = 2000
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    beta: float = 1.0
    c: float = 0.5
    eta: float = 0.01
    jtt_fraction: float = 0.2
    jtt_up: int = 10
    infer_fraction: float = 0.2
    class_balanced: bool = False
    augment: bool = True
    freeze_bn: bool = False
    gerne_train_bn: bool = False
    eval_every: int = 100
    select: str = "val_wga"
    slices: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    eval_batch_size: int = DEFAULT_BATCH_SIZE
    cache_dir: str | None = None
    features: str | None = None
    resume: bool = False

    # -- the flat options: flags, config.json, the dock's fields ---------------------------
    @classmethod
    def option_fields(cls) -> tuple[dataclasses.Field, ...]:
        """Every option in flag order: ``patch`` expanded in place into its fields."""
        fields: list[dataclasses.Field] = []
        for f in dataclasses.fields(cls):
            fields.extend(dataclasses.fields(PatchSettings) if f.name == "patch" else [f])
        return tuple(fields)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **more: Any) -> TrainConfig:
        """A config from flat options (``patch_size=16, steps=40...``), as the flags name them.

        With ``preset=NAME`` the preset's values fill in every option not given
        (:func:`.presets.resolve`): explicit options win.

        Raises
        ------
        PatchwiseError
            An option or preset that does not exist. Missing ``manifest``/``out`` is a
            TypeError.
        """
        values = {**(options or {}), **more}
        unknown = _unknown_options(values)
        if unknown:
            raise PatchwiseError(f"unknown training option(s) {', '.join(unknown)}")
        values = resolve(values)
        patch = PatchSettings(**{k: v for k, v in values.items() if k in _PATCH_OPTIONS})
        own = {k: v for k, v in values.items() if k not in _PATCH_OPTIONS}
        return cls(patch=patch, **own)

    def to_options(self) -> dict[str, Any]:
        """The flat options in flag order (the keys of ``config.json``)."""
        options: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "patch":
                options.update(dataclasses.asdict(self.patch))
            else:
                options[f.name] = getattr(self, f.name)
        return options

    def to_json(self) -> str:
        return json.dumps(self.to_options(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> TrainConfig:
        """From JSON text or a ``config.json`` path (unknown keys are an error)."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        data = json.loads(text)
        unknown = _unknown_options(data)
        if unknown:
            raise PatchwiseError(f"unknown training option(s) {', '.join(unknown)} in config")
        return cls.from_options(data)

    @property
    def group_threshold(self) -> float:
        """The attribute's threshold of the groups: tau for ``tissue_ratio``, else
        ``attribute_threshold`` (:func:`groups.attribute_threshold`; checked there)."""

        return attribute_threshold(self.attribute, self.attribute_threshold, self.tau)

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse options that cannot work, before any data is read."""
        # NaN fails every comparison below only by luck of how each is written, and inf
        # passes several: refuse both for every real-valued option first
        for name, value in self.to_options().items():
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + name.replace("_", "-")
                raise PatchwiseError(f"{flag} must be a finite number, got {value}")
        checks = (*self._name_checks(), *self._weights_checks(), self._batchnorm_check())
        for ok, message, hint in checks:
            if not ok:
                raise PatchwiseError(message, hint=hint)

        get_method(self.method).check_options(self)  # eta, c, beta >= -1, dfr's --features
        self.patch.validate()
        for ok, message, hint in self._range_checks():
            if not ok:
                raise PatchwiseError(message, hint=hint)
        self._check_attribute()
        if self.method == "gerne" and self.batch_size % 2:
            raise PatchwiseError(
                f"GERNE draws batch_size/2 patches per class; batch size {self.batch_size} is odd",
                hint="use an even --batch-size",
            )

    def _check_attribute(self) -> None:
        """The attribute is one patchwise computes, with a usable threshold."""
        from ..patches.attributes import column_kind

        if not isinstance(self.attribute, str) or not self.attribute:
            raise PatchwiseError(f"--attribute must be a column name, got {self.attribute!r}")
        column_kind(self.attribute)  # channels are checked when the slides are read
        _ = self.group_threshold

    def _name_checks(self) -> list[tuple[bool, str, str]]:
        """``(ok, message, hint)`` for every option that names one of a list."""

        not_builtin = self.model not in MODEL_NAMES

        def one_of(name: str, choices: tuple[str, ...], what: str, hint: str = ""):
            value = getattr(self, name)
            return (value in choices, f"unknown {what} {value!r}", hint or ", ".join(choices))

        return [
            (
                self.preset is None or self.preset in PRESET_NAMES,
                f"unknown preset {self.preset!r}",
                f"one of {', '.join(PRESET_NAMES)}",
            ),
            one_of("method", METHOD_NAMES, "method", f"one of {', '.join(METHOD_NAMES)}"),
            (
                is_model_name(self.model),
                f"unknown model {self.model!r}",
                f"one of {', '.join(MODEL_NAMES)}, or {encoder_names_help()}",
            ),
            (
                (self.channels is None and self.input_size is None) or not_builtin,
                "--channels and --input-size go with a timm encoder --model",
                "give --model timm:NAME or an encoder preset, or drop them",
            ),
            *_selection_checks(self),
            one_of("device", DEVICES, "device", "auto, cpu or cuda"),
            one_of("precision", PRECISIONS, "precision"),
        ]

    def _weights_checks(self) -> list[tuple[bool, str, str]]:
        """``(ok, message, hint)``: what needs pretrained weights has them (docs/presets.md)."""
        resnet = self.model != "smallcnn"
        paper = self.preset is not None and get_preset(self.preset).needs_weights
        return [
            (
                self.weights is None or resnet,
                "pretrained weights apply to the ResNet models only",
                "use --model resnet18 or resnet50, or drop --weights",
            ),
            (
                not paper or resnet,
                f"--preset {self.preset} fine-tunes a pretrained ResNet; smallcnn has no "
                "pretrained weights",
                "use --preset cpu-quick for smallcnn",
            ),
            (
                not paper or self.weights is not None,
                f"--preset {self.preset} needs --weights PATH, a local torchvision "
                f"{self.model} state dict (ImageNet); patchwise never downloads weights",
                'where the internet is reachable run python -c "import torch, torchvision; '
                f"torch.save(torchvision.models.{self.model}(weights='IMAGENET1K_V1')"
                f".state_dict(), '{self.model}.pt')\" and copy {self.model}.pt here "
                "(docs/presets.md)",
            ),
            (
                not self.freeze_bn or self.weights is not None,
                "--freeze-bn needs --weights: the BatchNorm statistics of a randomly "
                "initialised network are 0 and 1, there is nothing to keep",
                "pass --weights PATH (a pretrained ResNet state dict), or drop --freeze-bn",
            ),
        ]

    def _batchnorm_check(self) -> tuple[bool, str, str]:
        """GERNE with beta > 0 and batch statistics: refused unless ``gerne_train_bn``.

        beta > 0 gives the biased batch a negative weight; with training-mode BatchNorm
        every output depends on the whole batch, and GERNE's loss ran away in our runs
        even with both batches in one forward pass (docs/methods.md, "BatchNorm").
        """

        risky = self.method == "gerne" and self.beta > 0 and self.model in BATCHNORM_MODELS
        risky = risky and self.features is None  # a linear head has no BatchNorm
        return (
            not risky or self.freeze_bn or self.gerne_train_bn,
            f"GERNE with beta > 0 on {self.model} needs frozen BatchNorm statistics: with "
            "batch statistics its loss runs away (the biased batch has a negative weight; "
            'docs/methods.md, "BatchNorm")',
            "pass --weights PATH --freeze-bn (as --preset paper does), use --model smallcnn "
            "(GroupNorm) or --beta 0 or below, or --gerne-train-bn to train so anyway",
        )

    def _range_checks(self) -> list[tuple[bool, str, str]]:
        """``(ok, message, hint)`` for every numeric option's range."""
        return [
            (0.0 <= self.tau <= 1.0, f"tau={self.tau} is outside [0, 1]", "e.g. --tau 0.1"),
            (self.steps > 0, f"steps must be positive, got {self.steps}", "e.g. --steps 2000"),
            (
                self.batch_size > 1,
                f"batch size must be at least 2, got {self.batch_size}",
                "e.g. 32",
            ),
            (
                self.eval_every > 0,
                f"eval_every must be positive, got {self.eval_every}",
                "e.g. 100",
            ),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}", "e.g. --lr 0.01"),
            (
                self.weight_decay >= 0,
                f"weight decay must be >= 0, got {self.weight_decay}",
                "e.g. --weight-decay 1e-4",
            ),
            (
                0 <= self.momentum < 1,
                f"momentum must be in [0, 1), got {self.momentum}",
                "e.g. --momentum 0.9",
            ),
            (
                0 <= self.threshold <= 1,
                f"threshold={self.threshold} is outside [0, 1]",
                "e.g. --threshold 0.5",
            ),
            (
                self.eval_batch_size > 0,
                f"eval batch size must be positive, got {self.eval_batch_size}",
                "e.g. --eval-batch-size 256",
            ),
            (
                self.num_workers >= 0,
                f"num_workers must be >= 0, got {self.num_workers}",
                "0 loads batches in the training process",
            ),
            (
                self.num_threads is None or self.num_threads > 0,
                f"num_threads must be positive, got {self.num_threads}",
                "e.g. --num-threads 4, or leave it out",
            ),
            (
                0 <= self.seed <= MAX_SEED,
                f"seed must be in [0, {MAX_SEED}], got {self.seed}",
                "e.g. --seed 0",
            ),
        ]


def selection_metrics(config: TrainConfig) -> tuple[str, ...]:
    """The validation metrics each evaluation records and keeps a best checkpoint of:
    val WGA and BCA, and the worst slice's accuracy when ``config.slices`` is given."""
    return (*SELECT_METRICS, WORST_SLICE) if config.slices is not None else SELECT_METRICS


def _selection_checks(config: TrainConfig) -> list[tuple[bool, str, str]]:
    """``(ok, message, hint)`` of ``--select`` and ``--slices``."""
    return [
        (
            config.select in SELECT_CHOICES,
            f"unknown selection metric {config.select!r}",
            ", ".join(SELECT_CHOICES),
        ),
        (
            config.select != WORST_SLICE or config.slices is not None,
            "--select val_worst_slice needs --slices",
            "give the --out of patchwise discover run on the validation split",
        ),
    ]


def _unknown_options(names: Mapping[str, Any]) -> list[str]:
    known = {f.name for f in TrainConfig.option_fields()}
    return sorted(set(names) - known)


def unused_options(config: TrainConfig, names: Iterable[str]) -> dict[str, str]:
    """Which of the options ``names`` have no effect in the run ``config`` describes, and why.

    Returns ``{option: the flag that makes it unused}``, e.g. ``{"c": "--method erm"}``:
    another method's hyperparameter (:attr:`Method.hyperparameters
    <napari_patchwise.training.methods.Method.hyperparameters>`), the SGD options of a method
    not trained by steps (DFR), the patch and model options of a head run
    (:data:`HEAD_UNUSED`), ``tau`` when another attribute forms the groups. The CLI
    refuses such flags (and sweep axes) rather than ignore them.
    """

    method = get_method(config.method)
    own = set(method.hyperparameters)
    others = {o for names_ in hyperparameters().values() for o in names_} - own
    unused: dict[str, str] = {}
    for name in names:
        if name in others or (not method.sgd and name in SGD_OPTIONS):
            unused[name] = f"--method {config.method}"
        elif config.features is not None and name in HEAD_UNUSED:
            unused[name] = "--features"
        elif name == "tau" and config.attribute != "tissue_ratio":
            unused[name] = f"--attribute {config.attribute}"
    return unused


def check_used(
    config: TrainConfig, names: Iterable[str], *, label: Callable[[str], str] | None = None
) -> None:
    """Refuse the first of the options ``names`` that has no effect (:func:`unused_options`).

    ``label(name)`` is how the message names an option (default: its flag,
    ``--patch-size``; ``patchwise sweep`` names its axes ``--grid c``).

    Raises
    ------
    PatchwiseError
        One line: which option has no effect with which other, and what to do.
    """

    # what the method needs comes first: "dfr needs --features" before "--lr unused"
    get_method(config.method).check_options(config)
    label = label or (lambda name: "--" + name.replace("_", "-"))
    for name, cause in unused_options(config, names).items():
        if cause.startswith("--method"):
            own = ", ".join(get_method(config.method).hyperparameters) or "none"
            hint = f"{config.method}'s own options: {own}"
            if not get_method(config.method).sgd:
                hint += "; it takes no SGD steps"
        elif cause == "--features":
            hint = "a head run cuts patches and builds its model as the feature store did"
        else:
            hint = "the groups' threshold is --attribute-threshold"
        raise PatchwiseError(f"{label(name)} has no effect with {cause}", hint=f"drop it ({hint})")
