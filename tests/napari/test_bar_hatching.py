"""Stacked bars tell correct from incorrect by hatching as well as hue (report and dock)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_patchwise.palette import INCORRECT_HATCH


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 600
    label = rng.integers(0, 2, n)
    tissue = rng.uniform(0, 1, n)
    tumor = np.where(label == 1, tissue * rng.uniform(0, 1, n), 0.0)
    return pd.DataFrame(
        {
            "label": label,
            "tissue_ratio": tissue,
            "tumor_ratio": tumor,
            "tumor_tissue_ratio": np.where(tissue > 0, tumor / np.maximum(tissue, 1e-9), np.nan),
            "prob": rng.uniform(0, 1, n),
        }
    )


def _hatches(ax) -> dict[str, set]:
    """Bar label (legend entry) -> the hatches of its rectangles."""
    out: dict[str, set] = {}
    for container in ax.containers:
        out[container.get_label()] = {rect.get_hatch() for rect in container}
    return out


def test_report_hatches_only_the_incorrect_share(table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_patchwise.reporting.figures import draw_figure1, figure1_data

    fig, axes = plt.subplots(3, 1)
    draw_figure1(axes, figure1_data(table))
    for ax in axes:
        hatches = _hatches(ax)
        assert hatches["incorrect"] == {INCORRECT_HATCH}
        assert hatches["correct"] == {None}
        legend = {
            t.get_text(): h
            for t, h in zip(ax.get_legend().texts, ax.get_legend().legend_handles, strict=True)
        }
        assert legend["incorrect"].get_hatch() == INCORRECT_HATCH
    plt.close(fig)


def test_dock_histograms_hatch_the_incorrect_share(qtbot, table):
    from napari_patchwise._napari.inspect.histograms import Figure1Canvas, build_panels

    canvas = Figure1Canvas()
    qtbot.addWidget(canvas)
    canvas.set_panels(
        build_panels(table, table["prob"].to_numpy()), has_predictions=True, tau=0.1, threshold=0.5
    )
    for correct, wrong in canvas._bars:
        assert {rect.get_hatch() for rect in wrong} == {INCORRECT_HATCH}
        assert {rect.get_hatch() for rect in correct} == {None}
    handles = canvas.axes[0].get_legend().legend_handles
    assert [h.get_hatch() for h in handles] == [None, INCORRECT_HATCH]
