"""Named training recipes: ``patchwise train --preset paper|cpu-quick`` and the dock's choice.

``paper`` is not one paper's recipe: the tumor paper (arXiv 2511.13527) fixes the backbone
and the selection, the GERNE paper's App. F (arXiv 2503.13236, Waterbirds/CelebA) the
optimiser values, SubpopBench the frozen BatchNorm; ``docs/presets.md`` gives each value's
source.

A preset is nothing but values of :class:`~napari_patchwise.training.config.TrainConfig`
options, named as the flags and ``config.json`` name them (``"lr"``, ``"patch_size"``):
every preset can be written out as train flags, and a sweep that passes train flags
through passes a preset through too. :func:`resolve` fills a preset's values in under the
options given explicitly, which always win. A run's ``config.json`` keeps the preset's
name and every resolved value, so a resumed run with the same preset and flags resolves
to the same settings. The values and the reasons for them: ``docs/presets.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import PatchwiseError


def _paper() -> Mapping[str, Any]:
    # The tumor paper's backbone (arXiv 2511.13527: ImageNet-pretrained ResNet-50, a
    # 2-output head, selection on validation) with the optimiser settings the GERNE paper
    # reports for Waterbirds/CelebA (arXiv 2503.13236, App. F) and SubpopBench's frozen
    # BatchNorm; the tumor paper gives no optimiser settings. Every value's source:
    # docs/presets.md (tests/training/test_presets_provenance.py checks each has one). beta is
    # left at its default: the GERNE paper tunes beta and c on validation WGA.
    return MappingProxyType(
        {
            "model": "resnet50",
            "freeze_bn": True,
            "lr": 1e-4,
            "weight_decay": 0.01,
            "momentum": 0.9,
            "batch_size": 32,
            "c": 0.5,
            "select": "val_wga",
        }
    )


def _cpu_quick() -> Mapping[str, Any]:
    # What benchmarks/planted_bias.py trains with: it learns the planted-bias slides in
    # a few minutes on a laptop CPU. The thread count is left to train's default (one
    # per usable core, passive OpenMP waits), measured there: a speed setting, not part
    # of the recipe.
    return MappingProxyType(
        {
            "model": "smallcnn",
            "freeze_bn": False,
            "patch_size": 32,
            "steps": 200,
            "eval_every": 40,
            "batch_size": 32,
            "lr": 0.01,
            "weight_decay": 1e-4,
            "momentum": 0.9,
            # smallcnn's forward on 32 px patches, one thread: ~1270 patches/s at 128,
            # ~660 at 256 or 512 (measured on the 2-core machine)
            "eval_batch_size": 128,
        }
    )


@dataclass(frozen=True)
class Preset:
    """A named set of option values (``options``, read-only), as the flags name them."""

    name: str
    summary: str
    options: Mapping[str, Any]
    needs_weights: bool = False


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "the tumor paper's pretrained ResNet-50 (--weights) with the GERNE paper's "
            "Waterbirds/CelebA settings (App. F: SGD lr 1e-4, weight decay 0.01, batch 32, "
            "c 0.5) and SubpopBench's frozen BatchNorm",
            _paper(),
            needs_weights=True,
        ),
        Preset(
            "cpu-quick",
            "small CNN on 32 px patches, 200 steps, lr 0.01: minutes on a CPU",
            _cpu_quick(),
        ),
    )
}
#: The one list of preset names (CLI choices, the dock's list, ``TrainConfig.validate``).
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (a one-line :class:`PatchwiseError` for any other)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PatchwiseError(
            f"unknown preset {name!r}", hint=f"one of {', '.join(PRESET_NAMES)}"
        ) from None


def resolve(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the values of their ``"preset"`` filled in beneath them.

    Options given explicitly win over the preset's; without a preset (``None`` or no
    key) the options come back unchanged. Resolving resolved options changes nothing,
    so a ``config.json`` (which holds every value) reads back as written.
    """
    name = options.get("preset")
    if name is None:
        return dict(options)
    return {**get_preset(name).options, **options}
