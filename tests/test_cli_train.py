"""`patchwise train / predict / report`: exit codes, one-line errors, outputs."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort  # noqa: E402
from napari_patchwise.cli import main  # noqa: E402

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
        with pytest.raises(SystemExit) as exc:
            main(["train", str(manifest), "--out", str(tmp_path / "r"), *FAST, *extra])
        assert exc.value.code == 2
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
