"""The training patch cache: keyed by what it was built from, safe names, self-repair, Ctrl-C.

Every edit here keeps the file's size and modification time (``os.utime`` back), the
case a size+mtime key served stale; see docs/caches.md.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile

from _cohort import make_cohort, write_slide
from napari_patchwise.io.fingerprint import fingerprint
from napari_patchwise.settings import PatchSettings
from napari_patchwise.training import data as data_module
from napari_patchwise.training.data import cache_stem, load_cohort

SETTINGS = PatchSettings(patch_size=8)


@pytest.fixture
def cohort_dir(tmp_path):
    make_cohort(tmp_path, splits=("train", "val"), cells=4, patch=8)
    return tmp_path


def edit_in_place(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` without changing its size, then restore its mtime."""
    before = os.stat(path)
    # The status-change time has the kernel's clock-tick resolution (a few ms): make sure
    # the edit falls in a later tick than the file's creation, as any real edit does.
    time.sleep(0.05)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def data_offset(path: Path, page: int = 0) -> int:
    """Offset of the first strip/tile of ``page`` (uncompressed TIFFs written by tifffile)."""
    with tifffile.TiffFile(path) as tif:
        return int(tif.pages[page].dataoffsets[0])


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / ".patchwise-cache").iterdir())


# -- content changes --------------------------------------------------------------------
def test_tiff_edited_in_place_with_size_and_mtime_restored_rebuilds_the_cache(cohort_dir):
    train = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    assert np.load(train.cache)[0, 0, 0].tolist() != [7] * 8
    image = cohort_dir / "s0.ome.tif"
    # channel 0 is the first page; its first 8 bytes are row 0, x 0..7 of patch (0, 0)
    edit_in_place(image, data_offset(image), bytes([7] * 8))

    rebuilt = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    assert rebuilt.cache != train.cache
    patches = np.load(rebuilt.cache)
    assert patches[0, 0, 0].tolist() == [7] * 8
    assert np.array_equal(patches[1:], np.load(train.cache)[1:])


def test_mask_edited_in_place_gives_the_new_labels(cohort_dir):
    """`train` must see the labels `stats` sees: the mask is part of the key."""
    first = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    mask = cohort_dir / "s0_mask.tif"
    values = tifffile.imread(mask)
    # make patch (row 0, col 1) all tumor: rows 0..7, x 8..15 of a 32-px-wide uint8 mask
    offset = data_offset(mask)
    for row in range(8):
        edit_in_place(mask, offset + row * values.shape[1] + 8, bytes([2] * 8))
    values[:8, 8:16] = 2
    assert np.array_equal(tifffile.imread(mask), values)

    again = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    assert again.cache != first.cache
    row = again.table.set_index(["row", "col"]).loc[(0, 1)]
    assert (row["n_tumor"], row["label"]) == (64, 1)
    assert first.table.set_index(["row", "col"]).loc[(0, 1), "n_tumor"] != 64


def test_ome_zarr_chunk_edited_in_place_rebuilds_the_cache(tmp_path):
    import zarr

    from napari_patchwise.io.write import write_ome_zarr

    image = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32) % 251
    store = tmp_path / "z.ome.zarr"
    write_ome_zarr(store, da.from_array(image), chunk=16)
    write_slide(tmp_path, "v", cells=4, patch=8, seed=1)
    tifffile.imwrite(tmp_path / "z_mask.tif", np.full((32, 32), 2, np.uint8))
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("image,mask,split\nz.ome.zarr,z_mask.tif,train\nv.ome.tif,v_mask.tif,val\n")
    first = load_cohort(manifest, SETTINGS).splits["train"][0]
    assert np.array_equal(np.load(first.cache)[0], image[:, :8, :8])

    json_stats = {p: p.stat().st_mtime_ns for p in store.rglob("*.json")}
    time.sleep(0.05)
    level0 = zarr.open_array(store / "0", mode="r+")
    level0[1, 0:8, 0:8] = 999  # rewrites one chunk file, no metadata file
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.json")} == json_stats

    again = load_cohort(manifest, SETTINGS).splits["train"][0]
    assert again.cache != first.cache
    assert (np.load(again.cache)[0, 1] == 999).all()


def test_fingerprint_sees_every_change_and_only_changes(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"0123456789")
    key = fingerprint(path)
    assert fingerprint(path) == key and re.fullmatch(r"[0-9a-f]{32}", key)
    edit_in_place(path, 3, b"x")
    assert fingerprint(path) != key
    store = tmp_path / "s.zarr"
    (store / "0").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (store / "0" / "c").write_bytes(b"chunk")
    key = fingerprint(store)
    edit_in_place(store / "0" / "c", 0, b"C")
    assert fingerprint(store) != key
    key = fingerprint(store)
    (store / "0" / "d").write_bytes(b"new chunk")
    assert fingerprint(store) != key


# -- file names -------------------------------------------------------------------------
def test_cache_stem_keeps_safe_characters_only():
    key = "0123456789abcdef"
    assert cache_stem("slide_01.a-b", key) == f"slide_01.a-b-{key}"
    assert cache_stem("../../etc/passwd", key) == f"_.._etc_passwd-{key}"
    assert cache_stem("/abs/x", key) == f"_abs_x-{key}"
    assert cache_stem("<b>x</b>\n", key) == f"_b_x_b_-{key}"
    assert cache_stem("..", key) == f"slide-{key}"
    assert cache_stem("ß é", key) == f"_-{key}"
    assert cache_stem("x" * 300, key) == f"{'x' * 64}-{key}"


def test_hostile_slide_ids_stay_inside_the_cache_folder(tmp_path):
    ids = [
        f"{tmp_path}/outside/evil",  # absolute
        "../escape",
        "<img src=x onerror=alert(1)>",
        ".hidden",
        "a/b",
        "a\\b",  # reduces to the same text as a/b: the key keeps them apart
        "x" * 300,
    ]
    lines = ["image,mask,split,slide"]
    for i, slide in enumerate(ids):
        write_slide(tmp_path, f"h{i}", cells=2, patch=8, seed=i)
        split = "val" if i == 0 else "train"
        lines.append(f'h{i}.ome.tif,h{i}_mask.tif,{split},"{slide}"')
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())

    cohort = load_cohort(tmp_path / "cohort.csv", SETTINGS)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, ".patchwise-cache"])
    names = cache_files(tmp_path)
    assert len(names) == 2 * len(ids)  # no two ids share an entry
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}-[0-9a-f]{16}\.(npy|parquet)", name)
    # the id itself stays free text in the tables
    slides = {s.entry.slide for split in cohort.splits.values() for s in split}
    assert slides == set(ids)
    assert set(cohort.table("train")["slide"]) == set(ids[1:])


# -- broken entries ---------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_shape(path: Path) -> None:
    np.save(path, np.zeros((3, 2, 8, 8), np.uint8))


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".npy", _truncate),
        (".npy", _garbage),
        (".npy", _empty),
        (".npy", _wrong_shape),
        (".parquet", _truncate),
        (".parquet", _garbage),
        (".parquet", _empty),
    ],
)
def test_corrupt_cache_entry_is_rebuilt(cohort_dir, suffix, damage):
    first = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    patches, table = np.load(first.cache), first.table.copy()
    damage(first.cache.with_suffix(suffix))

    again = load_cohort(cohort_dir / "cohort.csv", SETTINGS).splits["train"][0]
    assert again.cache == first.cache
    assert np.array_equal(np.load(again.cache), patches)
    pd.testing.assert_frame_equal(again.table, table)
    pd.testing.assert_frame_equal(pd.read_parquet(again.cache.with_suffix(".parquet")), table)


# -- interrupts -------------------------------------------------------------------------
def _leftovers(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".tmp" in p.name or "-tmp-" in p.name
    )


def test_interrupt_from_progress_propagates_and_leaves_no_partial_entry(tmp_path):
    manifest = make_cohort(tmp_path, splits=("train", "train", "val"), cells=4, patch=8)
    calls = []

    def progress(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_cohort(manifest, SETTINGS, progress=progress)
    assert len(calls) == 1
    cache = tmp_path / ".patchwise-cache"
    assert not list(cache.glob("*.npy")) and _leftovers(tmp_path) == []
    # the next run finds nothing half-built and completes
    cohort = load_cohort(manifest, SETTINGS)
    assert len(list(cache.glob("*.npy"))) == 3 and len(cohort.table("train")) == 32


def test_ctrl_c_during_patch_cache_preparation_stops_train_at_once(tmp_path, monkeypatch):
    """The first Ctrl-C used to be recorded for "stop after this step" and ignored until
    every slide's cache was built (then one step trained and last.pt written)."""
    pytest.importorskip("torch")
    from napari_patchwise.cli.main import main

    manifest = make_cohort(tmp_path, splits=("train", "train", "val"), cells=4, patch=8)
    bands = []
    read_bands = data_module.iter_patch_bands

    def interrupted_after_first_band(*args, **kwargs):
        for item in read_bands(*args, **kwargs):
            bands.append(item)
            if len(bands) == 1:
                os.kill(os.getpid(), signal.SIGINT)  # delivered as a Ctrl-C would be
            yield item

    monkeypatch.setattr(data_module, "iter_patch_bands", interrupted_after_first_band)
    out = tmp_path / "run"
    args = ["train", str(manifest), "--out", str(out), "--steps", "3", "--quiet"]
    args += ["--model", "smallcnn", "--patch-size", "8", "--batch-size", "8"]
    assert main(args) == 130
    assert len(bands) <= 2  # stopped within a band, not after 3 slides x 4 bands
    assert not (out / "last.pt").exists()
    assert not list((tmp_path / ".patchwise-cache").glob("*.npy"))
    assert _leftovers(tmp_path) == []
