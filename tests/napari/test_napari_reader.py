"""The npe2 reader: layer data per channel, masks as Labels, errors as one notification."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_patchwise import Slide
from napari_patchwise._napari.reader import layers as reader_module
from napari_patchwise._napari.reader.layers import napari_get_reader


def _write_slide(path, rng, shape=(3, 512, 384)):
    data = rng.integers(0, 4000, size=shape, dtype=np.uint16)
    data[:, :, : shape[2] // 3] = 0  # black background on the left
    levels = [data, data[:, ::2, ::2], data[:, ::4, ::4]]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            levels[0],
            subifds=2,
            tile=(64, 64),
            metadata={
                "axes": "CYX",
                "Channel": {"Name": ["CARS", "TPEF", "SHG"]},
                "PhysicalSizeX": 0.5,
                "PhysicalSizeY": 0.5,
            },
        )
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, tile=(64, 64))
    return levels


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    import napari.utils.notifications as notifications

    monkeypatch.setattr(notifications, "show_error", shown.append)
    return shown


def test_get_reader_accepts_only_supported_paths(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "store.zarr").mkdir()
    for name in ("a.ome.tif", "b.tiff", "c.png", "d.jpg", "E.TIF", "F.JPG"):
        assert napari_get_reader(str(tmp_path / name)) is reader_module.read_layers
    assert napari_get_reader(str(tmp_path / "store.zarr")) is reader_module.read_layers
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "plain")) is None
    assert napari_get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


def test_manifest_patterns_cover_upper_case_extensions():
    # napari matches filename_patterns case-sensitively; scanners often write SLIDE.TIF.
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-patchwise")
    patterns = {p for r in manifest.contributions.readers for p in r.filename_patterns}
    for ext in ("tif", "tiff", "png", "jpg", "jpeg"):
        assert f"*.{ext}" in patterns and f"*.{ext.upper()}" in patterns


def test_one_multiscale_additive_layer_per_channel(tmp_path, rng):
    levels = _write_slide(tmp_path / "s.ome.tif", rng)
    layers = napari_get_reader(str(tmp_path / "s.ome.tif"))(str(tmp_path / "s.ome.tif"))
    assert [kind for *_, kind in layers] == ["image"] * 3
    assert [kw["name"] for _, kw, _ in layers] == ["CARS", "TPEF", "SHG"]
    assert [kw["colormap"] for _, kw, _ in layers] == ["magenta", "green", "cyan"]
    slide = layers[0][1]["metadata"]["patchwise_slide"]
    assert isinstance(slide, Slide) and slide.path == tmp_path / "s.ome.tif"
    for c, (data, kw, _) in enumerate(layers):
        assert kw["multiscale"] is True and kw["blending"] == "additive"
        assert kw["scale"] == (0.5, 0.5)
        assert kw["contrast_limits"] == list(slide.display_contrast_limits()[c])
        assert kw["contrast_limits"][1] > kw["contrast_limits"][0]
        assert [d.shape for d in data] == [(512, 384), (256, 192), (128, 96)]
        np.testing.assert_array_equal(data[2].compute(), levels[2][c])


def test_mask_file_opens_as_labels_with_label_pyramid(tmp_path, rng):
    labels = rng.integers(0, 3, size=(600, 400), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "tumor_mask.tif", labels, tile=(128, 128))
    (data, kwargs, kind), *rest = reader_module.read_layers(str(tmp_path / "tumor_mask.tif"))
    assert rest == [] and kind == "labels"
    assert kwargs["name"] == "tumor_mask" and kwargs["multiscale"] is True
    assert [d.shape for d in data] == [(600, 400), (300, 200), (150, 100)]
    # Labels are downsampled by picking, never by averaging (which would invent classes).
    np.testing.assert_array_equal(data[1].compute(), labels[::2, ::2])
    assert kwargs["metadata"]["patchwise_path"] == str(tmp_path / "tumor_mask.tif")


def test_few_valued_integer_image_is_a_mask_even_without_the_name(tmp_path, rng):
    labels = rng.choice(np.array([0, 1, 2], np.uint8), size=(64, 64))
    tifffile.imwrite(tmp_path / "regions.tif", labels)
    assert [kind for *_, kind in reader_module.read_layers(str(tmp_path / "regions.tif"))] == [
        "labels"
    ]
    gray = rng.integers(0, 255, size=(64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "gray.tif", gray)
    ((_, kwargs, kind),) = reader_module.read_layers(str(tmp_path / "gray.tif"))
    assert kind == "image" and kwargs["colormap"] == "gray"


def test_bad_file_shows_one_error_line_and_opens_nothing(tmp_path, errors):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    result = reader_module.read_layers(str(tmp_path / "broken.tif"))
    assert result == [(None,)]  # napari's "handled, no layers" sentinel
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"{tmp_path / 'broken.tif'}: not a readable TIFF")


def test_zarr_store_without_multiscales_shows_error(tmp_path, errors):
    zarr.open_group(tmp_path / "x.zarr", mode="w").create_array("0", data=np.zeros((4, 4)))
    assert reader_module.read_layers(str(tmp_path / "x.zarr")) == [(None,)]
    assert errors == [
        f"{tmp_path / 'x.zarr'}: zarr store has no OME multiscales metadata — write it as "
        "OME-Zarr (multiscales metadata), e.g. `patchwise convert IMAGE --out OUT.ome.zarr`."
    ]


def test_reader_bounds_napari_dask_cache(tmp_path, rng, monkeypatch):
    calls = []
    import napari.utils

    monkeypatch.setattr(napari.utils, "resize_dask_cache", lambda nbytes: calls.append(nbytes))
    monkeypatch.setattr(reader_module, "_cache_sized", False)
    _write_slide(tmp_path / "s.ome.tif", rng, shape=(3, 64, 64))
    reader_module.read_layers(str(tmp_path / "s.ome.tif"))
    reader_module.read_layers(str(tmp_path / "s.ome.tif"))
    assert calls == [reader_module.DASK_CACHE_BYTES]


@pytest.mark.gui
def test_viewer_opens_slide_with_patchwise_and_file_open_prefers_it(
    make_napari_viewer, qtbot, tmp_path, rng, errors
):
    from napari.layers import Image
    from napari.plugins import _npe2

    path = tmp_path / "s.ome.tif"
    _write_slide(path, rng)
    viewer = make_napari_viewer(show=True)

    layers = viewer.open(str(path), plugin="napari-patchwise")
    assert [layer.name for layer in layers] == ["CARS", "TPEF", "SHG"]
    assert all(isinstance(layer, Image) and layer.multiscale for layer in layers)
    assert [layer.data[i].shape for i in range(3) for layer in layers[:1]] == [
        (512, 384),
        (256, 192),
        (128, 96),
    ]
    assert {layer.colormap.name for layer in layers} == {"magenta", "green", "cyan"}
    viewer.reset_view()
    qtbot.wait(100)  # let napari load the visible tiles of the pyramid
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit = shot[..., :3].max(axis=-1) > 40
    assert 0.1 < lit.mean() < 0.95, lit.mean()  # tissue drawn, black background kept
    assert len(np.unique(shot[lit][:, :3] // 32, axis=0)) > 5  # several blended colours

    # napari's reader resolution offers this plugin for every supported format ...
    for name in ("a.tif", "a.ome.tiff", "a.png", "a.jpg"):
        assert "napari-patchwise" in _npe2.get_readers(str(tmp_path / name))
    # ... and once the user accepts the offer (tests/napari/test_viewer_guest.py), the choice
    # is remembered, so File > Open (QtViewer._qt_open) reads TIFFs with it.
    from napari.settings import get_settings

    assert "*.tif" not in get_settings().plugins.extension2reader  # not without asking
    reader_module.claim_reader_preferences()
    assert get_settings().plugins.extension2reader.get("*.tif") == "napari-patchwise"
    viewer.layers.clear()
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    assert [layer.name for layer in viewer.layers] == ["CARS", "TPEF", "SHG"]
    assert viewer.layers[0].metadata["patchwise_slide"].path == path

    # A broken file: one notification line, no layers, no exception.
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    viewer.layers.clear()
    viewer.open(str(tmp_path / "bad.tif"), plugin="napari-patchwise")
    assert len(viewer.layers) == 0
    assert errors and errors[-1].startswith(f"{tmp_path / 'bad.tif'}: not a readable TIFF")


@pytest.mark.gui
def test_viewer_opens_a_mask_too_small_for_a_pyramid(make_napari_viewer, tmp_path):
    # One level only: napari rejects a one-level multiscale Labels layer, so the reader
    # must hand it over as a plain array.
    mask = np.zeros((128, 96), np.uint8)
    mask[20:60, 10:50] = 1
    mask[30:40, 20:30] = 2
    path = tmp_path / "small_mask.tif"
    tifffile.imwrite(path, mask)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-patchwise")
    assert type(layer).__name__ == "Labels" and not layer.multiscale
    np.testing.assert_array_equal(np.asarray(layer.data), mask)
    assert layer.get_value((35, 25)) == 2 and layer.get_value((25, 15)) == 1
