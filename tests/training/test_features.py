"""`patchwise embed` and head-only training (`train --features`, DFR)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.feature_store import partial_path, read_features
from napari_patchwise.training.embed import EmbedSource, embed

pytestmark = pytest.mark.torch

FAST = ["--num-threads", "1", "--quiet"]
SMALL_RUN = ["--model", "smallcnn", "--patch-size", "16", "--batch-size", "16", *FAST]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A tiny cohort (4 slides of 64 patches), a 4-step smallcnn run and its features."""
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    run = folder / "run"
    args = ["train", str(manifest), "--steps", "4", "--eval-every", "2", "--out", str(run)]
    assert main([*args, *SMALL_RUN]) == 0
    store = folder / "features.zarr"
    embed(manifest, store, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16)
    return manifest, run, store


class _Stop(Exception):
    pass


def test_resumed_embed_equals_an_uninterrupted_one_bit_for_bit(cohort, tmp_path):
    manifest, run, store = cohort
    out = tmp_path / "resumed.zarr"

    def stop_after_5(done, total):
        if done >= 5:
            raise _Stop

    source = EmbedSource(checkpoint=str(run))
    with pytest.raises(_Stop):
        embed(manifest, out, source, device="cpu", chunk_rows=16, progress=stop_after_5)
    assert partial_path(out).is_dir() and not out.exists()
    seen = []
    embed(manifest, out, source, device="cpu", chunk_rows=16, progress=lambda d, t: seen.append(d))
    assert seen[0] == 5 and seen[-1] == 16  # continued: the 5 written chunks were kept
    assert not partial_path(out).exists()
    full, resumed = read_features(store), read_features(out)
    assert resumed.vectors.dtype == np.float16 and resumed.vectors.shape == (256, 128)
    assert resumed.vectors.tobytes() == full.vectors.tobytes()
    pd.testing.assert_frame_equal(resumed.table, full.table)


def test_vectors_are_the_models_penultimate_features_row_by_row(cohort):
    import torch

    from napari_patchwise.io.feature_store import split_head
    from napari_patchwise.training.runs import load_model

    manifest, run, store = cohort
    features = read_features(store)
    model, meta = load_model(run)
    backbone, head = split_head(model, "smallcnn")
    cache = manifest.parent / ".patchwise-cache"
    s2 = features.table["slide"] == "s2"
    (npy,) = list(cache.glob("s2-*.npy"))
    x = torch.from_numpy(np.load(npy).astype(np.float32))
    mean, std = (torch.tensor(meta[k])[:, None, None] for k in ("mean", "std"))
    with torch.no_grad():
        expected = backbone((x - mean) / std).numpy()
    np.testing.assert_allclose(features.vectors[s2.to_numpy()], expected, rtol=2e-3, atol=1e-3)
    stored_table = pd.read_parquet(npy.with_suffix(".parquet"))
    pd.testing.assert_frame_equal(features.table[s2].reset_index(drop=True), stored_table)
    # the head on the vectors gives the model's own probabilities
    with torch.no_grad():
        logits = head(torch.from_numpy(features.vectors[s2.to_numpy()].astype(np.float32)))
        direct = model((x - mean) / std)
    np.testing.assert_allclose(logits.numpy(), direct.numpy(), atol=5e-3)


def test_a_changed_checkpoint_cannot_continue_an_interrupted_embed(cohort, tmp_path):
    manifest, run, _ = cohort
    out = tmp_path / "f.zarr"

    def stop(done, total):
        if done >= 2:
            raise _Stop

    with pytest.raises(_Stop):
        embed(manifest, out, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16,
              progress=stop)  # fmt: skip
    other = tmp_path / "other.pt"
    shutil.copy(run / "best_val_bca.pt", other)
    with pytest.raises(PatchwiseError, match=r"interrupted embed of other inputs.*source"):
        embed(manifest, out, EmbedSource(checkpoint=str(other)), device="cpu", chunk_rows=16)


def test_embed_on_a_distributed_cluster_equals_the_local_embed(cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    manifest, run, store = cohort
    out = tmp_path / "dist.zarr"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        embed(manifest, out, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16,
              client=client)  # fmt: skip
    assert read_features(out).vectors.tobytes() == read_features(store).vectors.tobytes()


def test_head_erm_equals_an_l2_logistic_regression(cohort, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from napari_patchwise.training.loop import TrainConfig, train

    manifest, _, store = cohort
    features = read_features(store)
    train_rows = features.table["slide"].isin(["s0", "s1"]).to_numpy()
    n, wd = int(train_rows.sum()), 0.01
    config = TrainConfig(
        manifest=str(manifest), out=str(tmp_path / "erm"), features=str(store), method="erm",
        steps=400, eval_every=400, batch_size=n, lr=0.5, weight_decay=wd, momentum=0.9,
        num_threads=1, device="cpu",
    )  # fmt: skip
    run = train(config)
    import torch

    state = torch.load(run / "best.pt", weights_only=True)["model"]
    w, b = state["9.weight"].numpy(), state["9.bias"].numpy()
    # softmax over two logits, both rows decayed = binary LR on (w1 - w0) with penalty
    # wd/4 |d|^2 (bias included: a constant feature, unpenalised intercept off)
    x = features.vectors[train_rows].astype(np.float64)
    x1 = np.hstack([x, np.ones((n, 1))])
    y = features.table["label"].to_numpy()[train_rows]
    lr = LogisticRegression(C=2 / (n * wd), fit_intercept=False, tol=1e-10, max_iter=10000)
    lr.fit(x1, y)
    ours = np.r_[w[1] - w[0], b[1] - b[0]]
    np.testing.assert_allclose(ours, lr.coef_[0], rtol=1e-3, atol=1e-3)


def test_dfr_balanced_subsets_have_exact_counts():
    from napari_patchwise.training.methods.dfr import balanced_subset

    groups = np.repeat([0, 1, 2, 3], [5, 3, 7, 9])
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = balanced_subset(groups, rng)
        assert np.bincount(groups[rows], minlength=4).tolist() == [3, 3, 3, 3]
        assert len(np.unique(rows)) == 12
    with pytest.raises(PatchwiseError, match="tumor/large has no patch"):
        balanced_subset(np.repeat([0, 1, 2], [4, 4, 4]), rng)


def test_dfr_head_run_predicts_through_patchwise_predict(cohort, tmp_path):
    manifest, _, store = cohort
    run = tmp_path / "dfr"
    args = ["train", str(manifest), "--features", str(store), "--method", "dfr", *FAST]
    assert main([*args, "--out", str(run)]) == 0
    assert {"best.pt", "best_val_bca.pt", "last.pt", "config.json", "history.csv",
            "metrics.json", "predictions.parquet"} <= {p.name for p in run.iterdir()}  # fmt: skip
    history = pd.read_csv(run / "history.csv")
    assert history["C"].tolist() == [1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01]
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "smallcnn" and config["patch_size"] == 16
    folder = manifest.parent
    table = tmp_path / "pred.parquet"
    predict = ["predict", str(folder / "s3.ome.tif"), "--mask", str(folder / "s3_mask.tif")]
    assert main([*predict, "--checkpoint", str(run), "--out", str(table), "--quiet"]) == 0
    predicted, tested = pd.read_parquet(table), pd.read_parquet(run / "predictions.parquet")
    np.testing.assert_allclose(predicted["prob"], tested["prob"], atol=5e-3)
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("other cohort", "features are not of this cohort"),
        ("missing", "feature store not found"),
        ("not a store", "not a patchwise feature store"),
        ("dfr without features", "--method dfr retrains the last layer"),
    ],
)
def test_bad_feature_inputs_are_one_line_errors(cohort, tmp_path, capsys, case, message):
    manifest, _, store = cohort
    other = make_cohort(tmp_path / "other", splits=("train", "val"))
    features = {
        "other cohort": [str(other), "--features", str(store)],
        "missing": [str(manifest), "--features", str(tmp_path / "nope.zarr")],
        "not a store": [str(manifest), "--features", str(tmp_path)],
        "dfr without features": [str(manifest), *SMALL_RUN[:4]],
    }[case]
    code = main(["train", *features, "--method", "dfr", "--out", str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and len(err[-1].splitlines()) == 1


def test_a_resumed_head_run_equals_an_uninterrupted_one(cohort, tmp_path):
    import torch

    from napari_patchwise.training.loop import TrainConfig, train
    from napari_patchwise.training.runs import load_model

    manifest, _, store = cohort

    def config(out, steps, resume=False):
        return TrainConfig(
            manifest=str(manifest), out=str(out), features=str(store), method="gerne",
            steps=steps, eval_every=10, batch_size=16, num_threads=1, device="cpu",
            resume=resume,
        )  # fmt: skip

    straight = train(config(tmp_path / "a", 40))
    train(config(tmp_path / "b", 20))
    resumed = train(config(tmp_path / "b", 40, resume=True))
    for name in ("last.pt", "best.pt"):
        a = torch.load(straight / name, weights_only=True)["model"]
        b = torch.load(resumed / name, weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(
        pd.read_csv(straight / "history.csv").drop(columns="seconds"),
        pd.read_csv(resumed / "history.csv").drop(columns="seconds"),
    )
    model, meta = load_model(resumed / "last.pt")  # the full model, as predict reads it
    assert meta["model_name"] == "smallcnn" and model[9].weight.shape == (2, 128)


def test_embed_one_image_without_a_mask_with_a_random_backbone(cohort, tmp_path, capsys):
    manifest, _, _ = cohort
    image = manifest.parent / "s1.ome.tif"
    out = tmp_path / "img.zarr"
    args = ["embed", str(image), "--backbone", "resnet18", "--patch-size", "16"]
    with pytest.warns(UserWarning, match="random initialisation"):
        code = main([*args, "--chunk-rows", "20", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0
    features = read_features(out)
    assert features.vectors.shape == (64, 512) and "label" not in features.table
    assert features.table[["row", "col"]].to_numpy().tolist() == [
        [r, c] for r in range(8) for c in range(8)
    ]
    assert np.isfinite(features.vectors.astype(np.float32)).all()
    assert features.spec["source"] == {
        "kind": "backbone", "backbone": "resnet18", "weights": None, "fingerprint": None
    }  # fmt: skip
    # an existing store is refused without --overwrite
    assert main([*args, "--quiet", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checkpoint", "nope"], "no checkpoint: no such file or folder"),
        (["--checkpoint", "RUN", "--mask", "m.tif"], "--mask is for an image"),
        (["--checkpoint", "RUN", "--weights", "w.pt"], "--weights goes with --backbone"),
        (["--backbone", "resnet18", "--weights", "nope.pt"], "weights file not found"),
    ],
)
def test_bad_embed_inputs_are_one_line_errors(cohort, tmp_path, capsys, extra, message):
    manifest, run, _ = cohort
    extra = [str(run) if e == "RUN" else e for e in extra]
    out = tmp_path / "f.zarr"
    code = main(["embed", str(manifest), *extra, "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1]
    assert not out.exists() and not partial_path(out).exists()


def test_dfr_head_on_raw_vectors_equals_the_regression_on_standardised_ones():
    import torch
    from sklearn.linear_model import LogisticRegression

    from napari_patchwise.training.methods.dfr import _as_head, _column_stats

    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=(400, 6)).astype(np.float16)
    y = (x[:, 0].astype(float) + rng.normal(size=400) > 3).astype(int)
    mean, std = _column_stats(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(np.float64).std(0), rtol=1e-9)
    z = (x.astype(np.float64) - mean) / std
    model = LogisticRegression(C=0.3).fit(z, y)
    weight, bias = _as_head(model.coef_[0], float(model.intercept_[0]), mean, std)
    head = torch.nn.Linear(6, 2)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
        prob = torch.softmax(head(torch.from_numpy(x.astype(np.float32))), 1)[:, 1].numpy()
    np.testing.assert_allclose(prob, model.predict_proba(z)[:, 1], atol=1e-5)


def test_a_head_groups_by_an_attribute_the_store_lacks(cohort, tmp_path):
    """border_fraction is not in the store's tables: it is computed from the cohort's
    slides (as full training does) and the head's groups follow it."""
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.data import load_cohort

    manifest, _, store = cohort
    run = tmp_path / "head"
    args = ["train", str(manifest), "--features", str(store), "--steps", "4", *FAST]
    attribute = ["--attribute", "border_fraction", "--attribute-threshold", "0.5"]
    assert main([*args, *attribute, "--eval-every", "2", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["attribute"] == "border_fraction"
    tested = pd.read_parquet(run / "predictions.parquet")
    settings = PatchSettings(patch_size=16)
    full = load_cohort(manifest, settings, attribute="border_fraction").table("test")
    np.testing.assert_array_equal(tested["border_fraction"], full["border_fraction"])
    assert 0 < (tested["border_fraction"] >= 0.5).sum() < len(tested)  # both sides present
