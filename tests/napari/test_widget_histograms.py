"""The dock's live Figure-1 bins give exactly the report's numbers at every threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_patchwise._napari.inspect.histograms import build_panels
from napari_patchwise.reporting.figures import figure1_data, figure1_rows


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 4000
    label = rng.integers(0, 2, n)
    # values on bin edges (k / 20) and exactly 0 / 1 on purpose
    tissue = rng.integers(0, 41, n) / 40
    tumor = np.where(label == 1, tissue * rng.integers(0, 21, n) / 20, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tumor_tissue = np.where(tissue > 0, tumor / tissue, np.nan)
    return pd.DataFrame(
        {
            "label": label,
            "tumor_ratio": tumor,
            "tissue_ratio": tissue,
            "tumor_tissue_ratio": tumor_tissue,
            "prob": rng.integers(0, 21, n) / 20,
        }
    )


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.55, 0.999, 1.0])
def test_bins_and_correct_counts_match_report(table, threshold):
    panels = build_panels(table, table["prob"].to_numpy())
    report = figure1_data(table, threshold=threshold)
    for mine, theirs in zip(panels, report.panels, strict=True):
        np.testing.assert_array_equal(mine.counts, theirs.counts)
        np.testing.assert_array_equal(mine.correct_counts(theirs.label, threshold), theirs.correct)
        assert mine.n_class == theirs.n
        np.testing.assert_allclose(mine.edges, theirs.edges)


def test_bin_members_are_the_reports_rows(table):
    panels = build_panels(table, None)
    for p in range(3):
        for b in (0, 5, 19):
            expected = figure1_rows(table, p, b)
            np.testing.assert_array_equal(np.sort(panels[p].members(b)), expected)
