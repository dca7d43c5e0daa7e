"""napari-patchwise: patch-wise tumor classification on huge multimodal images.

The core library (everything outside ``_napari``) never imports Qt or napari, and
imports torch lazily, so it runs headless and napari starts as fast with the plugin
installed as without.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-patchwise")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .errors import PatchwiseError

__all__ = ["PatchwiseError", "Slide", "__version__"]


def __getattr__(name: str):
    # ``Slide`` pulls in dask (~0.4 s): imported on first use, so ``patchwise`` starts
    # fast and a Ctrl-C in its first moments lands in code that handles it.
    if name == "Slide":
        from .slide import Slide

        return Slide
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
