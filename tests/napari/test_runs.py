"""Run directories and checkpoints (``runs.py``): every checkpoint works, every bad file is one line.

``runs`` is imported inside the tests that call it directly, so the CLI and dock tests
here exercise the behaviour on any version of the package.
"""

from __future__ import annotations

import json
import re
import shutil
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.cli.main import main  # noqa: E402
from napari_patchwise.io import open_slide  # noqa: E402
from napari_patchwise.training.loop import TrainConfig, train  # noqa: E402
from napari_patchwise.training.predict import geometry_table, predict_table  # noqa: E402

CHECKPOINTS = ("best.pt", "best_val_wga.pt", "last.pt")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 4-step run selected by val BCA: best.pt, best_val_wga.pt and last.pt."""
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    out = train(
        TrainConfig.from_options(
            manifest=str(manifest),
            out=str(folder / "run"),
            model="smallcnn",
            patch_size=16,
            steps=4,
            eval_every=2,
            batch_size=16,
            select="val_bca",
            num_threads=1,
        )
    )
    return folder, out


def test_a_run_writes_the_three_checkpoint_kinds(run):
    _, out = run
    assert {p.name for p in out.glob("*.pt")} == {"best.pt", "best_val_wga.pt", "last.pt"}
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    # the meta sits at the top level of best*.pt but under "meta" in last.pt
    assert best["patch_size"] == 16 and "patch_size" not in last
    assert last["meta"]["patch_size"] == 16


@pytest.mark.parametrize("name", ["", *CHECKPOINTS])
def test_every_checkpoint_kind_gives_the_same_meta(run, name):
    from napari_patchwise.training.runs import checkpoint_meta, resolve_checkpoint

    _, out = run
    path = out / name if name else out
    assert resolve_checkpoint(path) == (out / (name or "best.pt"))
    meta = checkpoint_meta(path)
    assert meta["patch_size"] == 16 and meta["in_channels"] == 2
    assert meta["model_name"] == "smallcnn" and meta["threshold"] == 0.5


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_cli_predict_accepts_every_checkpoint_kind(run, tmp_path, capsys, name):
    folder, out = run
    table = tmp_path / "pred.csv"
    args = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", str(out / name)]
    assert main([*args, "--quiet", "--out", str(table)]) == 0
    import pandas as pd

    pred = pd.read_csv(table)
    assert len(pred) == 64 and pred["prob"].between(0, 1).all()
    # the probabilities are those of the named checkpoint's weights
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    direct = predict_table(slide, geometry_table(slide, 16), out / name, device="cpu")
    np.testing.assert_allclose(pred["prob"], direct["prob"], atol=1e-6)


def test_the_run_directory_means_best_pt(run):
    folder, out = run
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    table = geometry_table(slide, 16)
    by_dir = predict_table(slide, table, out, device="cpu")["prob"]
    by_best = predict_table(slide, table, out / "best.pt", device="cpu")["prob"]
    by_wga = predict_table(slide, table, out / "best_val_wga.pt", device="cpu")["prob"]
    np.testing.assert_array_equal(by_dir, by_best)
    assert by_dir.notna().all() and by_wga.notna().all()


def test_the_dock_predicts_with_last_pt(run):
    from napari_patchwise._napari.jobs.training_work import checkpoint_patch_size, predict_job
    from napari_patchwise.patches.table import build_patch_table
    from napari_patchwise.settings import PatchSettings

    def grid_of(slide, size):  # the dock's shown table, with its grid
        return build_patch_table(slide, PatchSettings(size), labels=False)

    folder, out = run
    assert [checkpoint_patch_size(out / n) for n in ("", *CHECKPOINTS)] == [16] * 4
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    job = predict_job(slide, grid_of(slide, 16), out / "last.pt")
    result = job(cancel=threading.Event(), progress=lambda done, total: None)
    assert len(result) == 64 and result["prob"].notna().all()
    with pytest.raises(PatchwiseError, match="uses 32 px patches but the model was trained on 16"):
        predict_job(slide, grid_of(slide, 32), out / "last.pt")(
            cancel=threading.Event(), progress=lambda done, total: None
        )


def _bad_files(tmp_path, out):
    """(checkpoint argument, the file the error must name, what the message says)."""
    text = tmp_path / "notes.pt"
    text.write_text("image,mask,split\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((out / "last.pt").read_bytes()[:3000])
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    no_meta = tmp_path / "no_meta.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, no_meta)
    bad_meta = tmp_path / "bad_meta.pt"
    ckpt = torch.load(out / "best.pt", weights_only=True)
    torch.save({**ckpt, "patch_size": -16}, bad_meta)
    wrong_weights = tmp_path / "wrong_weights.pt"
    torch.save({**ckpt, "in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}, wrong_weights)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(out / "last.pt", unfinished / "last.pt")
    return [
        (text, text, "not a readable PyTorch checkpoint"),
        (empty, empty, "not a readable PyTorch checkpoint"),
        (truncated, truncated, "not a readable PyTorch checkpoint"),
        (tensor, tensor, "not a patchwise checkpoint"),
        (no_meta, no_meta, r"not a patchwise checkpoint \(no model_name, in_channels"),
        (bad_meta, bad_meta, "damaged patchwise checkpoint: .*patch_size -16"),
        (wrong_weights, wrong_weights, "weights do not fit a smallcnn with 3 channels"),
        (unfinished, unfinished, "stopped before its first evaluation — give .*last.pt"),
        (tmp_path, tmp_path, r"no checkpoint \(best.pt\) in this folder"),
        (tmp_path / "missing.pt", tmp_path / "missing.pt", "no such file or folder"),
    ]


def test_bad_checkpoints_are_one_line_errors_naming_the_file(run, tmp_path, capsys):
    folder, out = run
    cases = _bad_files(tmp_path, out)
    for argument, named, message in cases:
        code = main(
            [
                "predict",
                str(folder / "s3.ome.tif"),
                "--checkpoint",
                str(argument),
                "--quiet",
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, argument
        assert len(err) == 1 and err[0].startswith(f"patchwise predict: error: {named}: "), err
        assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "p.csv").exists()
    # the library raises the same errors (the dock shows them)
    slide = open_slide(folder / "s3.ome.tif", pyramid_cache=False)
    for argument, _, message in cases:
        with pytest.raises(PatchwiseError, match=message):
            predict_table(slide, geometry_table(slide, 16), argument, device="cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"manifest": "c.csv", "out": ', "cannot read the run configuration"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"manifest": "c.csv", "out": "r", "colour": 1}', "unknown training option"),
        ('{"manifest": "c.csv", "out": "r", "lr": "fast"}', "invalid run configuration"),
        ('{"manifest": "c.csv", "out": "r", "lr": -1}', "learning rate must be positive"),
    ],
)
def test_a_damaged_config_json_is_one_line_naming_it(run, tmp_path, capsys, content, message):
    from napari_patchwise.training.runs import read_run_config

    folder, out = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "config.json").write_text(content)
    with pytest.raises(PatchwiseError, match=message) as exc:
        read_run_config(copy)
    assert str(exc.value).startswith(f"{copy / 'config.json'}: ")
    args = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", str(copy / "last.pt")]
    assert main([*args, "--quiet", "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{copy / 'config.json'}: " in err[0] and message.split()[0] in err[0]


def test_run_config_round_trip_and_a_copied_checkpoint(run, tmp_path):
    from napari_patchwise.training.runs import load_checkpoint, read_run_config

    _, out = run
    config = read_run_config(out)
    assert config == TrainConfig.from_json(out / "config.json") and config.select == "val_bca"
    assert read_run_config(out / "last.pt") == config  # the checkpoint's folder
    lone = tmp_path / "lone.pt"
    shutil.copy(out / "best.pt", lone)
    assert read_run_config(lone, required=False) is None
    with pytest.raises(PatchwiseError, match=r"no config\.json: not a run directory"):
        read_run_config(lone)
    ckpt, meta = load_checkpoint(lone)
    assert set(ckpt["model"]) == set(torch.load(out / "best.pt", weights_only=True)["model"])
    assert meta["patch_size"] == 16
    assert json.loads((out / "config.json").read_text())["steps"] == 4


def test_cli_predict_on_a_large_single_level_slide_writes_nothing_but_out(
    run, tmp_path, monkeypatch
):
    """Prediction reads level 0: no display pyramid is written into the user's cache."""
    import pandas as pd
    import tifffile

    _, out = run
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(cache))
    image = tmp_path / "tall.tif"  # taller than the 4096 px display-pyramid threshold
    tifffile.imwrite(image, np.zeros((2, 4112, 32), np.uint8), photometric="minisblack")
    table = tmp_path / "out" / "pred.csv"
    assert (
        main(["predict", str(image), "--checkpoint", str(out), "--quiet", "--out", str(table)]) == 0
    )
    assert list(cache.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out", "tall.tif"]
    assert len(pd.read_csv(table)) == (4112 // 16) * 2


@pytest.mark.parametrize("case", ["slide-smaller-than-patch", "out-is-a-folder"])
def test_cli_predict_refuses_before_writing(run, tmp_path, capsys, case):
    import tifffile

    _, out = run
    image = tmp_path / "small.tif"
    side = 8 if case == "slide-smaller-than-patch" else 32  # the run's patches are 16 px
    tifffile.imwrite(image, np.zeros((2, side, side), np.uint8), photometric="minisblack")
    target = tmp_path / "pred.csv"
    if case == "out-is-a-folder":  # a folder someone named like a table: never deleted
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    args = ["predict", str(image), "--checkpoint", str(out), "--quiet", "--out", str(target)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("larger than the slide" in err) if side == 8 else ("folder" in err)
    if case == "out-is-a-folder":
        assert (target / "keep.txt").read_text() == "mine"
    else:
        assert not target.exists()


@pytest.mark.parametrize("name", ["history.csv", "predictions.parquet"])
def test_cli_predict_never_overwrites_a_file_of_its_run(run, capsys, name):
    folder, out = run
    before = (out / name).read_bytes()
    args = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", str(out), "--quiet"]
    assert main([*args, "--out", str(out / name)]) == 2
    assert name in capsys.readouterr().err
    assert (out / name).read_bytes() == before


def test_a_missing_best_val_checkpoint_points_to_best_pt(run):
    from napari_patchwise.training.runs import resolve_checkpoint

    _, out = run  # selected by val_bca: best.pt is val_bca's, best_val_wga.pt exists
    with pytest.raises(PatchwiseError, match=r"best\.pt is the checkpoint of the run's own"):
        resolve_checkpoint(out / "best_val_bca.pt")
