"""Training methods, registered by name.

Each module defines one :class:`~napari_patchwise.methods.base.Method` subclass; adding
a method is adding one module and one line to ``_MODULES``. Modules are imported on
first use (they import nothing heavy, but this keeps the registry the only list).
"""

from __future__ import annotations

import importlib

from ..errors import PatchwiseError
from .base import Method, TrainingGroups

# name -> "module:ClassName"
_MODULES: dict[str, str] = {
    "erm": "erm:ERM",
    "gerne": "gerne:GERNE",
    "groupdro": "groupdro:GroupDRO",
    "resample": "resample:ReSample",
    "reweight": "reweight:ReWeight",
}

METHOD_NAMES: tuple[str, ...] = tuple(_MODULES)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``."""
    try:
        module_name, cls_name = _MODULES[name].split(":")
    except KeyError:
        raise PatchwiseError(
            f"unknown method {name!r}", hint=f"choose one of {', '.join(METHOD_NAMES)}"
        ) from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, cls_name)


def make_method(name: str, data: TrainingGroups, config) -> Method:
    """Instantiate (and validate) the method ``name`` for this training split."""
    return get_method(name)(data, config)


__all__ = ["METHOD_NAMES", "Method", "TrainingGroups", "get_method", "make_method"]
