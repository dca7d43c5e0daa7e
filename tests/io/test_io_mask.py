"""Masks: value maps, binary detection, integer factors, size and value errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from napari_patchwise import PatchwiseError
from napari_patchwise.io import MaskMap, open_slide, read_mask
from napari_patchwise.io import mask as mask_module
from napari_patchwise.io.mask import mask_factor, mask_values
from napari_patchwise.slide import BACKGROUND, HEALTHY, TUMOR


def _labels(shape, values, rng):
    return rng.choice(np.asarray(values), size=shape).astype(np.uint8)


def test_default_map_on_a_full_size_tiff_mask(tmp_path, rng):
    labels = _labels((50, 40), [0, 1, 2], rng)
    tifffile.imwrite(tmp_path / "mask.tif", labels, tile=(16, 16))
    mapped, factor, kind = read_mask(tmp_path / "mask.tif", (50, 40))
    assert (factor, kind, mapped.dtype) == (1, "3class", np.uint8)
    np.testing.assert_array_equal(mapped.compute(), labels)  # 0/1/2 map to themselves


def test_zero_one_mask_is_healthy_tissue_under_the_default_map(tmp_path, rng):
    # A tumor-free slide of a 3-class cohort holds only 0 and 1. It used to be guessed
    # binary, so every healthy pixel became tumor.
    labels = _labels((50, 40), [0, 1], rng)
    tifffile.imwrite(tmp_path / "m.tif", labels)
    for check in (True, False):
        mapped, _factor, kind = read_mask(tmp_path / "m.tif", (50, 40), check_values=check)
        assert kind == "3class"
        assert int((mapped.compute() == TUMOR).sum()) == 0
        np.testing.assert_array_equal(mapped.compute(), np.where(labels == 1, HEALTHY, BACKGROUND))


@pytest.mark.parametrize("spec", ["binary", "0=background,1=tumor", MaskMap.binary()])
def test_zero_one_mask_is_binary_tumor_only_when_said(tmp_path, rng, spec):
    labels = _labels((50, 40), [0, 1], rng)
    tifffile.imwrite(tmp_path / "m.tif", labels)
    mapped, _factor, kind = read_mask(tmp_path / "m.tif", (50, 40), spec)
    assert kind == "binary"
    np.testing.assert_array_equal(mapped.compute(), np.where(labels == 1, TUMOR, BACKGROUND))


def test_unknown_values_fail_when_read_without_the_upfront_pass(tmp_path, rng):
    labels = _labels((40, 40), [0, 1, 2], rng)
    labels[39, 39] = 200
    tifffile.imwrite(tmp_path / "m.tif", labels, tile=(16, 16))
    mapped, _, _ = read_mask(tmp_path / "m.tif", (40, 40), check_values=False)
    with pytest.raises(
        PatchwiseError,
        match=r"m\.tif: mask has values \{0, 1, 2, 200\}; 200 not in the mask map "
        r"0=background,1=healthy,2=tumor — pass a mask map",
    ):
        mapped.compute()
    # uint16 and non-contiguous maps go through the lookup-table check
    wide = np.where(labels == 200, 300, labels.astype(np.uint16) * 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "w.tif", wide)
    spec = "0=background,100=healthy,200=tumor"
    mapped, _, _ = read_mask(tmp_path / "w.tif", (40, 40), spec, check_values=False)
    with pytest.raises(PatchwiseError, match=r"300 not in the mask map"):
        mapped.compute()
    wide[39, 39] = 0
    tifffile.imwrite(tmp_path / "w.tif", wide)
    mapped, _, _ = read_mask(tmp_path / "w.tif", (40, 40), spec, check_values=False)
    assert int((mapped.compute() == TUMOR).sum()) == int((labels == 2).sum())


def test_custom_map_from_text_on_a_png_mask(tmp_path, rng):
    labels = _labels((30, 20), [0, 128, 255], rng)
    Image.fromarray(labels).save(tmp_path / "m.png")
    mapped, _, kind = read_mask(tmp_path / "m.png", (30, 20), "0=background,128=healthy,255=tumor")
    assert kind == "3class"
    expected = np.select([labels == 128, labels == 255], [HEALTHY, TUMOR], BACKGROUND)
    np.testing.assert_array_equal(mapped.compute(), expected)


@pytest.mark.parametrize(
    ("mask_yx", "factor"),
    [
        ((101, 75), 1),
        ((51, 38), 2),
        ((50, 37), 2),
        ((51, 37), 2),
        ((34, 25), 3),
        ((25, 19), 4),
        ((26, 18), 4),
    ],
)
def test_integer_factor_with_rounding_of_odd_sizes(mask_yx, factor):
    assert mask_factor((101, 75), mask_yx) == factor


@pytest.mark.parametrize("mask_yx", [(60, 40), (101, 74), (34, 26), (0, 10)])
def test_sizes_that_are_not_integer_fractions_are_errors(mask_yx):
    with pytest.raises(
        PatchwiseError,
        match=rf"mask is {mask_yx[0]} x {mask_yx[1]} pixels but the image is 101 x 75",
    ):
        mask_factor((101, 75), mask_yx, "m.tif")


def test_open_slide_with_quarter_size_mask(tmp_path, rng):
    tifffile.imwrite(tmp_path / "img.tif", rng.integers(0, 255, (2, 101, 75), dtype=np.uint8))
    labels = _labels((26, 19), [0, 1, 2], rng)
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    slide = open_slide(tmp_path / "img.tif", mask=tmp_path / "mask.tif")
    assert slide.mask_factor == 4 and slide.mask_kind == "3class"
    assert slide.mask_path == tmp_path / "mask.tif"
    np.testing.assert_array_equal(slide.mask.compute(), labels)


def test_wrong_size_mask_names_both_sizes(tmp_path, rng):
    tifffile.imwrite(tmp_path / "img.tif", rng.integers(0, 255, (2, 100, 80), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "mask.tif", np.zeros((30, 80), np.uint8))
    with pytest.raises(
        PatchwiseError,
        match=r"mask\.tif: mask is 30 x 80 pixels but the image is 100 x 80; .* — use the mask that belongs",
    ):
        open_slide(tmp_path / "img.tif", mask=tmp_path / "mask.tif")


def test_unknown_values_are_listed(tmp_path, rng):
    labels = _labels((40, 40), [0, 1, 2], rng)
    labels[5, 7] = 7
    labels[39, 39] = 200
    tifffile.imwrite(tmp_path / "m.tif", labels, tile=(16, 16))
    with pytest.raises(
        PatchwiseError,
        match=r"m\.tif: mask has values \{0, 1, 2, 7, 200\}; 7, 200 not in the mask map "
        r"0=background,1=healthy,2=tumor — pass a mask map",
    ):
        read_mask(tmp_path / "m.tif", (40, 40))
    with pytest.raises(
        PatchwiseError, match=r"values \{0, 1\}; 1 not in the mask map 0=background"
    ):
        tifffile.imwrite(tmp_path / "b.tif", _labels((8, 8), [0, 1], rng))
        read_mask(tmp_path / "b.tif", (8, 8), MaskMap({0: BACKGROUND}))


def test_values_are_found_chunk_by_chunk(monkeypatch, rng):
    labels = rng.integers(0, 3, size=(64, 48), dtype=np.uint16)
    labels[63, 47] = 9
    seen = []
    original = mask_module._distinct

    def spy(block):
        seen.append(block.shape)
        return original(block)

    monkeypatch.setattr(mask_module, "_distinct", spy)
    values = mask_values(da.from_array(labels, chunks=(16, 16)))
    assert values.tolist() == [0, 1, 2, 9]
    assert seen == [(16, 16)] * 12  # every block once, never the whole mask


def test_mask_from_ome_zarr_labels_group(tmp_path, rng):
    labels = _labels((20, 30), [0, 1, 2], rng)
    root = zarr.open_group(tmp_path / "img.zarr", mode="w", zarr_format=2)
    group = root.create_group("labels")
    group.attrs["labels"] = ["tumor"]
    label = group.create_group("tumor")
    label.create_array("0", data=labels, chunks=(8, 8))
    label.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [{"path": "0"}],
        }
    ]
    mapped, _factor, _kind = read_mask(tmp_path / "img.zarr" / "labels", (20, 30))
    np.testing.assert_array_equal(mapped.compute(), labels)


def test_multichannel_and_float_masks_are_errors(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(
        PatchwiseError, match=r"rgb\.tif: mask has 3 channels; expected a single-channel"
    ):
        read_mask(tmp_path / "rgb.tif", (8, 8))
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(PatchwiseError, match=r"f\.tif: mask has float32 pixels; expected integer"):
        read_mask(tmp_path / "f.tif", (8, 8))


def test_mask_map_parse_and_format():
    m = MaskMap.parse("0=background, 1=healthy ,2=Tumor")
    assert dict(m.classes) == {0: 0, 1: 1, 2: 2} and m.kind == "3class"
    assert str(MaskMap.parse("0=non-tumor,255=tumor")) == "0=background,255=tumor"
    assert MaskMap.parse("binary") == MaskMap.binary() and MaskMap.binary().kind == "binary"
    assert MaskMap.parse("default") == MaskMap.default() == MaskMap()
    with pytest.raises(PatchwiseError, match=r"cannot read mask map item '1=bone'"):
        MaskMap.parse("0=background,1=bone")
    # a left side that is not a number names an annotation class (GeoJSON masks)
    assert dict(MaskMap.parse("x=tumor").names) == {"x": TUMOR}
    for bad in ("=tumor", "tumor", "x=bone"):
        with pytest.raises(PatchwiseError, match=f"cannot read mask map item '{bad}'"):
            MaskMap.parse(bad)
    # a value named twice is a typo, even when both say the same class
    for spec in ("0=background,1=tumor,1=healthy", "0=background,1=tumor,1=tumor"):
        with pytest.raises(PatchwiseError, match=r"mask map names value 1 twice"):
            MaskMap.parse(spec)
    assert MaskMap.parse("binary255") == MaskMap({0: BACKGROUND, 255: TUMOR})
    assert MaskMap.parse("3class") == MaskMap.parse("") == MaskMap.default()


def test_a_preset_label_means_its_spec():
    assert MaskMap.parse("binary (0=background,1=tumor)") == MaskMap.binary()
    assert MaskMap.parse("mine (0=background,255=tumor)") == MaskMap.parse("binary255")
    assert MaskMap.parse("binary255") != MaskMap.binary()  # a name is not its first word


def test_a_palette_png_mask_is_read_as_its_indices(tmp_path, rng):
    labels = _labels((30, 20), [0, 1, 2], rng)
    im = Image.fromarray(labels, mode="P")
    im.putpalette([0, 0, 0, 0, 200, 0, 220, 30, 30] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "m.png")
    mapped, _, kind = read_mask(tmp_path / "m.png", (30, 20))
    assert kind == "3class"
    np.testing.assert_array_equal(mapped.compute(), labels)
    # as an image the same file still shows its colours
    from napari_patchwise.io.image import read_image

    assert read_image(tmp_path / "m.png").levels[0].shape == (3, 30, 20)
