"""Presets (`--preset paper|cpu-quick`): resolution, the paper's recipe end to end, refusals."""

from __future__ import annotations

import json
import re
import warnings

import pytest

torch = pytest.importorskip("torch")

from _cohort import make_cohort  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.cli.main import main  # noqa: E402
from napari_patchwise.training.config import TrainConfig  # noqa: E402
from napari_patchwise.training.models import RANDOM_INIT_MESSAGE  # noqa: E402

pytestmark = pytest.mark.torch

QUICK = ["--patch-size", "16", "--batch-size", "16", "--num-threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory):
    """A torchvision ResNet-50 state dict on disk, random weights and running statistics.

    The running statistics are not torchvision's 0 and 1, so that "unchanged" can only
    mean "kept from this file".
    """
    import torchvision

    gen = torch.Generator().manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pt"
    torch.save(state, path)
    return path, state


def _error(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exc:  # a parser refusal
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


# -- resolution -------------------------------------------------------------------------------
def test_a_preset_fills_in_what_is_not_given_and_explicit_options_win(tmp_path):
    config = TrainConfig.from_options(manifest="m.csv", out="r", preset="cpu-quick", lr=0.05)
    assert (config.model, config.patch.patch_size, config.steps, config.eval_every) == (
        "smallcnn",
        32,
        200,
        40,
    )
    assert (config.batch_size, config.weight_decay, config.eval_batch_size) == (32, 1e-4, 128)
    assert config.lr == 0.05  # given: wins over the preset's 0.01
    assert config.num_threads is None  # train's measured default, not the preset's
    paper = TrainConfig.from_options(manifest="m.csv", out="r", preset="paper", weights="w.pt")
    assert (paper.model, paper.freeze_bn, paper.lr, paper.weight_decay) == (
        "resnet50",
        True,
        1e-4,
        0.01,
    )
    assert (paper.momentum, paper.batch_size, paper.c, paper.select) == (0.9, 32, 0.5, "val_wga")
    # config.json holds the name and every resolved value, and reads back as written
    (tmp_path / "config.json").write_text(paper.to_json())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["preset"] == "paper" and saved["lr"] == 1e-4 and saved["freeze_bn"] is True
    assert TrainConfig.from_json(tmp_path / "config.json") == paper
    # a saved config with a preset keeps its own values where they differ from the preset's
    changed = TrainConfig.from_options({**saved, "lr": 0.5})
    assert changed.lr == 0.5 and changed.preset == "paper"


def test_an_explicit_flag_wins_even_when_it_equals_the_default():
    import argparse

    from napari_patchwise.cli.train import add_parser, config_from_args, options_from_args

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    argv = ["m.csv", "--out", "r", "--preset", "paper", "--weights", "w.pt"]
    args = parser.parse_args([*argv, "--lr", "0.01", "--batch-size", "4", "--no-freeze-bn"])
    assert options_from_args(args) == {
        "manifest": "m.csv",
        "out": "r",
        "preset": "paper",
        "weights": "w.pt",
        "lr": 0.01,
        "batch_size": 4,
        "freeze_bn": False,
    }
    config = config_from_args(args)
    # 0.01 is TrainConfig's default lr: given as a flag, it still beats the paper's 1e-4
    assert (config.lr, config.batch_size, config.freeze_bn) == (0.01, 4, False)
    assert (config.weight_decay, config.model) == (0.01, "resnet50")
    assert config_from_args(parser.parse_args(["m.csv", "--out", "r"])) == TrainConfig("m.csv", "r")


def test_unknown_preset_is_refused():
    with pytest.raises(PatchwiseError, match="unknown preset 'fast' — one of paper, cpu-quick"):
        TrainConfig.from_options(manifest="m", out="r", preset="fast")
    with pytest.raises(PatchwiseError, match="unknown preset 'fast'"):
        TrainConfig("m", "r", preset="fast").validate()


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--preset", "paper"],
            r"--preset paper needs --weights PATH, a local torchvision resnet50 state dict "
            r"\(ImageNet\); patchwise never downloads weights — where the internet is "
            r"reachable run python -c .*resnet50\(weights='IMAGENET1K_V1'\)",
        ),
        (
            ["--preset", "paper", "--model", "smallcnn"],
            "--preset paper fine-tunes a pretrained ResNet; smallcnn has no pretrained weights",
        ),
        (
            ["--model", "resnet18", "--freeze-bn"],
            "--freeze-bn needs --weights: the BatchNorm statistics of a randomly initialised "
            "network are 0 and 1",
        ),
        (
            ["--model", "smallcnn", "--weights", "w.pt"],
            "pretrained weights apply to the ResNet models only",
        ),
        (
            ["--method", "gerne", "--model", "resnet18"],
            "GERNE with beta > 0 on resnet18 needs frozen BatchNorm statistics: with batch "
            "statistics its loss runs away .* or --gerne-train-bn to train so anyway",
        ),
    ],
)
def test_what_needs_weights_without_them_is_one_line_exit_2_and_writes_nothing(
    manifest, tmp_path, capsys, flags, message
):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["train", str(manifest), "--out", str(out), "--cache-dir", str(cache), *flags]
    code, err = _error([*argv, "--quiet"], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("patchwise train: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not out.exists() and not cache.exists()


@pytest.mark.parametrize(
    "options",
    [
        dict(model="resnet18", beta=0.0),  # no negative weight: plain weighted training
        dict(model="resnet18", beta=-0.5),
        dict(model="resnet18", gerne_train_bn=True),  # the explicit override
        dict(model="resnet18", weights="w.pt", freeze_bn=True),
        dict(model="smallcnn"),  # GroupNorm
    ],
)
def test_gerne_needs_frozen_batchnorm_only_where_it_has_batchnorm_and_beta_above_0(options):
    TrainConfig.from_options(manifest="m", out="r", method="gerne", **options).validate()


# -- the paper's recipe end to end -------------------------------------------------------------
def test_paper_preset_trains_resnet50_from_local_weights_with_frozen_batchnorm(
    resnet50_weights, tmp_path, capsys
):
    path, state = resnet50_weights
    manifest = make_cohort(tmp_path / "cohort", cells=4, patch=32)
    out = tmp_path / "run"
    argv = ["train", str(manifest), "--preset", "paper", "--weights", str(path), "--method"]
    argv.append("gerne")  # with frozen BatchNorm, GERNE's extrapolation is allowed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(
            [*argv, "--out", str(out), "--patch-size", "32", "--batch-size", "4", "--steps", "2"]
            + ["--eval-every", "2", "--num-threads", "1", "--quiet"]
        )
    assert code == 0, capsys.readouterr().err
    assert not [w for w in caught if RANDOM_INIT_MESSAGE in str(w.message)]  # weights loaded
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in ("preset", "model", "lr", "weight_decay", "momentum")} == {
        "preset": "paper",
        "model": "resnet50",
        "lr": 1e-4,
        "weight_decay": 0.01,
        "momentum": 0.9,
    }
    assert (config["freeze_bn"], config["batch_size"], config["c"]) == (True, 4, 0.5)
    assert (config["method"], config["weights"]) == ("gerne", str(path))
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["step"] == 2
    (group,) = last["optimizer"]["param_groups"]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (1e-4, 0.9, 0.01)
    model = last["model"]
    stats = [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 3 * 53  # every BatchNorm layer of a ResNet-50
    for key in stats:
        assert torch.equal(model[key], state[key]), key  # frozen: the file's statistics
    # the file's weights were loaded, then trained (affine BatchNorm parameters included)
    for key in ("layer1.0.conv1.weight", "layer4.2.bn3.weight"):
        assert torch.allclose(model[key], state[key], atol=1e-3)
        assert not torch.equal(model[key], state[key])


def test_a_preset_run_resumes_with_the_same_preset_and_not_without_it(manifest, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", str(manifest), "--preset", "cpu-quick", "--out", out, *QUICK]
    assert main([*argv, "--steps", "2", "--eval-every", "2"]) == 0
    assert main([*argv, "--steps", "3", "--eval-every", "2", "--resume"]) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3
    capsys.readouterr()
    plain = ["train", str(manifest), "--out", out, *QUICK, "--model", "smallcnn"]
    code, err = _error([*plain, "--steps", "4", "--eval-every", "2", "--resume"], capsys)
    assert code == 2 and len(err) == 1
    assert "cannot resume with different settings: preset 'cpu-quick' -> None" in err[0]
