"""`patchwise train / predict / report`: exit codes, one-line errors, outputs."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise.cli.main import main

pytestmark = pytest.mark.torch

FAST = [
    "--model",
    "smallcnn",
    "--patch-size",
    "16",
    "--batch-size",
    "16",
    "--num-threads",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def test_train_report_predict(manifest, tmp_path, capsys):
    runs = []
    for method in ("erm", "gerne"):
        out = tmp_path / method
        code = main(
            [
                "train",
                str(manifest),
                "--method",
                method,
                "--steps",
                "4",
                "--eval-every",
                "2",
                "--out",
                str(out),
                *FAST,
            ]
        )
        assert code == 0
        runs.append(str(out))
    assert (tmp_path / "gerne" / "metrics.json").is_file()

    report = tmp_path / "report.html"
    assert main(["report", *runs, "--out", str(report)]) == 0
    text = report.read_text()
    assert "Table 1" in text and "<td>GERNE</td>" in text and "<td>val BCA</td>" in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3  # learning curves + one Figure 1 per run
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)

    folder = manifest.parent
    table = tmp_path / "pred.parquet"
    args = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", runs[0], "--quiet"]
    assert main([*args, "--mask", str(folder / "s3_mask.tif"), "--out", str(table)]) == 0
    full = pd.read_parquet(table)
    assert {"label", "tissue_ratio", "prob", "pred"} <= set(full.columns) and len(full) == 64
    assert main([*args, "--out", str(table)]) == 0
    geometry = pd.read_parquet(table)
    assert "label" not in geometry and {"y", "x", "prob", "pred"} <= set(geometry.columns)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--method", "gerne", "--beta", "50"],
            r"beta=50 is outside \[-1, beta_max\) .* choose --beta in \[-1, ",
        ),
        (
            ["--method", "gerne", "--tau", "0"],
            "group non-tumor/small has no training patches at tau=0",
        ),
        (["--select", "val_acc"], None),  # argparse refuses it: usage error
    ],
)
def test_train_errors_are_one_line_with_exit_2(manifest, tmp_path, capsys, extra, message):
    if message is None:
        assert main(["train", str(manifest), "--out", str(tmp_path / "r"), *FAST, *extra]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        return
    code = main(["train", str(manifest), "--out", str(tmp_path / "r"), *FAST, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("patchwise train: error: ")
    assert re.search(message, err[0])


def test_missing_manifest_and_existing_run(manifest, tmp_path, capsys):
    assert main(["train", str(tmp_path / "none.csv"), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "manifest not found" in capsys.readouterr().err
    out = str(tmp_path / "r")
    assert main(["train", str(manifest), "--steps", "1", "--out", out, *FAST]) == 0
    assert main(["train", str(manifest), "--steps", "1", "--out", out, *FAST]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(manifest), "--steps", "2", "--out", out, "--resume", *FAST]) == 0
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.html")]) == 2


def _cli_error(argv, capsys) -> tuple[int, list[str]]:
    """Exit code and stderr lines of a refused command (a parser refusal exits instead)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


# Each value is refused by TrainConfig.validate() (the library and the dock), and may be
# refused earlier by the parser's argument types: either way one line naming the problem.
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--weight-decay", "-1"], "weight decay must be >= 0"),
        (["--momentum", "-1"], r"momentum must be in \[0, 1\)"),
        (["--eval-batch-size", "0"], "eval batch size must be positive"),
        (["--num-workers", "-1"], "num_workers must be >= 0"),
        (["--seed", "-1"], r"seed must be in \[0, "),
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--tau", "nan"], "--tau must be a finite number"),
        (["--tissue-threshold", "nan"], "--tissue-threshold must be a finite number"),
        (["--threshold", "2"], r"threshold=2.0 is outside \[0, 1\]"),
        (["--stride", "0"], "stride must be positive"),
        (["--num-threads", "0"], "num_threads must be positive"),
        (["--eval-every", "0"], "eval_every must be positive"),
        (["--steps", "0"], "steps must be positive"),
        (["--batch-size", "1"], "batch size must be at least 2"),
        (["--patch-size", "0"], "patch size must be positive"),
    ],
)
def test_bad_train_values_are_one_line_errors_that_create_nothing(
    manifest, tmp_path, capsys, flags, message
):
    out = tmp_path / "run"
    code, err = _cli_error(["train", str(manifest), "--out", str(out), *FAST, *flags], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("patchwise train: error: "), err
    assert re.search(f"{message}|argument {flags[0]}", err[0]), err[0]
    assert not out.exists()


def test_train_out_naming_a_file_and_a_busy_run_are_one_line(manifest, tmp_path, capsys):
    from napari_patchwise.training.runs import run_lock

    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    assert main(["train", str(manifest), "--out", str(notes), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"patchwise train: error: {notes}: a file is in the way of the run directory — "
        "choose a folder path for --out."
    ]
    out = tmp_path / "run"
    with run_lock(out):  # what a `patchwise train` running into `out` holds
        assert main(["train", str(manifest), "--steps", "1", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is writing this run directory" in err[0]
    assert not out.exists() and notes.read_text() == "keep"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size=-3"], "batch size must be a positive integer, got -3"),
        (["--batch-size", "0"], "batch size must be a positive integer, got 0"),
        (["--threshold", "2"], r"threshold=2.0 is outside \[0, 1\]"),
        (["--threshold", "-0.1"], r"threshold=-0.1 is outside \[0, 1\]"),
        (["--threshold", "nan"], r"threshold=nan is outside \[0, 1\]"),
    ],
)
def test_bad_predict_values_are_one_line_errors(manifest, tmp_path, capsys, flags, message):
    folder = manifest.parent
    table = tmp_path / "pred.csv"
    args = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", str(tmp_path / "no-run")]
    code, err = _cli_error([*args, *flags, "--quiet", "--out", str(table)], capsys)
    flag = flags[0].split("=")[0]
    assert code == 2 and len(err) == 1, err
    assert re.search(f"{message}|argument {flag}", err[0]), err
    assert not table.exists()


def test_train_flags_are_the_flat_options_and_make_the_same_config(tmp_path):
    import argparse

    from napari_patchwise.cli.train import add_parser, config_from_args
    from napari_patchwise.settings import PatchSettings

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings][1:]  # no -h
    assert flags == [
        "--out", "--preset", "--method", "--tau", "--attribute", "--attribute-threshold",
        "--patch-size", "--stride", "--tissue",
        "--tissue-threshold", "--background", "--mask-map", "--keep-edges", "--model", "--weights",
        "--channels", "--input-size", "--steps",
        "--batch-size", "--lr", "--weight-decay", "--momentum", "--beta", "--c", "--eta",
        "--jtt-fraction", "--jtt-up", "--infer-fraction",
        "--class-balanced", "--augment", "--freeze-bn", "--gerne-train-bn", "--eval-every",
        "--select", "--slices", "--threshold", "--seed", "--device", "--precision",
        "--channels-last",
        "--num-workers", "--num-threads", "--eval-batch-size", "--cache-dir", "--features",
        "--resume",
        "--overwrite",
        "--quiet",
    ]  # fmt: skip
    args = parser.parse_args(
        ["m.csv", "--out", str(tmp_path), "--patch-size", "32", "--tissue", "mask", "--tau", "0.2"]
    )
    config = config_from_args(args)
    assert config.patch == PatchSettings(patch_size=32, tissue="mask")
    assert (config.manifest, config.tau, config.model) == ("m.csv", 0.2, "resnet50")
