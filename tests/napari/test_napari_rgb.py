"""Brightfield RGB slides in napari: one ``rgb=True`` pyramid layer, not three channels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("openslide")

import _wsi
from napari_patchwise._napari.reader.layers import layers_for_path
from napari_patchwise.io import _tiles

MPP = 0.25


@pytest.fixture(scope="module")
def svs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    path = folder / "slide.svs"
    levels = _wsi.write_svs(path, _wsi.brightfield(512, 768, seed=5), mpp=MPP, tile=128)
    return path, levels


def test_an_svs_is_one_rgb_layer_with_openslide_pixels_and_its_scale(svs):
    import openslide

    path, levels = svs
    (data, kwargs, kind), *rest = layers_for_path(path)
    assert not rest and kind == "image"
    assert kwargs["rgb"] and kwargs["multiscale"] and kwargs["name"] == "slide"
    assert tuple(kwargs["scale"]) == (MPP, MPP) and tuple(kwargs["units"]) == ("µm", "µm")
    assert [d.shape for d in data] == [(512, 768, 3), (256, 384, 3), (128, 192, 3)]
    # chunks hold whole 128 px tiles and all three samples
    assert all(c % 128 == 0 for c in data[0].chunks[0][:-1]) and data[0].chunks[2] == (3,)
    with openslide.OpenSlide(str(path)) as ref:
        for level, (y, x, h, w) in ((0, (100, 200, 150, 250)), (1, (40, 90, 60, 70))):
            f = 2**level
            want = np.asarray(ref.read_region((x * f, y * f), level, (w, h)))[..., :3]
            got = np.asarray(data[level][y : y + h, x : x + w])
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(data[2]), levels[2])


def test_a_view_region_decodes_only_its_tiles_once(svs, monkeypatch):
    from napari_patchwise.io._tile_cache import PREFETCH, TILES

    monkeypatch.setattr(PREFETCH, "enabled", False)  # only the reads napari asks for
    path, _ = svs
    (data, _kwargs, _kind), *_ = layers_for_path(path)
    decoded: list[int] = []
    decode = _tiles.TiffLevelView._decode

    def counting(self, page, index):
        decoded.append(index)
        return decode(self, page, index)

    monkeypatch.setattr(_tiles.TiffLevelView, "_decode", counting)
    TILES.clear()
    np.asarray(data[0][130:250, 300:400].compute(scheduler="threads"))  # rows 1, cols 2-3
    assert sorted(decoded) == [8, 9]  # 6 tiles a row: (1, 2) and (1, 3), each once
    np.asarray(data[0][130:250, 300:400].compute(scheduler="threads"))
    assert sorted(decoded) == [8, 9]  # shown again: from the decoded-tile cache


def test_multimodal_and_16_bit_slides_stay_channel_layers(tmp_path):
    image = np.zeros((3, 64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "m.ome.tif", image, metadata={"axes": "CYX"})
    names = [kwargs["name"] for _d, kwargs, _k in layers_for_path(tmp_path / "m.ome.tif")]
    assert len(names) == 3
    rgb16 = np.zeros((64, 64, 3), np.uint16)
    tifffile.imwrite(tmp_path / "r16.tif", rgb16, photometric="rgb")
    names = [kwargs["name"] for _d, kwargs, _k in layers_for_path(tmp_path / "r16.tif")]
    assert names == ["R", "G", "B"]


@pytest.mark.gui
def test_overlays_and_a_half_resolution_mask_align_with_the_rgb_layer(
    make_napari_viewer, qtbot, monkeypatch, svs
):
    from test_world_alignment import assert_same_world

    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    path, _ = svs
    mask = np.zeros((256, 384), np.uint8)
    mask[64:192, 96:288] = 1
    mask[100:150, 150:250] = 2
    mask_path = path.with_name("slide_mask.tif")
    tifffile.imwrite(mask_path, mask)
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(path), plugin="napari-patchwise")
    (labels,) = viewer.open(str(mask_path), plugin="napari-patchwise")
    assert image.rgb and tuple(image.scale) == (MPP, MPP)
    assert tuple(labels.scale) == (2 * MPP, 2 * MPP)

    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    assert widget.current is None or widget.current.slide.path == path
    widget.configure(image="slide")
    widget.configure(mask=labels.name)
    widget.configure(patch_size=64)
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    assert not errors, errors
    state = widget.current
    assert state.slide.path == path and state.slide.channel_names == ("R", "G", "B")
    assert int(state.data.table["n_tumor"].sum()) == 4 * 50 * 100  # level-0 tumor pixels
    kinds = {layer.metadata.get("patchwise_overlay") for layer in viewer.layers}
    assert {"labels", "groups"} <= kinds
    for layer in viewer.layers:
        assert_same_world(layer, image)
    # the slide draws in its colours where it is (glass white, tissue coloured)
    from test_world_alignment import _screen_rgb

    viewer.reset_view()
    for layer in viewer.layers:
        layer.visible = layer is image
    qtbot.wait(200)
    glass = np.array([20.0, 20.0]) * MPP
    tissue = [np.array([256.0 + d, 384.0 + d]) * MPP for d in range(0, 40, 4)]
    colours = _screen_rgb(viewer, [glass, *tissue])
    assert (colours[0] >= 245).all(), colours[0]
    assert (colours[1:].max(axis=1) < 200).all() and (np.ptp(colours[1:], axis=1) > 10).any()


def test_a_cohort_rgb_slide_is_one_layer_named_by_its_cohort_id(svs):
    from napari_patchwise._napari.cohort_tab.slides import open_cohort_slide
    from napari_patchwise.cohort.manifest import CohortEntry

    path, _ = svs
    mask_path = path.with_name("cohort_mask.tif")
    tifffile.imwrite(mask_path, np.ones((256, 384), np.uint8))
    entry = CohortEntry(image=path, mask=mask_path, split="train", slide="case7", line=2)
    slide, layers = open_cohort_slide(entry, "", cancel=None, progress=None)
    images = [kwargs for _d, kwargs, kind in layers if kind == "image"]
    assert slide.name == "case7" and [k["name"] for k in images] == ["case7"]
    assert images[0]["rgb"]


def _sparse_svs(path):
    """One 256 x 512 level, its right tile left empty (OpenSlide's glass: 255)."""
    import imagecodecs

    image = np.full((256, 512, 3), 100, np.uint8)
    image[:, :256, 1] = 7
    tiles = [imagecodecs.zlib_encode(np.ascontiguousarray(image[:, :256])), b""]
    desc = f"{_wsi.APERIO}\n512x256 [0,0 512x256] (256x256) RAW/RGB|AppMag = 20|MPP = 0.5"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            iter(tiles),
            **dict(shape=(256, 512, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb"),
            **dict(compression="zlib", description=desc, metadata=None),
        )


@pytest.mark.parametrize("source", ["svs", "sparse", "memory"])
def test_the_rgb_level_is_the_channel_level_transposed_for_every_key(svs, tmp_path, source):
    import dask.array as da

    from napari_patchwise.io import _layout, open_slide

    if source == "memory":  # not a TIFF reader: sliced, then transposed
        rng = np.random.default_rng(1)
        level = da.from_array(rng.integers(0, 255, (3, 300, 500), dtype=np.uint8), (3, 128, 128))
    else:
        path = svs[0] if source == "svs" else tmp_path / "sparse.svs"
        if source == "sparse":
            _sparse_svs(path)
        level = open_slide(path, pyramid_cache=False).levels[0]
    rgb = _layout.yxc_level(level)
    direct = _layout.channels_last_reader(level) is not None
    assert direct == (source != "memory")
    want = np.moveaxis(np.asarray(level), 0, -1)
    h, w = want.shape[:2]
    keys = [
        (slice(None), slice(None)),
        (slice(37, h - 5), slice(250, w - 1)),  # partial tiles, across the empty one
        (slice(10, 200, 3), slice(None, None, -2)),
        (slice(0, 90), slice(240, 300), [2, 0]),
        (slice(0, 90), slice(240, 300), 1),
        (5, slice(None)),
    ]
    for key in keys:
        np.testing.assert_array_equal(np.asarray(rgb[key]), want[key], err_msg=str(key))
    if source == "sparse":
        assert (want[:, 256:] == 255).all() and (want[:, :256, 1] == 7).all()


def test_an_8_bit_rgb_tiff_is_one_rgb_layer_read_from_its_tiles(tmp_path):
    from napari_patchwise.io._layout import channels_last_reader
    from napari_patchwise.io.reader import load_image

    path = tmp_path / "plain_rgb.tif"
    levels = _wsi.write_generic_tiff(path, _wsi.brightfield(300, 500, seed=2))
    ((data, kwargs, _kind),) = layers_for_path(path)
    assert kwargs["rgb"] and kwargs["name"] == "plain_rgb" and tuple(kwargs["scale"]) == (1.0, 1.0)
    assert channels_last_reader(load_image(path).levels[0]) is not None
    for got, want in zip(data, levels, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
