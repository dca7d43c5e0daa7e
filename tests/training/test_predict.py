"""predict_table reads patches lazily from the slide and matches the training pipeline."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.io import open_slide  # noqa: E402
from napari_patchwise.training.loop import TrainConfig, train  # noqa: E402
from napari_patchwise.training.predict import geometry_table, predict_table  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    run = train(
        TrainConfig.from_options(
            manifest=str(manifest),
            out=str(folder / "run"),
            model="smallcnn",
            patch_size=16,
            steps=6,
            eval_every=3,
            batch_size=16,
            num_threads=1,
        )
    )
    return folder, run


def test_predictions_from_the_slide_equal_those_from_the_patch_cache(trained):
    folder, run = trained
    reference = pd.read_parquet(run / "predictions.parquet")  # test slide s3, via the cache
    slide = open_slide(folder / "s3.ome.tif", mask=folder / "s3_mask.tif", pyramid_cache=False)
    table = reference.drop(columns=["prob", "pred"])
    calls = []
    out = predict_table(
        slide, table, run, batch_size=10, device="cpu", progress=lambda d, t: calls.append((d, t))
    )
    np.testing.assert_allclose(out["prob"], reference["prob"], atol=1e-5)
    assert (out["pred"] == (out["prob"] >= 0.5)).all()
    assert calls[-1] == (64, 64)
    assert "prob" not in table  # the input table is not modified


def test_geometry_table_and_channel_check(trained):
    folder, run = trained
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    table = geometry_table(slide, 16)
    assert len(table) == 64 and table[["y", "x"]].iloc[9].tolist() == [16, 16]
    out = predict_table(slide, table, run, device="cpu")
    assert out["prob"].notna().all()

    from dataclasses import replace

    one_channel = replace(
        slide, levels=tuple(lvl[:1] for lvl in slide.levels), channel_names=("a",)
    )
    with pytest.raises(PatchwiseError, match="1 channels but the model was trained on 2"):
        predict_table(one_channel, table, run, device="cpu")
    with pytest.raises(PatchwiseError, match="no checkpoint"):
        predict_table(slide, table, folder, device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=-3), "batch size must be a positive integer, got -3"),
        (dict(batch_size=0), "batch size must be a positive integer, got 0"),
        (dict(threshold=2.0), r"threshold=2.0 is outside \[0, 1\]"),
        (dict(threshold=float("nan")), r"threshold=nan is outside \[0, 1\]"),
    ],
)
def test_values_that_would_give_meaningless_predictions_are_refused(trained, kwargs, message):
    # a negative batch size used to classify no patch (every prob NaN, no error)
    folder, run = trained
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    with pytest.raises(PatchwiseError, match=message):
        predict_table(slide, geometry_table(slide, 16), run, device="cpu", **kwargs)
    out = predict_table(slide, geometry_table(slide, 16), run, device="cpu", batch_size=1)
    assert out["prob"].notna().all() and len(out) == 64


def test_rebatch_gives_full_batches_whatever_the_band_sizes():
    from napari_patchwise.training.predict import rebatch

    sizes = [3, 0, 7, 1, 10, 2]
    start = np.cumsum([0, *sizes])
    bands = [
        (np.arange(a, b), np.arange(a, b, dtype=np.float32)[:, None] * np.ones((1, 2)))
        for a, b in itertools.pairwise(start)
    ]
    batches = list(rebatch(bands, 4))
    assert [len(p) for p, _ in batches] == [4, 4, 4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([p for p, _ in batches]), np.arange(23))
    for positions, patches in batches:  # positions and patches stay paired
        np.testing.assert_array_equal(patches[:, 0], positions)
