"""``python -m napari_patchwise.cli``: the ``patchwise`` command."""

from .main import console_main

console_main()
