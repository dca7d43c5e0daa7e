"""The package's public API: every name it lists resolves, lazily, to its defining module."""

from __future__ import annotations

import subprocess
import sys

import napari_patchwise


def test_every_public_name_resolves_to_the_object_of_its_module():
    import importlib

    for name, module in napari_patchwise._PUBLIC.items():
        defining = importlib.import_module(f"napari_patchwise.{module}")
        assert getattr(napari_patchwise, name) is getattr(defining, name), name
    assert set(napari_patchwise.__all__) == {
        "PatchwiseError",
        "__version__",
        *napari_patchwise._PUBLIC,
    }


def test_importing_the_package_loads_none_of_the_heavy_modules():
    code = (
        "import sys, napari_patchwise\n"
        "heavy = [m for m in ('dask', 'torch', 'napari', 'qtpy', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no_such_thing"):
        napari_patchwise.no_such_thing  # noqa: B018
