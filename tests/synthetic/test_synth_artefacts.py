"""Planted artefacts on synthetic slides: exact shares, pixels only where planted, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io import open_slide
from napari_patchwise.synthetic.artefacts import (
    BASE_RATE,
    TABLE_COLUMNS,
    Artefact,
    parse_artefact,
)
from napari_patchwise.synthetic.slides import SynthConfig, synth_slide, synth_with_artefacts

CONFIG = SynthConfig(size=(384, 512), seed=5, chunk=128, spurious=0.0)
P = 32


def _patch_labels(mask: np.ndarray, p: int = P) -> tuple[np.ndarray, np.ndarray]:
    """Hand-computed (has tissue, tumor) per full patch."""
    rows, cols = mask.shape[0] // p, mask.shape[1] // p
    blocks = mask[: rows * p, : cols * p].reshape(rows, p, cols, p)
    return (blocks > 0).any(axis=(1, 3)), (blocks == 2).any(axis=(1, 3))


def _changed_patches(a: np.ndarray, b: np.ndarray, p: int = P) -> set[tuple[int, int]]:
    ys, xs = np.nonzero((a != b).any(axis=0))
    return set(zip((ys // p).tolist(), (xs // p).tolist(), strict=True))


def test_shares_per_label_are_exact():
    artefacts = [Artefact("pen", 0.9), Artefact("stain", 0.5), Artefact("blur", -0.3)]
    _, mask, table = synth_with_artefacts(CONFIG, artefacts, patch=P, slide="s")
    tissue, tumor = _patch_labels(mask.compute())
    assert tissue.sum() > 40 and (tissue & tumor).sum() > 10  # a real test slide
    assert list(table.columns) == list(TABLE_COLUMNS)
    for kind, s in (("pen", 0.9), ("stain", 0.5), ("blur", -0.3)):
        rows = table[table.artefact == kind]
        assert len(rows) == tissue.sum()  # every tissue patch, once per kind
        np.testing.assert_array_equal(rows.label.to_numpy(), tumor[rows.row, rows.col])
        high, low = abs(s) + (1 - abs(s)) * BASE_RATE, (1 - abs(s)) * BASE_RATE
        p_tumor, p_normal = (high, low) if s >= 0 else (low, high)
        n_tumor = int((tissue & tumor).sum())
        n_normal = int((tissue & ~tumor).sum())
        assert rows[rows.label == 1].present.sum() == round(p_tumor * n_tumor)
        assert rows[rows.label == 0].present.sum() == round(p_normal * n_normal)


def test_pen_changes_pixels_in_pen_patches_and_nowhere_else():
    image, _, table = synth_with_artefacts(CONFIG, [Artefact("pen", 0.9)], patch=P)
    plain, _ = synth_slide(CONFIG)
    pen = table[table.present]
    assert len(pen) > 5
    expected = set(zip(pen.row.tolist(), pen.col.tolist(), strict=True))
    assert _changed_patches(image.compute(), plain.compute()) == expected


def test_artefacts_do_not_depend_on_the_chunk_size():
    artefacts = [Artefact("pen", 0.5), Artefact("blur", 0.5), Artefact("stain", 0.5)]
    a, _, ta = synth_with_artefacts(CONFIG, artefacts, patch=P)
    other = SynthConfig(size=(384, 512), seed=5, chunk=96, spurious=0.0)
    b, _, tb = synth_with_artefacts(other, artefacts, patch=P)
    pd.testing.assert_frame_equal(ta, tb)
    np.testing.assert_array_equal(a.compute(), b.compute())


def test_strength_zero_is_the_base_rate_for_both_labels():
    assert Artefact("pen", 0.0).shares() == (BASE_RATE, BASE_RATE)
    low, high = Artefact("blur", 1.0).shares()
    assert (low, high) == (0.0, 1.0)


@pytest.mark.parametrize("text", ["pen", "pen=x", "ink=0.5", "pen=1.5", "pen=nan"])
def test_bad_artefact_texts_are_refused(text):
    with pytest.raises(PatchwiseError):
        parse_artefact(text)


def test_cli_writes_the_slide_with_artefacts_and_the_side_table(tmp_path, capsys):
    out = tmp_path / "slide.ome.tif"
    rc = main(
        ["synth", "--size", "256", "320", "--out", str(out), "--seed", "4", "--tile", "64"]
        + ["--artefact", "pen=0.9", "--artefact", "stain=0.2"]
        + ["--artefact-patch-size", "32", "--quiet"]
    )
    assert rc == 0
    side = tmp_path / "slide.artefacts.parquet"
    assert capsys.readouterr().out.split()[-1] == str(side)
    table = pd.read_parquet(side)
    config = SynthConfig(size=(256, 320), seed=4)
    image, _, expected = synth_with_artefacts(
        config, [Artefact("pen", 0.9), Artefact("stain", 0.2)], patch=32, slide="slide"
    )
    pd.testing.assert_frame_equal(table, expected)
    slide = open_slide(out, mask=tmp_path / "slide_mask.tif")
    np.testing.assert_array_equal(slide.levels[0].compute(), image.compute())


def test_cli_refuses_a_bad_artefact_in_one_line(tmp_path, capsys):
    out = tmp_path / "slide.ome.tif"
    rc = main(["synth", "--size", "64", "64", "--out", str(out), "--artefact", "pen=3"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[-1, 1]" in err[0]
    assert not out.exists()
