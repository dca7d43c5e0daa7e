"""Damaged inputs end in one line naming the file (and the tile or chunk), never zeros.

A corpus of small files, each broken in one way a user meets in the wild (helpers in
``_damaged.py``), drives the ``patchwise`` command in-process: every row must exit with
status 2 and exactly one line on stderr, no traceback, naming the file and, where the
damage is in one tile or chunk, that tile or chunk. Before these checks the same files
gave OpenSlide / pydicom / numcodecs tracebacks, or were read silently wrong: a lost zarr
chunk as a black block or zero feature vectors, a DICOM folder without its full-resolution
instance at the next level, a polygon beyond 1e19 px as no tumor at all.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import _damaged as D
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError

SIDE = 256  # the vendor slides and the OME-Zarr image are 256 x 256 pixels


def _has(module: str) -> bool:
    try:
        if module == "openslide":
            import openslide  # noqa: F401 - also needs its shared library
        return importlib.util.find_spec(module) is not None
    except (ImportError, OSError):
        return False


needs_openslide = pytest.mark.skipif(not _has("openslide"), reason="the 'wsi' extra (OpenSlide)")
needs_wsidicom = pytest.mark.skipif(not _has("wsidicom"), reason="the 'wsi' extra (wsidicom)")
needs_torch = pytest.mark.skipif(not _has("torch"), reason="torch is not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Every damaged file (and the good masks and checkpoint the commands also need)."""
    d = tmp_path_factory.mktemp("damaged")
    D.write_mask(d / "mask.tif", SIDE)
    D.write_mask(d / "mask64.tif", 64)
    if _has("openslide"):
        D.svs_with_bad_tile(d / "bad_jpeg.svs", compression="jpeg")
        D.svs_with_bad_tile(d / "bad_zlib.svs", compression="zlib")
    if _has("wsidicom"):
        D.dicom_cut(d / "cut_dicom")
        D.dicom_without_level0(d / "no_level0")
    image = D.ome_zarr_image(d / "image.ome.zarr", SIDE, chunk=64)
    D.chunk_file(D.copy_store(image, d / "lost.ome.zarr"), "0", (0, 1, 2)).unlink()
    D.truncate(D.chunk_file(D.copy_store(image, d / "cut.ome.zarr"), "0", (1, 2, 1)))
    D.deep_geojson(d / "deep.geojson")
    D.huge_coordinates_geojson(d / "huge.geojson", SIDE)
    D.tiff_unknown_compression(d / "unknown.tif", 64)
    if _has("torch"):
        D.smallcnn_checkpoint(d / "best.pt", channels=3, patch=16)
    return d


STATS = ["--patch-size", "16", "--quiet", "--out", "out.csv"]
INTENSITY = ["--tissue", "intensity"]
PREDICT = ["--checkpoint", "best.pt", "--device", "cpu", "--quiet", "--out", "pred.csv"]
CONVERT = ["--quiet", "--out", "out.ome.tif"]
JPEG_TILE = "bad_jpeg.svs: tile (row 1, column 1) of level 0 cannot be decoded"
ZLIB_TILE = "bad_zlib.svs: tile (row 1, column 1) of level 0 cannot be decoded"
CUT_TILE = "cut_dicom: tile (row 2, column 2) of level 0 cannot be decoded"
NO_LEVEL0 = "no_level0: the slide's full-resolution level is missing"
LOST = "lost.ome.zarr: chunk 0/c/0/1/2 is missing"
CUT_CHUNK = "cut.ome.zarr: chunk 0/c/1/2/1 cannot be decoded"
# convert reads whole channel rows on many threads; the chunk-by-chunk search that names
# the bad chunk has (rarely, under load) come back empty there, leaving the read's range
UNKNOWN = "unknown.tif: its pixels cannot be decoded (34999 is not a known COMPRESSION)"

# (id, argv, what the one line must contain, marks)
# fmt: off
ROWS = [
    ("svs-jpeg-stats", ["stats", "bad_jpeg.svs", "--mask", "mask.tif", *INTENSITY, *STATS], JPEG_TILE, [needs_openslide]),
    ("svs-jpeg-convert", ["convert", "bad_jpeg.svs", *CONVERT], JPEG_TILE, [needs_openslide]),
    ("svs-zlib-stats", ["stats", "bad_zlib.svs", "--mask", "mask.tif", *INTENSITY, *STATS], ZLIB_TILE, [needs_openslide]),
    ("svs-zlib-convert", ["convert", "bad_zlib.svs", *CONVERT], ZLIB_TILE, [needs_openslide]),
    ("svs-zlib-predict", ["predict", "bad_zlib.svs", *PREDICT], ZLIB_TILE, [needs_openslide, needs_torch]),
    ("dicom-cut-stats", ["stats", "cut_dicom", "--mask", "mask.tif", *INTENSITY, *STATS], CUT_TILE, [needs_wsidicom]),
    ("dicom-cut-convert", ["convert", "cut_dicom", *CONVERT], CUT_TILE, [needs_wsidicom]),
    ("dicom-no-level0-convert", ["convert", "no_level0", *CONVERT], NO_LEVEL0, [needs_wsidicom]),
    ("dicom-no-level0-predict", ["predict", "no_level0", *PREDICT], NO_LEVEL0, [needs_wsidicom, needs_torch]),
    ("zarr-lost-chunk-stats", ["stats", "lost.ome.zarr", "--mask", "mask.tif", *INTENSITY, *STATS], LOST, []),
    ("zarr-lost-chunk-convert", ["convert", "lost.ome.zarr", *CONVERT], LOST, []),
    ("zarr-lost-chunk-predict", ["predict", "lost.ome.zarr", *PREDICT], LOST, [needs_torch]),
    ("zarr-cut-chunk-stats", ["stats", "cut.ome.zarr", "--mask", "mask.tif", *INTENSITY, *STATS], CUT_CHUNK, []),
    ("zarr-cut-chunk-convert", ["convert", "cut.ome.zarr", *CONVERT], CUT_CHUNK, []),
    ("tiff-unknown-compression-stats", ["stats", "unknown.tif", "--mask", "mask64.tif", *STATS], UNKNOWN, []),
    ("tiff-unknown-compression-convert", ["convert", "unknown.tif", *CONVERT], UNKNOWN, []),
    ("geojson-deep", ["stats", "image.ome.zarr", "--mask", "deep.geojson", *STATS], "deep.geojson: not a GeoJSON file: nested deeper", []),
    ("geojson-huge-coordinates", ["stats", "image.ome.zarr", "--mask", "huge.geojson", *STATS], "huge.geojson: feature 1 (Tumor): coordinate 3e+19 is beyond any slide", []),
]
# fmt: on


def _params():
    for name, argv, text, marks in ROWS:
        yield pytest.param(argv, text, id=name, marks=marks)


def _one_line_error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"patchwise {argv[0]}: error: "), err
    return lines[0]


@pytest.mark.parametrize(("argv", "text"), list(_params()))
def test_a_damaged_file_is_one_line_naming_it(corpus, argv, text, capsys, monkeypatch):
    monkeypatch.chdir(corpus)
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(corpus / "cache"))
    before = sorted(p.name for p in corpus.iterdir())
    line = _one_line_error(argv, capsys)
    assert text in line, line
    assert sorted(p.name for p in corpus.iterdir()) == before  # no output left behind


# -- zarr: what counts as missing ----------------------------------------------------------------
def test_a_mask_store_may_leave_out_background_chunks(corpus, tmp_path):
    """zarr omits chunks equal to the fill value: a label image reads them as 0."""
    from napari_patchwise.io.formats import load_image

    lost = D.copy_store(corpus / "lost.ome.zarr", tmp_path / "lost.ome.zarr")
    labels = load_image(lost, labels=True).levels[0]
    level0 = np.asarray(labels)
    assert (level0[0, 64:128, 128:192] == 0).all()  # the lost chunk: fill value
    good = np.asarray(load_image(corpus / "image.ome.zarr").levels[0])
    assert good[0, 64:128, 128:192].any()
    keep = np.ones(level0.shape, bool)
    keep[0, 64:128, 128:192] = False
    np.testing.assert_array_equal(level0[keep], good[keep])
    with pytest.raises(PatchwiseError, match=r"chunk 0/c/0/1/2 is missing"):
        np.asarray(load_image(lost).levels[0])


def test_written_images_keep_their_all_zero_chunks(tmp_path):
    """An image with black regions is written whole, so it reads back without a gap."""
    import dask.array as da

    from napari_patchwise.io.formats import load_image
    from napari_patchwise.io.write import write_ome_zarr

    image = np.zeros((2, 128, 128), np.uint8)
    image[:, :64, :64] = 7
    for version in ("0.5", "0.4"):
        out = write_ome_zarr(
            tmp_path / f"v{version}.ome.zarr", da.from_array(image), chunk=64, version=version
        )
        chunks = [
            p
            for p in (out / "0").rglob("*")
            if p.is_file() and not p.name.startswith((".", "zarr"))
        ]
        assert len(chunks) == 2 * 2 * 2  # channels x rows x columns, zeros included
        np.testing.assert_array_equal(np.asarray(load_image(out).levels[0]), image)


def test_a_dicom_folder_with_every_level_still_opens(tmp_path):
    pytest.importorskip("wsidicom")
    from napari_patchwise.io.formats import load_image

    folder = tmp_path / "whole"
    D.dicom_folder(folder)
    loaded = load_image(folder)
    assert [lvl.shape for lvl in loaded.levels] == [(3, SIDE, SIDE), (3, SIDE // 2, SIDE // 2)]


# -- feature stores --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny cohort and its feature store (2 patch ranges of 2 rows per slide)."""
    pytest.importorskip("torch")
    from _cohort import make_cohort
    from napari_patchwise.training.embed import EmbedSource, embed

    folder = tmp_path_factory.mktemp("features")
    manifest = make_cohort(folder)
    checkpoint = D.smallcnn_checkpoint(folder / "best.pt", channels=2)
    features = folder / "features.zarr"
    embed(manifest, features, EmbedSource(checkpoint=str(checkpoint)), device="cpu", chunk_rows=2)
    return manifest, features


@pytest.mark.torch
@pytest.mark.parametrize(
    ("damage", "text"),
    [
        ("lost", "lost.zarr: chunk vectors/1/c/1/0 is missing"),
        ("cut", "cut.zarr: chunk vectors/2/c/1/0 cannot be decoded"),
        (
            "lost flag",
            "lost flag.zarr: damaged feature store: patch range 1 of slide 3 is not written",
        ),
    ],
)
def test_a_damaged_feature_store_is_one_line(store, tmp_path, damage, text, capsys):
    manifest, features = store
    damaged = D.copy_store(features, tmp_path / f"{damage}.zarr")
    if damage == "lost":
        D.chunk_file(damaged, "vectors/1", (1, 0)).unlink()
    elif damage == "cut":
        D.truncate(D.chunk_file(damaged, "vectors/2", (1, 0)))
    else:
        D.chunk_file(damaged, "done/3", (1,)).unlink()
    argv = ["train", str(manifest), "--features", str(damaged), "--method", "erm", "--steps", "2"]
    line = _one_line_error(
        [*argv, "--num-threads", "1", "--quiet", "--out", str(tmp_path / "r")], capsys
    )
    assert text in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.torch
def test_an_all_zero_patch_range_is_written(store, tmp_path):
    """A range whose vectors are all 0 is a chunk file too (else it would read as lost)."""
    from napari_patchwise.io.feature_store import read_features, write_chunk

    _, features = store
    copy = D.copy_store(features, tmp_path / "zeros.zarr")
    D.chunk_file(copy, "vectors/0", (0, 0)).unlink()
    write_chunk(copy, 0, 0, np.zeros((2, read_features(features).vectors.shape[1]), np.float16))
    assert D.chunk_file(copy, "vectors/0", (0, 0)).is_file()
    assert not read_features(copy).vectors[:2].any()


# -- Ctrl-C of a local cluster ---------------------------------------------------------------------
def test_ctrl_c_of_stats_on_a_local_cluster_is_one_line(tmp_path):
    """SIGINT to the process group (what a terminal's Ctrl-C does) while the worker
    computes: the command says "interrupted", the worker prints nothing."""
    pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    side = 6144  # ~10 s of work for one worker: intensity tissue and attributes
    image = np.random.default_rng(0).integers(0, 255, (3, side, side), np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(512, 512), photometric="minisblack",
                     planarconfig="separate")  # fmt: skip
    del image
    mask = np.zeros((side, side), np.uint8)
    mask[1000:5000, 1000:5000] = 1
    tifffile.imwrite(tmp_path / "big_mask.tif", mask, tile=(512, 512), compression="zlib")
    argv = ["stats", "big.tif", "--mask", "big_mask.tif", "--patch-size", "16", "--tissue",
            "intensity", "--attributes", "intensity,border", "--workers", "1", "--quiet",
            "--out", "out.csv"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_patchwise.cli", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_a_busy_worker(psutil.Process(proc.pid), psutil)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines() == ["patchwise stats: interrupted"], err.decode()
    assert not (tmp_path / "out.csv").exists()


def _wait_for_a_busy_worker(parent, psutil, timeout: float = 120) -> None:
    """Until a worker process (a grandchild running Python) has computed for a while."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            workers = [
                p for p in parent.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())
            ]
            # ~2 s of CPU go to its imports; past 3 s it is well into its tasks
            if any(sum(w.cpu_times()[:2]) > 3.0 for w in workers):
                return
        except psutil.NoSuchProcess:
            if not parent.is_running():
                raise AssertionError("stats ended before the interrupt") from None
        time.sleep(0.1)
    raise AssertionError("no worker started computing")
