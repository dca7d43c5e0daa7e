"""OME-Zarr v0.4 / v0.5 and PNG/JPEG reading (stores and files written here with zarr / PIL)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from PIL import Image

from napari_patchwise import PatchwiseError
from napari_patchwise.io import image_format, open_slide


def write_ome_zarr_raw(path, levels, *, version, axes, scale0, units=True, omero=None):
    """A minimal OME-Zarr written straight with zarr: levels in ``axes`` order."""
    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(path, mode="w", zarr_format=fmt)
    for k, level in enumerate(levels):
        chunks = tuple(min(16, s) for s in level.shape)
        root.create_array(str(k), data=level, chunks=chunks)
    axis_meta = []
    for a in axes:
        entry = {"name": a, "type": {"c": "channel", "t": "time"}.get(a, "space")}
        if a in "yx" and units:
            entry["unit"] = "micrometer"
        axis_meta.append(entry)
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [
                {
                    "type": "scale",
                    "scale": [
                        s * (2**k if a in "yx" else 1) for s, a in zip(scale0, axes, strict=True)
                    ],
                }
            ],
        }
        for k in range(len(levels))
    ]
    multiscales = [{"version": version, "axes": axis_meta, "datasets": datasets}]
    attrs = {"multiscales": multiscales}
    if omero is not None:
        attrs["omero"] = omero
    if version == "0.5":
        attrs = {"ome": {"version": "0.5", **attrs}}
    root.attrs.update(attrs)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_cyx_pyramid_names_pixel_size_and_windows(tmp_path, rng, version):
    data = rng.integers(0, 4000, size=(3, 40, 36), dtype=np.uint16)
    levels = [data, data[:, ::2, ::2]]
    omero = {
        "channels": [
            {"label": name, "window": {"start": 10, "end": 3000 + i, "min": 0, "max": 65535}}
            for i, name in enumerate(["CARS", "TPEF", "SHG"])
        ]
    }
    write_ome_zarr_raw(
        tmp_path / "s.ome.zarr",
        levels,
        version=version,
        axes="cyx",
        scale0=(1, 0.5, 0.25),
        omero=omero,
    )
    slide = open_slide(tmp_path / "s.ome.zarr")
    assert slide.name == "s"
    assert slide.channel_names == ("CARS", "TPEF", "SHG")
    assert slide.pixel_size == (0.5, 0.25)
    assert slide.contrast_limits == ((10.0, 3000.0), (10.0, 3001.0), (10.0, 3002.0))
    assert slide.display_contrast_limits() == slide.contrast_limits
    assert [lvl.shape for lvl in slide.levels] == [(3, 40, 36), (3, 20, 18)]
    for got, want in zip(slide.levels, levels, strict=True):
        np.testing.assert_array_equal(got.compute(), want)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_tczyx_singletons_and_2d(tmp_path, rng, version):
    data = rng.integers(0, 255, size=(1, 2, 1, 30, 20), dtype=np.uint8)
    write_ome_zarr_raw(
        tmp_path / "t.zarr", [data], version=version, axes="tczyx", scale0=(1, 1, 1, 2, 2)
    )
    slide = open_slide(tmp_path / "t.zarr", pyramid_cache=False)
    assert slide.shape == (2, 30, 20)
    assert slide.channel_names == ("channel_0", "channel_1")
    assert slide.pixel_size == (2.0, 2.0)
    np.testing.assert_array_equal(slide.levels[0].compute(), data[0, :, 0])

    gray = rng.random((30, 20), dtype=np.float32)
    write_ome_zarr_raw(
        tmp_path / "g.zarr", [gray], version=version, axes="yx", scale0=(1, 1), units=False
    )
    slide = open_slide(tmp_path / "g.zarr")
    assert slide.shape == (1, 30, 20) and slide.pixel_size is None
    np.testing.assert_array_equal(slide.levels[0].compute()[0], gray)


def test_zarr_store_without_multiscales_is_an_error(tmp_path):
    root = zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    root.create_array("0", data=np.zeros((4, 4), np.uint8))
    with pytest.raises(
        PatchwiseError,
        match=r"plain\.zarr: zarr store has no OME multiscales metadata — write it as OME-Zarr",
    ):
        open_slide(tmp_path / "plain.zarr")
    zarr.create_array(tmp_path / "bare.zarr", data=np.zeros((4, 4), np.uint8))
    with pytest.raises(PatchwiseError, match=r"bare\.zarr: is a bare zarr array"):
        open_slide(tmp_path / "bare.zarr")


def test_format_detection(tmp_path):
    (tmp_path / "a.OME.TIF").write_bytes(b"")
    (tmp_path / "b.jpeg").write_bytes(b"")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "zarr.json").write_text("{}")
    assert image_format(tmp_path / "a.OME.TIF") == "tiff"
    assert image_format(tmp_path / "b.jpeg") == "image"
    assert image_format(tmp_path / "store") == "zarr"


def test_png_rgb_gray_and_rgba(tmp_path, rng):
    rgb = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    slide = open_slide(tmp_path / "rgb.png")
    assert slide.channel_names == ("R", "G", "B") and slide.shape == (3, 20, 30)
    np.testing.assert_array_equal(slide.levels[0].compute(), np.moveaxis(rgb, -1, 0))

    rgba = rng.integers(0, 255, size=(20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(
        open_slide(tmp_path / "rgba.png").levels[0].compute(), np.moveaxis(rgba[..., :3], -1, 0)
    )

    gray = rng.integers(0, 60000, size=(20, 30), dtype=np.uint16)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    slide = open_slide(tmp_path / "gray.png")
    assert slide.shape == (1, 20, 30) and slide.channel_names == ("channel_0",)
    np.testing.assert_array_equal(slide.levels[0].compute()[0], gray)


def test_jpeg_reads_approximately(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([yy * 4, xx * 4, (yy + xx) * 2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    level = open_slide(tmp_path / "x.jpg").levels[0].compute()
    assert level.shape == (3, 32, 48)
    assert np.abs(level.astype(int) - np.moveaxis(rgb, -1, 0)).mean() < 3


def test_corrupt_png_is_an_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(PatchwiseError, match=r"bad\.png: not a readable PNG/JPEG"):
        open_slide(tmp_path / "bad.png")
