"""OME-Zarr chunks that zarr left out on purpose read as the fill value; lost ones do not.

zarr 3 does not store a chunk that holds only the fill value (``write_empty_chunks`` is
False by default), so an OME-Zarr image from another tool with black regions has absent
chunks that are not damage. A reader cannot see why a chunk is absent; the pyramid
can: a chunk left out for being empty covers a region of the next coarser level (computed
from it) that is all fill value too, while a lost chunk with pixels shows there. These
tests write a pyramid with zarr's defaults (the way ome-zarr-py and zarr users write
one), run ``stats``, ``convert`` and ``predict`` on it and on the same pyramid written
with every chunk, and check the numbers are the same; a lost chunk stays one line.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

import _damaged as D
from _wsi import pyramid
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.zarr import AbsentChunksWarning, CheckedChunks, read_ome_zarr

SIDE, CHUNK, LEVELS = 256, 32, 3


def zeroed_slide() -> np.ndarray:
    """The brightfield slide with black edges: zero rows on top, zero columns on the left."""
    image = D.slide_rgb(SIDE)
    image[:64] = 0  # two chunk rows at level 0, one at level 1
    image[:, :96] = 0  # three chunk columns at level 0, one at level 1
    return image


def zarr_pyramid(path: Path, image: np.ndarray, n_levels: int, every_chunk: bool) -> Path:
    """An OME-Zarr v0.5 pyramid (nearest downsampling) written by zarr 3 itself.

    ``every_chunk=False`` keeps zarr's default (all-zero chunks are not stored);
    ``True`` stores them too.
    """
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=3)
    datasets = []
    for k, level in enumerate(pyramid(image, n_levels)):
        cyx = np.ascontiguousarray(np.moveaxis(level, -1, 0))
        extra = {"config": {"write_empty_chunks": True}} if every_chunk else {}
        array = root.create_array(
            str(k), shape=cyx.shape, dtype=cyx.dtype, chunks=(1, CHUNK, CHUNK), **extra
        )
        array[...] = cyx
        scale = [1.0, 0.5 * 2**k, 0.5 * 2**k]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    return path


def absent_chunks(store: Path, level: str) -> list[tuple[int, ...]]:
    """The chunk coordinates of ``level`` with no file in ``store``."""
    import zarr

    array = zarr.open_array(store / level, mode="r")
    grid = [-(-n // c) for n, c in zip(array.shape, array.chunks, strict=True)]
    return [c for c in np.ndindex(*grid) if not D.chunk_file(store, level, c).is_file()]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("absent")
    zarr_pyramid(d / "sparse.ome.zarr", zeroed_slide(), LEVELS, every_chunk=False)
    zarr_pyramid(d / "dense.ome.zarr", zeroed_slide(), LEVELS, every_chunk=True)
    D.write_mask(d / "mask.tif", SIDE)
    if importlib.util.find_spec("torch") is not None:
        D.smallcnn_checkpoint(d / "best.pt", channels=3, patch=16)
    return d


def test_zarr_leaves_the_black_chunks_out(stores):
    """The fixture is what the tests need: absent chunks at level 0 and 1, none at 2."""
    # level 0: 2 zero rows + 3 zero columns of an 8 x 8 grid, 3 channels
    assert len(absent_chunks(stores / "sparse.ome.zarr", "0")) == 3 * (8 * 8 - 6 * 5)
    assert len(absent_chunks(stores / "sparse.ome.zarr", "1")) == 3 * (4 * 4 - 3 * 3)
    assert absent_chunks(stores / "sparse.ome.zarr", "2") == []
    assert all(absent_chunks(stores / "dense.ome.zarr", str(k)) == [] for k in range(LEVELS))


def test_absent_empty_chunks_read_as_zero_without_a_warning(stores):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AbsentChunksWarning)
        loaded = read_ome_zarr(stores / "sparse.ome.zarr")
        for k, expected in enumerate(pyramid(zeroed_slide(), LEVELS)):
            np.testing.assert_array_equal(
                np.asarray(loaded.levels[k]), np.moveaxis(expected, -1, 0)
            )


def _outputs(command: str, store: Path, d: Path) -> object:
    out = d / f"{store.name}.{command}.{'ome.tif' if command == 'convert' else 'csv'}"
    argv = {
        "stats": ["--mask", "mask.tif", "--tissue", "intensity", "--patch-size", "16"],
        "convert": [],
        "predict": ["--checkpoint", "best.pt", "--device", "cpu"],
    }[command]
    assert main([command, store.name, *argv, "--quiet", "--out", out.name]) == 0
    if command == "convert":
        with tifffile.TiffFile(out) as tif:
            return [level.asarray() for level in tif.series[0].levels]
    table = pd.read_csv(out)
    named = table.astype(str).apply(lambda col: col.str.contains(store.name.split(".")[0]).any())
    return table.drop(columns=list(table.columns[named]))  # the slide's name


@pytest.mark.parametrize("command", ["stats", "convert", "predict"])
def test_commands_give_the_numbers_of_the_store_with_every_chunk(stores, command, monkeypatch):
    if command == "predict":
        pytest.importorskip("torch")
    monkeypatch.chdir(stores)
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(stores / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", AbsentChunksWarning)
        sparse = _outputs(command, stores / "sparse.ome.zarr", stores)
    dense = _outputs(command, stores / "dense.ome.zarr", stores)
    if command == "convert":
        assert len(sparse) == len(dense) >= 1
        for a, b in zip(sparse, dense, strict=True):
            np.testing.assert_array_equal(a, b)
        assert not sparse[0][..., :96].any() and sparse[0].any()
    else:
        assert len(sparse) > 0
        pd.testing.assert_frame_equal(sparse, dense)


# -- a lost chunk with pixels stays refused --------------------------------------------------------
def _one_line_error(argv: list[str], capsys) -> str:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["stats", "convert"])
def test_a_lost_chunk_with_pixels_in_a_pyramid_is_one_line(stores, tmp_path, command, capsys):
    lost = D.copy_store(stores / "sparse.ome.zarr", tmp_path / "lost.ome.zarr")
    D.chunk_file(lost, "0", (1, 4, 4)).unlink()  # tissue, in the middle of level 0
    argv = {
        "stats": [
            "--mask",
            str(stores / "mask.tif"),
            "--tissue",
            "intensity",
            "--patch-size",
            "16",
        ],
        "convert": [],
    }[command]
    out = tmp_path / ("out.ome.tif" if command == "convert" else "out.csv")
    line = _one_line_error([command, str(lost), *argv, "--quiet", "--out", str(out)], capsys)
    assert f"{lost}: chunk 0/c/1/4/4 is missing" in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    ("level", "chunk"),
    [
        ("0", (2, 2, 3)),  # tissue next to the black columns (their edge is not checked)
        ("0", (0, 7, 7)),  # the bottom-right corner of the array
        ("1", (0, 2, 1)),  # a finer level that is not level 0
    ],
)
def test_a_lost_chunk_is_found_at_any_level_but_the_coarsest(stores, tmp_path, level, chunk):
    lost = D.copy_store(stores / "sparse.ome.zarr", tmp_path / "lost.ome.zarr")
    D.chunk_file(lost, level, chunk).unlink()
    key = f"{level}/c/{'/'.join(map(str, chunk))}"
    with pytest.raises(PatchwiseError, match=f"chunk {key} is missing"):
        np.asarray(read_ome_zarr(lost).levels[int(level)])


def test_each_absent_chunk_is_checked_once(stores, monkeypatch):
    """The coarser region is read once per absent chunk, however often the chunk is read."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    region = CheckedChunks._coarser_region

    def spy(self, chunk):
        seen.append((self._array.path, chunk))
        return region(self, chunk)

    monkeypatch.setattr(CheckedChunks, "_coarser_region", spy)
    level0 = read_ome_zarr(stores / "sparse.ome.zarr").levels[0]
    for _ in range(2):
        np.asarray(level0)
        np.asarray(level0[:, :40, :40])
    absent = absent_chunks(stores / "sparse.ome.zarr", "0")
    assert sorted(c for p, c in seen if p == "0") == sorted(absent)


# -- no coarser level: the fill value, with one warning --------------------------------------------
def test_a_single_level_image_reads_absent_chunks_as_zero_with_one_warning(tmp_path):
    store = zarr_pyramid(tmp_path / "single.ome.zarr", zeroed_slide(), 1, every_chunk=False)
    n = len(absent_chunks(store, "0"))
    assert n == 3 * (8 * 8 - 6 * 5)
    with pytest.warns(AbsentChunksWarning) as record:
        level0 = read_ome_zarr(store).levels[0]
        np.testing.assert_array_equal(np.asarray(level0), np.moveaxis(zeroed_slide(), -1, 0))
        np.asarray(level0)  # read again: no second warning
        np.asarray(read_ome_zarr(store).levels[0])  # nor when opened again
    messages = [str(w.message) for w in record if w.category is AbsentChunksWarning]
    assert len(messages) == 1 and len(messages[0].splitlines()) == 1
    assert messages[0].startswith(f"{store}: {n} of the {3 * 8 * 8} chunks of level 0 ")


def test_the_coarsest_level_checks_absent_chunks_against_the_finer_one(tmp_path):
    """Chunks absent at every level: the finer ones check out against the coarser, the
    coarsest against the finer (no warning); a lost coarsest chunk warns."""
    image = zeroed_slide()
    image[:, :128] = 0  # a whole chunk column at level 2 too
    store = zarr_pyramid(tmp_path / "black.ome.zarr", image, LEVELS, every_chunk=False)
    assert len(absent_chunks(store, "2")) == 3 * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", AbsentChunksWarning)
        loaded = read_ome_zarr(store)
        for k, expected in enumerate(pyramid(image, LEVELS)):
            np.testing.assert_array_equal(
                np.asarray(loaded.levels[k]), np.moveaxis(expected, -1, 0)
            )
    D.chunk_file(store, "2", (0, 1, 1)).unlink()  # tissue: nothing coarser to tell
    with pytest.warns(AbsentChunksWarning, match="7 of the 12 chunks of level 2"):
        level2 = np.asarray(read_ome_zarr(store).levels[2])
    assert not level2[0, 32:, 32:].any()  # read as the fill value, as zarr does


def test_a_patchwise_store_has_every_chunk_so_any_absent_one_is_lost(tmp_path):
    """patchwise marks its stores; a chunk absent from one is lost even at the coarsest level."""
    import zarr

    image = D.ome_zarr_image(tmp_path / "image.ome.zarr", SIDE, chunk=64)
    assert zarr.open_array(image / "0", mode="r").attrs["napari_patchwise"] == {
        "every_chunk_written": True
    }
    D.chunk_file(image, "0", (2, 3, 3)).unlink()  # white glass in the corner of the only level
    with pytest.raises(PatchwiseError, match="chunk 0/c/2/3/3 is missing"):
        np.asarray(read_ome_zarr(image).levels[0])
