"""The training loop on a tiny hand-built cohort: learning, resume, cancel, run directory."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.training.loop import TrainCallbacks, TrainConfig, load_checkpoint_model, train  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def config(manifest, out, **kw):
    base = dict(
        manifest=str(manifest),
        out=str(out),
        model="smallcnn",
        patch_size=16,
        steps=12,
        eval_every=4,
        batch_size=16,
        lr=0.05,
        seed=1,
        num_threads=1,
    )
    base.update(kw)
    return TrainConfig.from_options(base)


class Recorder(TrainCallbacks):
    def __init__(self, stop_after=None):
        self.losses, self.evals, self.stop_after = {}, [], stop_after

    def on_step(self, step, total, loss):
        self.losses[step] = loss

    def on_eval(self, step, metrics):
        self.evals.append(step)

    def should_stop(self):
        return self.stop_after is not None and len(self.losses) >= self.stop_after


def test_a_few_steps_lower_the_loss_and_fill_the_run_directory(manifest, tmp_path):
    rec = Recorder()
    run = train(config(manifest, tmp_path / "run", steps=40, eval_every=20), rec)
    losses = [rec.losses[s] for s in sorted(rec.losses)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert rec.evals == [20, 40]
    names = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "best.pt",
        "last.pt",
        "history.csv",
        "metrics.json",
        "predictions.parquet",
    } <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind

    history = pd.read_csv(run / "history.csv")
    assert history["step"].tolist() == [20, 40]
    for col in ("loss", "val_wga", "val_bca", "val_acc_tumor_small", "val_acc_non_tumor_large"):
        assert col in history

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_by"] == "val_wga"
    assert set(metrics["by_selection"]) == {"val_wga", "val_bca"}
    assert metrics["step"] == int(history.loc[history["val_wga"].idxmax(), "step"])
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert len(predictions) == metrics["test"]["n"] == 64  # one test slide of 8 x 8 patches
    assert predictions["prob"].between(0, 1).all()
    # metrics.json's test figures are those of the predictions table
    correct = (predictions["pred"] == predictions["label"]).mean()
    assert math.isclose(metrics["test"]["accuracy"], correct)
    assert TrainConfig.from_json(run / "config.json") == config(
        manifest, tmp_path / "run", steps=40, eval_every=20
    )


def test_checkpoints_load_with_weights_only(manifest, tmp_path):
    run = train(config(manifest, tmp_path / "run", steps=4))
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["step"] == 4 and set(last) >= {
        "model",
        "optimizer",
        "method",
        "history",
        "torch_rng",
    }
    model, meta = load_checkpoint_model(run / "best.pt")
    assert meta["in_channels"] == 2 and meta["patch_size"] == 16
    assert model(torch.zeros(1, 2, 16, 16)).shape == (1, 2)


@pytest.mark.parametrize("method", ["erm", "groupdro"])
def test_resume_continues_exactly(manifest, tmp_path, method):
    kw = dict(method=method, eta=0.1)
    full = Recorder()
    train(config(manifest, tmp_path / "full", **kw), full)

    first = Recorder(stop_after=6)  # cancel mid-way between evaluations (at 4 and 8)
    run = train(config(manifest, tmp_path / "split", **kw), first)
    assert sorted(first.losses) == list(range(1, 7))
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 6
    assert not (run / "metrics.json").exists()  # a cancelled run has no test metrics yet

    second = Recorder()
    train(config(manifest, tmp_path / "split", resume=True, **kw), second)
    assert sorted(second.losses) == list(range(7, 13))
    assert {**first.losses, **second.losses} == full.losses  # bit-identical losses

    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    drop = ["seconds"]
    assert (
        pd.read_csv(tmp_path / "full" / "history.csv")
        .drop(columns=drop)
        .equals(pd.read_csv(run / "history.csv").drop(columns=drop))
    )


def test_cancel_stops_within_one_step_and_leaves_a_valid_last_checkpoint(manifest, tmp_path):
    rec = Recorder(stop_after=1)
    run = train(config(manifest, tmp_path / "run", steps=1000), rec)
    assert list(rec.losses) == [1]
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["step"] == 1
    model, _ = load_checkpoint_model(run / "last.pt")
    assert model(torch.zeros(2, 2, 16, 16)).shape == (2, 2)


def test_existing_run_needs_resume_and_resume_needs_a_run(manifest, tmp_path):
    train(config(manifest, tmp_path / "run", steps=2))
    with pytest.raises(PatchwiseError, match="already holds a run"):
        train(config(manifest, tmp_path / "run", steps=2))
    with pytest.raises(PatchwiseError, match="nothing to resume"):
        train(config(manifest, tmp_path / "other", resume=True))


def test_gerne_on_a_cohort_without_a_group_names_group_and_tau(manifest, tmp_path):
    # tau = 0 makes every patch "large": the small-tissue groups are empty
    with pytest.raises(
        PatchwiseError, match=r"group non-tumor/small has no training patches at tau=0"
    ):
        train(config(manifest, tmp_path / "run", method="gerne", tau=0.0))


def test_bad_options_are_refused_before_any_work(manifest, tmp_path):
    with pytest.raises(PatchwiseError, match="unknown selection metric"):
        train(config(manifest, tmp_path / "r", select="test_wga"))
    with pytest.raises(PatchwiseError, match=r"GERNE .* odd"):
        train(config(manifest, tmp_path / "r", method="gerne", batch_size=15))
    with pytest.raises(PatchwiseError, match=r"beta=9 is outside \[-1, beta_max\)"):
        train(config(manifest, tmp_path / "r", method="gerne", beta=9.0))


def test_freeze_bn_keeps_batchnorm_statistics(manifest, tmp_path):
    import torchvision

    # frozen statistics need weights to keep (--freeze-bn alone is refused): a ResNet-18
    # state dict whose statistics are not torchvision's initial 0 and 1
    weights = torchvision.models.resnet18(weights=None).state_dict()
    weights["bn1.running_mean"] = torch.linspace(-1, 1, 64)
    weights["bn1.running_var"] = torch.linspace(0.5, 2, 64)
    torch.save(weights, tmp_path / "resnet18.pt")
    run = train(
        config(
            manifest,
            tmp_path / "run",
            model="resnet18",
            weights=str(tmp_path / "resnet18.pt"),
            steps=1,
            batch_size=4,
            freeze_bn=True,
        )
    )
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    assert torch.equal(state["bn1.running_mean"], torch.linspace(-1, 1, 64))
    assert torch.equal(state["bn1.running_var"], torch.linspace(0.5, 2, 64))
    assert not torch.equal(state["bn1.weight"], torch.ones(64))  # affine parameters still train


def test_freeze_bn_without_weights_is_refused(manifest, tmp_path):
    with pytest.raises(PatchwiseError, match="--freeze-bn needs --weights"):
        train(config(manifest, tmp_path / "run", model="resnet18", freeze_bn=True))
    assert not (tmp_path / "run").exists()


def test_resume_refuses_any_change_but_the_step_count(manifest, tmp_path):
    run = train(config(manifest, tmp_path / "run", steps=4, eval_every=2), Recorder(stop_after=2))
    saved = (run / "config.json").read_bytes()
    changes = [
        (dict(lr=0.1), "lr 0.05 -> 0.1"),
        (dict(seed=2), "seed 1 -> 2"),
        (dict(method="groupdro"), "method 'erm' -> 'groupdro'"),
        (dict(tau=0.2), "tau 0.1 -> 0.2"),
        (dict(patch_size=8), "patch_size 16 -> 8"),
        (dict(model="resnet18"), "model 'smallcnn' -> 'resnet18'"),
        (dict(lr=0.1, seed=2), "lr 0.05 -> 0.1; seed 1 -> 2"),
    ]
    for change, listed in changes:
        with pytest.raises(PatchwiseError, match="cannot resume with different settings") as exc:
            train(config(manifest, run, steps=4, eval_every=2, resume=True, **change))
        assert listed in str(exc.value) and "\n" not in str(exc.value)
        assert (run / "config.json").read_bytes() == saved  # config.json still tells the truth
    with pytest.raises(PatchwiseError, match="already has 2 steps, more than --steps 1"):
        train(config(manifest, run, steps=1, eval_every=2, resume=True))
    rec = Recorder()  # more steps is the one change a resume may make
    train(config(manifest, run, steps=6, eval_every=2, resume=True), rec)
    assert sorted(rec.losses) == [3, 4, 5, 6]
    assert TrainConfig.from_json(run / "config.json") == config(
        manifest, run, steps=6, eval_every=2, resume=True
    )


def test_a_second_run_into_a_busy_folder_is_refused(manifest, tmp_path):
    import threading

    out = tmp_path / "run"
    holding, release = threading.Event(), threading.Event()

    class Holder(TrainCallbacks):
        def on_step(self, step, total, loss):
            holding.set()
            release.wait(60)

    first = threading.Thread(
        target=train, args=(config(manifest, out, steps=2, eval_every=2), Holder())
    )
    first.start()
    try:
        assert holding.wait(60)  # the first run is training in `out`
        with pytest.raises(PatchwiseError, match=r"another patchwise train \(pid \d+\) is writing"):
            train(config(manifest, out, steps=2, eval_every=2))
    finally:
        release.set()
        first.join(60)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2  # the first one finished
    assert not (out / ".patchwise-train.lock").exists()

    # a lock file left behind by a killed run holds no lock
    other = tmp_path / "killed"
    other.mkdir()
    (other / ".patchwise-train.lock").write_text("999999999")
    train(config(manifest, other, steps=2, eval_every=2))
    assert (other / "last.pt").is_file() and not (other / ".patchwise-train.lock").exists()


@pytest.mark.parametrize(
    "bad",
    [
        dict(weight_decay=-1.0),
        dict(momentum=-1.0),
        dict(eval_batch_size=0),
        dict(num_workers=-1),
        dict(seed=-1),
        dict(lr=float("inf")),
        dict(threshold=2.0),
        dict(stride=0),
        dict(method="gerne", beta=9.0),
        dict(resume=True),
    ],
)
def test_a_refused_run_creates_nothing(manifest, tmp_path, bad):
    with pytest.raises(PatchwiseError):
        train(config(manifest, tmp_path / "new" / "run", steps=2, eval_every=2, **bad))
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_file_is_refused(manifest, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    for out in (notes, notes / "run"):
        with pytest.raises(PatchwiseError, match="a file is in the way of the run directory"):
            train(config(manifest, out, steps=2))
    assert notes.read_text() == "keep"


def test_resume_from_a_damaged_last_pt_is_one_line(manifest, tmp_path):
    run = train(config(manifest, tmp_path / "run", steps=4, eval_every=2), Recorder(stop_after=2))
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:2000])
    with pytest.raises(PatchwiseError, match=r"last\.pt: not a readable PyTorch checkpoint"):
        train(config(manifest, run, steps=4, eval_every=2, resume=True))


# -- TrainConfig: composed in memory, flat on disk and on the command line ---------------------
# config.json as every run so far has written it: flat, in this order ("preset" and
# "gerne_train_bn" since presets came, "features" since head runs: a file without them
# reads as no preset, False, no features; "attribute" and "attribute_threshold" since any
# attribute can be the spurious one: a file without them reads as tissue_ratio at tau)
OLD_CONFIG_JSON = {
    "manifest": "cohort.csv",
    "out": "runs/a",
    "preset": None,
    "method": "gerne",
    "tau": 0.2,
    "attribute": "tissue_ratio",
    "attribute_threshold": None,
    "patch_size": 32,
    "stride": 16,
    "tissue": "intensity",
    "tissue_threshold": 12.5,
    "background": "bright",
    "mask_map": "0=background,1=tumor",
    "keep_edges": False,
    "model": "smallcnn",
    "weights": None,
    "channels": None,
    "input_size": None,
    "steps": 100,
    "batch_size": 16,
    "lr": 0.01,
    "weight_decay": 0.0001,
    "momentum": 0.9,
    "beta": 0.5,
    "c": 0.5,
    "eta": 0.01,
    "jtt_fraction": 0.2,
    "jtt_up": 10,
    "infer_fraction": 0.2,
    "class_balanced": False,
    "augment": True,
    "freeze_bn": False,
    "gerne_train_bn": False,
    "eval_every": 10,
    "select": "val_bca",
    "slices": None,
    "threshold": 0.4,
    "seed": 3,
    "device": "cpu",
    "precision": "auto",
    "channels_last": True,
    "num_workers": 0,
    "num_threads": None,
    "eval_batch_size": 256,
    "cache_dir": None,
    "features": None,
    "resume": False,
}


def test_a_flat_config_json_loads_into_patch_settings_and_is_written_back_identically(tmp_path):
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.runs import read_run_config, run_patch_settings

    text = json.dumps(OLD_CONFIG_JSON, indent=2)
    (tmp_path / "config.json").write_text(text)
    config = read_run_config(tmp_path)
    assert config.patch == PatchSettings(
        patch_size=32,
        stride=16,
        tissue="intensity",
        tissue_threshold=12.5,
        background="bright",
        mask_map="0=background,1=tumor",
    )
    assert (config.method, config.tau, config.select, config.seed) == ("gerne", 0.2, "val_bca", 3)
    assert run_patch_settings(tmp_path / "best.pt") == config.patch  # the file's folder
    assert config.to_json() == text  # same keys, same order, same values
    assert TrainConfig.from_json(text) == config == TrainConfig.from_options(OLD_CONFIG_JSON)
    assert [f.name for f in TrainConfig.option_fields()] == list(OLD_CONFIG_JSON)
    assert config.to_options() == OLD_CONFIG_JSON
    new_keys = ("preset", "gerne_train_bn", "features", "attribute", "attribute_threshold")
    new_keys += ("channels", "input_size")
    new_keys += ("jtt_fraction", "jtt_up", "infer_fraction", "slices", "keep_edges")
    before_presets = {k: v for k, v in OLD_CONFIG_JSON.items() if k not in new_keys}
    assert TrainConfig.from_options(before_presets) == config
    assert run_patch_settings(tmp_path / "elsewhere" / "lone.pt") == PatchSettings()


def test_patch_options_are_checked_like_every_other_option(tmp_path):
    base = dict(manifest="m.csv", out=str(tmp_path / "r"))
    # the finite-number check covers the patch settings' floats too
    bad = TrainConfig.from_options(base, tissue_threshold=float("nan"))
    with pytest.raises(PatchwiseError, match="--tissue-threshold must be a finite number"):
        bad.validate()
    with pytest.raises(PatchwiseError, match="patch size must be positive, got 0"):
        TrainConfig.from_options(base, patch_size=0).validate()
    with pytest.raises(PatchwiseError, match=r"unknown training option.*colour"):
        TrainConfig.from_options(base, colour=1)
    assert TrainConfig.from_options(base).patch.patch_size == 64  # PatchSettings' default


def test_run_state_selects_by_each_metric_and_averages_the_logs():
    from napari_patchwise.training.loop import RunState

    state = RunState()
    for loss in (1.0, 2.0, 6.0):
        state.add_logs({"loss": loss})
    assert state.take_train_logs() == {"loss": 3.0} and state.pending_n == 0
    state.step = 4
    assert state.select({"val_wga": float("nan"), "val_bca": 0.5}) == ["val_wga", "val_bca"]
    assert state.best["val_wga"] == {"value": -math.inf, "step": 4}  # NaN never wins later
    state.step = 8
    assert state.select({"val_wga": 0.1, "val_bca": 0.5}) == ["val_wga"]  # a tie keeps step 4
    assert state.best == {
        "val_wga": {"value": 0.1, "step": 8},
        "val_bca": {"value": 0.5, "step": 4},
    }
