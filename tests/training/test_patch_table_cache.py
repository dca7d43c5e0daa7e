"""A slide counted by the Cohort tab is the table a training run reuses (one cache entry).

The Cohort tab counts with the dock form's settings, whose background is explicit (the
slide's own: "dark" for these fluorescence-like TIFFs), while ``patchwise train`` passes
``background=None`` (each slide's own). Both count the same patches, so they must share
one cached table: before the fix the key hashed ``"dark"`` and ``None`` differently and
training counted every slide again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _cohort import make_cohort
from napari_patchwise.cohort.manifest import read_manifest
from napari_patchwise.settings import PatchSettings
from napari_patchwise.training.cohort_summary import (
    COMPUTED,
    FROM_CACHE,
    cohort_slide_table,
    default_cache_dir,
)
from napari_patchwise.training.data import load_cohort

P = 16


def tables(cache: Path) -> set[Path]:
    """The cached patch tables (not the attribute tables beside them)."""
    return {p for p in cache.glob("*.parquet") if p.name.count(".") == 1}


@pytest.fixture
def cohort(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", splits=("train", "val"), cells=4, patch=P)
    return manifest, read_manifest(manifest)


def test_training_reuses_the_tables_the_cohort_tab_counted(cohort):
    manifest, entries = cohort
    cache = default_cache_dir(manifest)
    # the Cohort tab: the form's explicit background, the slide's own
    browsed = PatchSettings(patch_size=P, background="dark")
    for entry in entries:
        assert cohort_slide_table(entry, browsed, cache_dir=cache)[1] == COMPUTED
    counted = {p: p.stat().st_mtime_ns for p in tables(cache)}
    assert len(counted) == len(entries)
    # training with the same settings (background: each slide's own) counts nothing again
    load_cohort(manifest, PatchSettings(patch_size=P))
    assert {p: p.stat().st_mtime_ns for p in tables(cache)} == counted


def test_the_cohort_tab_reuses_the_tables_training_counted(cohort):
    manifest, entries = cohort
    cache = default_cache_dir(manifest)
    load_cohort(manifest, PatchSettings(patch_size=P))
    assert len(tables(cache)) == len(entries)
    browsed = PatchSettings(patch_size=P, background="dark")
    for entry in entries:
        assert cohort_slide_table(entry, browsed, cache_dir=cache)[1] == FROM_CACHE
    assert len(tables(cache)) == len(entries)


def test_another_background_is_another_entry(cohort):
    manifest, entries = cohort
    cache = default_cache_dir(manifest)
    cohort_slide_table(entries[0], PatchSettings(patch_size=P), cache_dir=cache)
    source = cohort_slide_table(
        entries[0], PatchSettings(patch_size=P, background="bright"), cache_dir=cache
    )[1]
    assert source == COMPUTED
    assert len(tables(cache)) == 2
