"""``patchwise synth`` and ``patchwise convert``: valid files, clear one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr
from skimage.io import imsave

from napari_patchwise.cli.main import main
from napari_patchwise.io import open_slide
from napari_patchwise.io.pyramid import block_mean


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_synth_writes_a_pyramidal_slide_and_mask(tmp_path, capsys):
    out = tmp_path / "slide.ome.tif"
    rc = main(
        ["synth", "--size", "300", "400", "--out", str(out), "--seed", "3"]
        + ["--tile", "64", "--quiet"]
    )
    assert rc == 0
    assert capsys.readouterr().out.split() == [str(out), str(tmp_path / "slide_mask.tif")]
    slide = open_slide(out, mask=tmp_path / "slide_mask.tif")
    assert slide.shape == (3, 300, 400)
    assert slide.channel_names == ("CARS", "TPEF", "SHG")
    assert slide.pixel_size == (0.5, 0.5)
    assert [lvl.shape[1:] for lvl in slide.levels] == [(300, 400), (150, 200)]
    assert slide.mask_kind == "3class"
    assert set(np.unique(slide.mask.compute())) == {0, 1, 2}
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].tilewidth == 64


def test_synth_zarr_with_explicit_mask_path(tmp_path):
    out, mask = tmp_path / "s.ome.zarr", tmp_path / "labels" / "m.tif"
    rc = main(
        ["synth", "--size", "200", "200", "--out", str(out), "--mask-out", str(mask)]
        + ["--spurious", "0.5", "--quiet"]
    )
    assert rc == 0 and mask.is_file()
    assert json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["version"] == "0.5"
    slide = open_slide(out, mask=mask)
    assert slide.shape == (3, 200, 200)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spurious", "2"], "argument --spurious: '2' is outside [0, 1]"),
        (["--tile", "100"], "argument --tile: 100 is not a multiple of 16"),
        (["--size", "4", "4"], "too small"),
    ],
)
def test_synth_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = ["synth", "--size", "64", "64", "--out", str(tmp_path / "s.ome.tif"), "--quiet"]
    assert main(base + args) == 2
    line = _error_line(capsys)
    assert line.startswith("patchwise synth: error:") and message in line
    assert list(tmp_path.iterdir()) == []


def test_synth_bad_output_name(tmp_path, capsys):
    assert main(["synth", "--size", "64", "64", "--out", str(tmp_path / "s.png")]) == 2
    assert "unknown output type" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def plain_tiff(tmp_path, rng):
    """A single-level, striped, uint16, channel-first TIFF without OME metadata."""
    data = rng.integers(0, 4000, (3, 600, 500), dtype=np.uint16)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    return path, data


def test_convert_builds_the_missing_pyramid(tmp_path, plain_tiff, capsys):
    src, data = plain_tiff
    out = tmp_path / "out" / "converted.ome.tif"
    rc = main(
        ["convert", str(src), "--out", str(out), "--quiet", "--tile", "128"]
        + ["--channel-names", "CARS", "TPEF", "SHG", "--pixel-size", "0.25"]
    )
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # scratch removed
    with tifffile.TiffFile(out) as tif:
        levels = tif.series[0].levels
        assert [lvl.shape for lvl in levels] == [(3, 600, 500), (3, 300, 250), (3, 150, 125)]
        np.testing.assert_array_equal(levels[0].asarray(), data)
        # Level 1 is the 2x2 block mean of level 0 (rounded), level 2 that of level 1.
        expected1 = block_mean(data.reshape(3, 300, 2, 250, 2), axis=(2, 4))
        np.testing.assert_array_equal(levels[1].asarray(), expected1)
        expected2 = block_mean(expected1.reshape(3, 150, 2, 125, 2), axis=(2, 4))
        np.testing.assert_array_equal(levels[2].asarray(), expected2)
        assert tif.pages[0].tilewidth == 128 and tif.pages[0].dtype == np.uint16
    slide = open_slide(out)
    assert slide.channel_names == ("CARS", "TPEF", "SHG")
    assert slide.pixel_size == (0.25, 0.25)


def test_convert_pyramidal_tiff_to_ome_zarr_v04_reuses_levels(tmp_path):
    src = tmp_path / "s.ome.tif"
    assert main(["synth", "--size", "600", "300", "--out", str(src), "--quiet"]) == 0
    out = tmp_path / "s.ome.zarr"
    assert main(["convert", str(src), "--out", str(out), "--zarr-version", "0.4", "--quiet"]) == 0
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["multiscales"][0]["version"] == "0.4"
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["CARS", "TPEF", "SHG"]
    root = zarr.open_group(out, mode="r")
    with tifffile.TiffFile(src) as tif:
        stored = [lvl.asarray() for lvl in tif.series[0].levels]
    assert len(stored) == 3 and "3" not in root  # 600 -> 300 -> 150 rows
    for k, level in enumerate(stored):
        np.testing.assert_array_equal(root[str(k)][:], level)


def test_convert_png_and_label_mask(tmp_path, rng):
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    imsave(tmp_path / "photo.png", rgb, check_contrast=False)
    out = tmp_path / "photo.ome.tif"
    assert main(["convert", str(tmp_path / "photo.png"), "--out", str(out), "--quiet"]) == 0
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray(), rgb.transpose(2, 0, 1))

    labels = np.zeros((1, 600, 400), dtype=np.uint8)
    labels[0, 100:300, 50:250] = 2
    labels[0, 300:301, 0:400] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels[0])
    out = tmp_path / "labels.ome.tif"
    assert (
        main(["convert", str(tmp_path / "labels.tif"), "--out", str(out), "--labels", "--quiet"])
        == 0
    )
    with tifffile.TiffFile(out) as tif:
        level1 = tif.series[0].levels[1].asarray()
    assert set(np.unique(level1)) <= {0, 1, 2}  # nearest: no blended class values
    np.testing.assert_array_equal(np.squeeze(level1), labels[0, ::2, ::2])


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.tif", "--out", "x.ome.tif"], "no such file"),
        (["plain.tif", "--out", "x.jpg"], "unknown output type"),
        (["plain.tif", "--out", "plain.tif"], "overwrite the input"),
        (["plain.tif", "--out", "x.ome.tif", "--tile", "40"], "multiple of 16"),
    ],
)
def test_convert_bad_input_exit_2_with_one_line(
    tmp_path, plain_tiff, capsys, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", *args, "--quiet"]) == 2
    line = _error_line(capsys)
    assert line.startswith("patchwise convert: error:") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_installed_command_exits_2_on_bad_input(tmp_path):
    """The real entry point: one stderr line, exit code 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "napari_patchwise.cli", "convert", str(tmp_path / "nope.tif")]
        + ["--out", str(tmp_path / "x.ome.tif")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("keep", [0.5, 200])
def test_truncated_tiff_is_one_line_error_without_tifffile_log_lines(tmp_path, keep):
    # tifffile logged "invalid page offset" (or tag offsets) and carried on with what was
    # left: one channel of three, exit 0. Our one-line error must be all the user sees.
    full = tmp_path / "full.tif"
    image = np.arange(3 * 256 * 256, dtype=np.uint8).reshape(3, 256, 256)
    tifffile.imwrite(full, image, photometric="minisblack", tile=(64, 64), compression="zlib")
    data = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    out = tmp_path / "out.ome.tif"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_patchwise.cli", "convert", str(cut), "--out", str(out)]
        + ["--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"patchwise convert: error: {cut}: not a readable TIFF (file is ")
    assert "truncated or damaged" in lines[0]
    assert not out.exists()
