"""napari-patchwise: patch-wise tumor classification on huge multimodal images.

The public API, importable from the package (each name loads its module on first use,
as scikit-image's lazy loader does, so ``import napari_patchwise`` stays light):

- slides: :func:`open_slide` (any supported file, lazy pyramid levels) -> :class:`Slide`;
- patch tables: :class:`PatchSettings`, :func:`build_patch_table` -> :class:`PatchTable`,
  :func:`read_patch_table`, :func:`write_patch_table`;
- groups and metrics: :func:`group_ids`, :func:`evaluate`, ``DEFAULT_TAU``,
  ``DEFAULT_THRESHOLD``, ``DEFAULT_PATCH_SIZE``;
- training and inference: :class:`TrainConfig`, :func:`train`, :func:`predict_slide`;
- errors: :class:`PatchwiseError` (one line: which file, what is wrong, what to do).

The core library (everything outside ``_napari``) never imports Qt or napari, and
imports torch lazily, so it runs headless and napari starts as fast with the plugin
installed as without.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-patchwise")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .errors import PatchwiseError

#: public name -> the module that defines it (relative to the package)
_PUBLIC = {
    "Slide": "slide",
    "open_slide": "io",
    "PatchSettings": "settings",
    "DEFAULT_PATCH_SIZE": "settings",
    "PatchTable": "patches.table",
    "build_patch_table": "patches.table",
    "read_patch_table": "patches.table",
    "write_patch_table": "patches.table",
    "group_ids": "groups",
    "DEFAULT_TAU": "groups",
    "DEFAULT_THRESHOLD": "schema",
    "evaluate": "analysis.metrics",
    "TrainConfig": "training.config",
    "train": "training.loop",
    "predict_slide": "training.predict",
}

__all__ = ["PatchwiseError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    # Names load their module on first use: ``Slide`` alone pulls in dask (~0.4 s), and
    # ``train`` torch; ``patchwise`` starts fast and a Ctrl-C in its first moments lands
    # in code that handles it.
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
