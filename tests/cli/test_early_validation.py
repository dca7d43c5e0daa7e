"""Every check a command can make without cutting a patch runs before the first patch cache.

Each row is a command line that cannot work (or a flag that would have no effect) and
the text its error must contain. For every row: a non-zero exit, exactly one line on
stderr, no traceback, and no patch cache built: the cache builder
(:func:`napari_patchwise.training.data.slide_patches`) is replaced by one that fails the test,
and the cohort's cache folder must not exist afterwards. On real cohorts the caches take
hours; these refusals must take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise.cli.main import main
from napari_patchwise.training import data
from napari_patchwise.training import embed as embed_module

COMMON = ["--model", "smallcnn", "--patch-size", "16", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("early") / "c", cells=4)


@pytest.fixture
def no_cache(monkeypatch, cohort):
    """Fail the test if any patch cache is built; check the cache folder stays absent."""
    built = []

    def refuse(*args, **kwargs):
        built.append(args)
        raise AssertionError("a patch cache was built before the refusal")

    monkeypatch.setattr(data, "slide_patches", refuse)
    monkeypatch.setattr(embed_module, "slide_patches", refuse)  # embed's own reference
    yield built
    assert not built
    assert not (cohort.parent / ".patchwise-cache").exists()


def _refused(argv, capsys) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


TRAIN_ROWS = [
    (["--method", "groupdro", "--eta", "-1"], "GroupDRO needs eta > 0"),
    (["--method", "groupdro", "--eta", "0"], "GroupDRO needs eta > 0"),
    (["--method", "dfr"], "--method dfr retrains the last layer"),
    (["--method", "gerne", "--beta", "-2"], "GERNE needs beta >= -1"),
    (["--method", "gerne", "--c", "0"], "GERNE needs c in (0, 1]"),
    (["--method", "gerne", "--c", "1.5"], "GERNE needs c in (0, 1]"),
    (["--method", "erm", "--c", "0.3"], "--c has no effect with --method erm"),
    (["--method", "erm", "--beta", "2"], "--beta has no effect with --method erm"),
    (["--method", "gerne", "--eta", "0.1"], "--eta has no effect with --method gerne"),
    (["--method", "groupdro", "--class-balanced"], "--class-balanced has no effect with"),
    (
        ["--attribute", "border_fraction", "--attribute-threshold", "0.5", "--tau", "0.3"],
        "--tau has no effect with --attribute border_fraction",
    ),
]


@pytest.mark.parametrize(("extra", "text"), TRAIN_ROWS, ids=[r[1][:30] for r in TRAIN_ROWS])
def test_train_refuses_before_any_cache(cohort, tmp_path, no_cache, capsys, extra, text):
    line = _refused(["train", cohort, *COMMON, *extra, "--out", tmp_path / "run"], capsys)
    assert text in line
    assert not (tmp_path / "run").exists()


def test_train_weights_missing_refused_before_any_cache(cohort, tmp_path, no_cache, capsys):
    argv = ["train", cohort, "--model", "resnet18", "--patch-size", "16", "--steps", "2"]
    line = _refused([*argv, "--weights", tmp_path / "nope.pth", "--out", tmp_path / "r"], capsys)
    assert "nope.pth: weights file not found" in line


def test_train_weights_not_a_state_dict_refused_before_any_cache(
    cohort, tmp_path, no_cache, capsys
):
    import torch

    bad = tmp_path / "other.pt"
    torch.save({"layer.weight": torch.zeros(2)}, bad)
    argv = ["train", cohort, "--model", "resnet18", "--patch-size", "16", "--weights", bad]
    line = _refused([*argv, "--out", tmp_path / "r"], capsys)
    assert "not a torchvision ResNet state dict" in line


@pytest.mark.skipif("not _no_cuda()")
def test_train_cuda_without_gpu_refused_before_any_cache(cohort, tmp_path, no_cache, capsys):
    # (already early before this change: kept as the row of the table it belongs to)
    line = _refused(["train", cohort, *COMMON, "--device", "cuda", "--out", tmp_path / "r"], capsys)
    assert "no CUDA device" in line


@pytest.mark.parametrize("flag", [["--patch-size", "64"], ["--model", "resnet18"]])
def test_train_features_refuses_patch_and_model_flags(cohort, tmp_path, no_cache, capsys, flag):
    argv = ["train", cohort, "--features", tmp_path / "f.zarr", *flag, "--out", tmp_path / "r"]
    line = _refused(argv, capsys)
    assert f"{flag[0]} has no effect with --features" in line


def test_train_dfr_refuses_sgd_flags(cohort, tmp_path, no_cache, capsys):
    argv = ["train", cohort, "--method", "dfr", "--features", tmp_path / "f.zarr", "--lr", "0.1"]
    line = _refused([*argv, "--out", tmp_path / "r"], capsys)
    assert "--lr has no effect with --method dfr" in line


@pytest.mark.skipif("not _no_cuda()")
def test_embed_cuda_without_gpu_refused_before_any_cache(cohort, tmp_path, no_cache, capsys):
    argv = ["embed", cohort, "--backbone", "resnet18", "--device", "cuda", "--patch-size", "16"]
    line = _refused([*argv, "--out", tmp_path / "f.zarr"], capsys)
    assert "no CUDA device" in line
    assert not (tmp_path / "f.zarr.partial").exists()


def test_embed_missing_weights_refused_before_any_cache(cohort, tmp_path, no_cache, capsys):
    argv = ["embed", cohort, "--backbone", "resnet18", "--weights", tmp_path / "nope.pth"]
    line = _refused([*argv, "--out", tmp_path / "f.zarr"], capsys)
    assert "nope.pth: weights file not found" in line


@pytest.mark.parametrize(
    "flag",
    [["--patch-size", "64"], ["--stride", "8"], ["--tissue", "mask"], ["--background", "dark"]],
)
def test_embed_checkpoint_refuses_patch_flags(cohort, tmp_path, no_cache, capsys, flag):
    argv = ["embed", cohort, "--checkpoint", tmp_path / "run", *flag, "--out", tmp_path / "f.zarr"]
    line = _refused(argv, capsys)
    assert f"{flag[0]} has no effect with --checkpoint" in line


SWEEP_ROWS = [
    (["--method", "erm", "--grid", "c=0,1"], "--grid c has no effect with --method erm"),
    (["--method", "resample", "--grid", "eta=0.1,1"], "--grid eta has no effect with"),
    (["--method", "gerne", "--grid", "beta=1", "--eta", "0.1"], "--eta has no effect with"),
    (["--method", "groupdro", "--grid", "eta=-1,1"], "GroupDRO needs eta > 0"),
    (["--method", "gerne", "--grid", "c=0,0.5"], "GERNE needs c in (0, 1]"),
]


@pytest.mark.parametrize(("extra", "text"), SWEEP_ROWS, ids=[r[1][:30] for r in SWEEP_ROWS])
def test_sweep_refuses_before_any_cache(cohort, tmp_path, no_cache, capsys, extra, text):
    line = _refused(["sweep", cohort, *COMMON, *extra, "--out", tmp_path / "sw"], capsys)
    assert text in line
    assert not (tmp_path / "sw").exists()


def test_sweep_names_the_methods_own_axes(cohort, tmp_path, no_cache, capsys):
    argv = ["sweep", cohort, *COMMON, "--method", "groupdro", "--grid", "beta=1,2"]
    line = _refused([*argv, "--out", tmp_path / "sw"], capsys)
    assert "--grid beta has no effect with --method groupdro" in line
    assert "groupdro's own options: eta" in line


# -- metrics: tables a reviewer would be misled by -----------------------------------------
def _table(path: Path, **columns) -> Path:
    n = 8
    base = {
        "row": np.arange(n) // 4,
        "col": np.arange(n) % 4,
        "label": np.array([0, 1] * 4),
        "tissue_ratio": np.linspace(0.05, 0.95, n),
        "prob": np.linspace(0.1, 0.9, n),
        "mean_a": np.arange(n, dtype=float),
    }
    pd.DataFrame({**base, **columns}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bad", [7.0, -5.0])
def test_metrics_refuses_ratio_outside_0_1(tmp_path, capsys, bad):
    ratio = np.linspace(0.05, 0.95, 8)
    ratio[[2, 5]] = bad
    table = _table(tmp_path / "t.csv", tissue_ratio=ratio)
    line = _refused(["metrics", table], capsys)
    assert str(table) in line
    assert "'tissue_ratio'" in line
    assert "2 value(s) outside" in line
    assert f"e.g. {bad!r} in data row 3" in line


def test_metrics_refuses_border_fraction_outside_0_1(tmp_path, capsys):
    table = _table(tmp_path / "t.csv", border_fraction=[0.1] * 7 + [1.5])
    argv = ["metrics", table, "--attribute", "border_fraction", "--attribute-threshold", "0.5"]
    line = _refused(argv, capsys)
    assert "'border_fraction' must hold ratios in [0, 1]; 1 value(s) outside" in line


@pytest.mark.parametrize("column", ["label", "y", "prob", "pred"])
def test_metrics_refuses_label_or_prediction_as_attribute(tmp_path, capsys, column):
    table = _table(tmp_path / "t.csv", y=np.arange(8) * 16, pred=[0, 1] * 4)
    argv = ["metrics", table, "--attribute", column, "--attribute-threshold", "0.5"]
    line = _refused(argv, capsys)
    assert f"'{column}' cannot be the spurious attribute" in line


def test_metrics_refuses_single_valued_attribute(tmp_path, capsys):
    table = _table(tmp_path / "t.csv", mean_a=[3.0] * 8)
    argv = ["metrics", table, "--attribute", "mean_a", "--attribute-threshold", "1"]
    line = _refused(argv, capsys)
    assert "'mean_a' holds a single value (3) in every patch" in line


def test_metrics_compare_refuses_rank_attributes(tmp_path, capsys):
    a = _table(tmp_path / "a.csv")
    line = _refused(["metrics", a, "--compare", a, "--rank-attributes"], capsys)
    assert "--compare has no effect with --rank-attributes" in line


@pytest.mark.parametrize("flag", [["--names", "X", "Y"], ["--threshold-b", "0.3"]])
def test_metrics_refuses_compare_flags_without_compare(tmp_path, capsys, flag):
    line = _refused(["metrics", _table(tmp_path / "a.csv"), *flag], capsys)
    assert f"{flag[0]} has no effect without --compare" in line


def test_metrics_compare_refuses_other_labels(tmp_path, capsys):
    a = _table(tmp_path / "a.csv")
    flipped = np.array([0, 1] * 4)
    flipped[[0, 3, 6]] ^= 1
    b = _table(tmp_path / "b.csv", label=flipped, prob=np.full(8, 0.5))
    line = _refused(["metrics", a, "--compare", b], capsys)
    assert str(b) in line
    assert "3 of 8 matched patches have another label" in line


def test_metrics_compare_same_labels_still_works(tmp_path, capsys):
    a = _table(tmp_path / "a.csv")
    b = _table(tmp_path / "b.csv", prob=np.full(8, 0.5))
    assert main(["metrics", str(a), "--compare", str(b), "--names", "ERM", "GERNE"]) == 0
    assert "fixed by GERNE" in capsys.readouterr().out
