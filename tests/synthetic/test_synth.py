"""Synthetic slides: determinism, laziness, the planted correlation, the written files."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

import napari_patchwise.synthetic.slides as synth
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.synthetic.slides import SynthConfig, default_mask_path, synth_slide

SMALL = SynthConfig(size=(512, 640), seed=7, chunk=256)


@pytest.fixture(scope="module")
def small_slide():
    image, mask = synth_slide(SMALL)
    return da.compute(image, mask)


def test_same_seed_same_pixels_other_seed_other_pixels(small_slide):
    image, mask = small_slide
    again_image, again_mask = synth_slide(SMALL)
    # A single tile made on its own equals the same region of the whole slide.
    np.testing.assert_array_equal(
        again_image[:, 256:512, 256:512].compute(), image[:, 256:, 256:512]
    )
    np.testing.assert_array_equal(again_mask.compute(), mask)
    other, _ = synth_slide(SynthConfig(size=(512, 640), seed=8, chunk=256))
    assert not np.array_equal(other.compute(), image)


def test_pixels_do_not_depend_on_the_chunk_size(small_slide):
    image, mask = small_slide
    for chunk in (128, 320):
        config = SynthConfig(size=(512, 640), seed=7, chunk=chunk)
        other_image, other_mask = synth_slide(config)
        assert other_image.chunks[1][0] == chunk
        np.testing.assert_array_equal(other_image.compute(), image)
        np.testing.assert_array_equal(other_mask.compute(), mask)


def test_image_and_mask_shapes_types_and_classes(small_slide):
    image, mask = small_slide
    assert image.shape == (3, 512, 640) and image.dtype == np.uint8
    assert mask.shape == (512, 640) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1, 2}
    tissue = mask > 0
    brightest = image.max(axis=0)
    # Tissue (healthy and tumor) is never black; the background is (detector noise <= 3).
    assert brightest[tissue].min() >= 25
    assert brightest[~tissue].max() <= 3
    assert image[0][tissue].min() >= 25  # CARS outlines all tissue


def test_slicing_a_huge_slide_renders_only_its_chunks(monkeypatch):
    calls = []
    render = synth.render_tile

    def counting(layout, config, y0, x0, h, w):
        calls.append((y0, x0, h, w))
        return render(layout, config, y0, x0, h, w)

    monkeypatch.setattr(synth, "render_tile", counting)
    image, mask = synth_slide(SynthConfig(size=(30_000, 30_000), seed=1, chunk=1024))
    assert image.shape == (3, 30_000, 30_000)
    assert calls == []  # building the lazy slide renders nothing
    region = image[:, 1000:1100, 2000:2100].compute()
    assert region.shape == (3, 100, 100)
    # Rows 1000-1100 and columns 2000-2100 straddle one chunk border each: 4 chunks.
    assert sorted(calls) == [(y, x, 1024, 1024) for y in (0, 1024) for x in (1024, 2048)]
    calls.clear()
    da.compute(image[:, 5000:5010, 5000:5010], mask[5000:5010, 5000:5010])
    assert calls == [(4096, 4096, 1024, 1024)]  # image and mask share the rendered chunk


def _patch_groups(mask: np.ndarray, patch: int = 64, tau: float = 0.1):
    h, w = mask.shape
    blocks = mask[: h - h % patch, : w - w % patch]
    blocks = blocks.reshape(h // patch, patch, w // patch, patch).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, patch * patch)
    tissue = (blocks > 0).mean(axis=1)
    tumor = (blocks == 2).any(axis=1)
    healthy = ~tumor & (tissue > 0)
    return tissue, tumor, healthy


@pytest.fixture(scope="module")
def correlated_masks():
    masks = {}
    for spurious in (1.0, 0.0):
        _, mask = synth_slide(SynthConfig(size=(2048, 2048), seed=0, spurious=spurious))
        masks[spurious] = mask.compute()
    return masks


def test_spurious_strength_links_tissue_size_to_label(correlated_masks):
    tissue, tumor, healthy = _patch_groups(correlated_masks[1.0])
    gap = tissue[tumor].mean() - tissue[healthy].mean()
    assert gap > 0.4, gap  # tumor patches hold far more tissue than non-tumor ones
    tau = 0.1
    groups = {
        "non-tumor/small": np.sum(healthy & (tissue < tau)),
        "non-tumor/large": np.sum(healthy & (tissue >= tau)),
        "tumor/small": np.sum(tumor & (tissue < tau)),
        "tumor/large": np.sum(tumor & (tissue >= tau)),
    }
    # The paper's structure: two majority groups and two non-empty minority groups.
    assert groups["non-tumor/small"] > 3 * groups["non-tumor/large"] > 0
    assert groups["tumor/large"] > 3 * groups["tumor/small"] > 0

    tissue0, tumor0, healthy0 = _patch_groups(correlated_masks[0.0])
    gap0 = tissue0[tumor0].mean() - tissue0[healthy0].mean()
    assert abs(gap0) < 0.25, gap0  # without the planted bias the link mostly disappears
    assert gap - gap0 > 0.3


def test_tumor_only_inside_tissue_and_texture_differs(small_slide):
    image, mask = small_slide
    tumor, healthy = mask == 2, mask == 1
    # The causal signal: less collagen (SHG), brighter nuclei (TPEF), lower CARS.
    assert image[2][tumor].mean() < image[2][healthy].mean() - 5
    assert image[1][tumor].mean() > image[1][healthy].mean() + 5
    assert image[0][tumor].mean() < image[0][healthy].mean() - 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spurious": 1.5}, "outside"),
        ({"tumor_fraction": -0.1}, "outside"),
        ({"size": (8, 8)}, "too small"),
        ({"channel_names": ("a", "b")}, "three"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(PatchwiseError, match=message):
        SynthConfig(**kwargs)


def test_default_mask_path(tmp_path):
    assert default_mask_path(tmp_path / "a.ome.tif") == tmp_path / "a_mask.tif"
    assert default_mask_path(tmp_path / "a.tiff") == tmp_path / "a_mask.tif"
    assert default_mask_path(tmp_path / "a.ome.zarr") == tmp_path / "a_mask.ome.zarr"
    with pytest.raises(PatchwiseError, match="unknown output type"):
        default_mask_path(tmp_path / "a.png")


def test_write_synthetic_slide_tiff(tmp_path, small_slide):
    image, mask = small_slide
    progress = []
    out, mask_out = synth.write_synthetic_slide(
        tmp_path / "s.ome.tif",
        config=SMALL,
        tile=128,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert mask_out == tmp_path / "s_mask.tif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ome.tif", "s_mask.tif"]
    with tifffile.TiffFile(out) as tif:
        levels = tif.series[0].levels
        assert [lvl.shape for lvl in levels] == [(3, 512, 640), (3, 256, 320), (3, 128, 160)]
        np.testing.assert_array_equal(levels[0].asarray(), image)
        assert tif.pages[0].tilewidth == 128
        assert "CARS" in tif.ome_metadata and 'PhysicalSizeX="0.5"' in tif.ome_metadata
    with tifffile.TiffFile(mask_out) as tif:
        levels = tif.series[0].levels
        np.testing.assert_array_equal(levels[0].asarray(), mask)
        # Masks are downsampled by nearest (stride), so classes stay exact.
        np.testing.assert_array_equal(levels[1].asarray(), mask[::2, ::2])
        np.testing.assert_array_equal(levels[2].asarray(), mask[::4, ::4])
    dones = [d for d, _ in progress]
    assert dones == sorted(dones) and progress[-1] == (1000, 1000)


def test_write_synthetic_slide_zarr(tmp_path, small_slide):
    image, mask = small_slide
    out, mask_out = synth.write_synthetic_slide(tmp_path / "s.ome.zarr", config=SMALL, tile=128)
    assert mask_out == tmp_path / "s_mask.ome.zarr"
    root = zarr.open_group(out, mode="r")
    assert root.attrs["ome"]["version"] == "0.5"
    assert [c["label"] for c in root.attrs["ome"]["omero"]["channels"]] == ["CARS", "TPEF", "SHG"]
    np.testing.assert_array_equal(root["0"][:], image)
    np.testing.assert_array_equal(zarr.open_group(mask_out, mode="r")["0"][:], mask)


def test_write_synthetic_slide_bad_name_writes_nothing(tmp_path):
    with pytest.raises(PatchwiseError, match="unknown output type"):
        synth.write_synthetic_slide(tmp_path / "s.png", config=SMALL)
    assert list(tmp_path.iterdir()) == []
