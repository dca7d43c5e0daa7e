"""Training methods, registered by name.

Each module defines one :class:`~napari_patchwise.training.methods.base.Method` subclass; adding
a method is adding one module and one line to ``_REGISTRY``. Modules are imported on
first use (they import nothing heavy, but this keeps the registry the only list).

This registry is the one list of methods: the CLI's ``--method`` choices and help,
:meth:`TrainConfig.validate <napari_patchwise.training.loop.TrainConfig.validate>`, the dock's
method list and the report's method labels all come from :data:`METHOD_NAMES` and
:data:`METHOD_LABELS`.
"""

from __future__ import annotations

import importlib

from ...errors import PatchwiseError
from .base import Method, TrainingGroups

# name -> ("module:ClassName", label in tables, figures and help texts)
_REGISTRY: dict[str, tuple[str, str]] = {
    "erm": ("erm:ERM", "ERM"),
    "gerne": ("gerne:GERNE", "GERNE"),
    "groupdro": ("groupdro:GroupDRO", "GroupDRO"),
    "resample": ("resample:ReSample", "ReSample"),
    "reweight": ("reweight:ReWeight", "ReWeight"),
    # head-only: train --features (docs/features.md); the label says whose labels it fits
    "dfr": ("dfr:DFR", "DFR (val labels)"),
    "dfr-train": ("dfr:DFRTrain", "DFR (train)"),
    # no group labels: a first-stage model finds the hard patches (docs/shortcuts.md)
    "jtt": ("jtt:JTT", "JTT"),
    "gerne-inferred": ("gerne_inferred:GERNEInferred", "GERNE (inferred groups)"),
}

METHOD_NAMES: tuple[str, ...] = tuple(_REGISTRY)
METHOD_LABELS: dict[str, str] = {name: label for name, (_, label) in _REGISTRY.items()}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``."""
    try:
        module_name, cls_name = _REGISTRY[name][0].split(":")
    except KeyError:
        raise PatchwiseError(
            f"unknown method {name!r}", hint=f"choose one of {', '.join(METHOD_NAMES)}"
        ) from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, cls_name)


def hyperparameters() -> dict[str, tuple[str, ...]]:
    """Each method's own options (:attr:`Method.hyperparameters`), by method name."""
    return {name: get_method(name).hyperparameters for name in METHOD_NAMES}


def make_method(name: str, data: TrainingGroups, config) -> Method:
    """Instantiate (and validate) the method ``name`` for this training split."""
    return get_method(name)(data, config)


__all__ = [
    "METHOD_LABELS",
    "METHOD_NAMES",
    "Method",
    "TrainingGroups",
    "get_method",
    "hyperparameters",
    "make_method",
]
