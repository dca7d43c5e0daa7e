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
from .slide import Slide

__all__ = ["PatchwiseError", "Slide", "__version__"]
