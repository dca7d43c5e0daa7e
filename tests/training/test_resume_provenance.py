"""Resume and reuse continue only on the run's own data: paths stored absolute, slides
fingerprinted (inputs.json), last.pt carrying its run's identity; embed's store locked and
its checkpoint known by content.

Tiny smallcnn runs on the hand-built cohort of tests/_cohort.py, cancelled after two steps.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort, write_slide  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.training.loop import TrainCallbacks, TrainConfig, train  # noqa: E402


class StopAfter(TrainCallbacks):
    """Cancel after ``n`` steps (the run writes last.pt and stops)."""

    def __init__(self, n: int | None = None):
        self.n, self.steps = n, []

    def on_step(self, step, total, loss):
        self.steps.append(step)

    def should_stop(self):
        return self.n is not None and len(self.steps) >= self.n


def config(manifest, out, **kw):
    base = dict(
        manifest=str(manifest), out=str(out), model="smallcnn", patch_size=16, steps=4,
        eval_every=2, batch_size=16, lr=0.05, seed=1, num_threads=1,
    )  # fmt: skip
    return TrainConfig.from_options({**base, **kw})


def started(manifest, out, **kw):
    """A run cancelled after 2 of its 4 steps: last.pt, config.json, inputs.json."""
    train(config(manifest, out, **kw), StopAfter(2))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    return out


# -- stored paths resolve wherever the run is resumed ------------------------------------------
def test_resume_from_another_folder_finds_the_stored_manifest(tmp_path, monkeypatch):
    make_cohort(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a")
    run = started("cohort.csv", tmp_path / "run", cache_dir="cache")
    saved = json.loads((run / "config.json").read_text())
    assert saved["manifest"] == str(tmp_path / "a" / "cohort.csv")
    assert saved["cache_dir"] == str(tmp_path / "a" / "cache")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")  # the same manifest by another relative name
    rec = StopAfter()
    train(config("../a/cohort.csv", run, cache_dir="../a/cache", resume=True), rec)
    assert rec.steps == [3, 4] and (run / "metrics.json").is_file()


@pytest.mark.parametrize("splits", ["same", "other"])
def test_a_same_named_cohort_in_the_current_folder_is_not_used(tmp_path, monkeypatch, splits):
    make_cohort(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a")
    run = started("cohort.csv", tmp_path / "run")
    # another cohort with the same file name: its manifest reads the same, or its val
    # slide and test slide were training slides of the first
    other = (
        ("train", "train", "val", "test") if splits == "same" else ("val", "test", "train", "train")
    )
    make_cohort(tmp_path / "b", splits=other)
    monkeypatch.chdir(tmp_path / "b")
    before = (run / "last.pt").read_bytes()
    with pytest.raises(PatchwiseError) as exc:
        train(config("cohort.csv", run, resume=True), StopAfter())
    message = str(exc.value)
    assert "\n" not in message
    if splits == "same":  # same bytes: the manifest matches, its slides do not
        assert "the data changed since the run started: slide s0: image" in message
        assert str(tmp_path / "b" / "s0.ome.tif") in message
    else:
        assert "cannot resume with different settings: manifest" in message
    assert (run / "last.pt").read_bytes() == before


# -- the data is checked ---------------------------------------------------------------------------
def test_a_replaced_slide_refuses_the_resume_naming_it(tmp_path):
    manifest = make_cohort(tmp_path / "cohort")
    run = started(manifest, tmp_path / "run")
    saved = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    write_slide(manifest.parent, "s2", cells=8, patch=16, seed=999)  # the val slide, replaced
    with pytest.raises(PatchwiseError, match="the data changed since the run started") as exc:
        train(config(manifest, run, resume=True), StopAfter())
    message = str(exc.value)
    assert f"slide s2: image {manifest.parent / 's2.ome.tif'} changed" in message
    assert "slide s2: mask" in message and "s0" not in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == saved


def test_a_slide_added_to_the_manifest_refuses_the_resume(tmp_path):
    manifest = make_cohort(tmp_path / "cohort")
    run = started(manifest, tmp_path / "run")
    write_slide(manifest.parent, "s9", cells=8, patch=16, seed=9)
    with manifest.open("a") as f:
        f.write("s9.ome.tif,s9_mask.tif,train\n")
    with pytest.raises(PatchwiseError, match="slide s9 added"):
        train(config(manifest, run, resume=True), StopAfter())


@pytest.mark.parametrize("other", ["settings", "cohort"])
def test_a_last_pt_copied_from_another_run_is_refused(tmp_path, other):
    manifest = make_cohort(tmp_path / "cohort")
    run = started(manifest, tmp_path / "run")
    if other == "settings":  # another patch size: smallcnn's weights fit either
        foreign = started(manifest, tmp_path / "foreign", patch_size=8)
        listed = "patch_size 8 (last.pt) vs 16 (config.json)"
    else:  # the same settings on another cohort
        foreign = started(
            make_cohort(tmp_path / "b", splits=("val", "test", "train", "train")),
            tmp_path / "foreign",
        )
        listed = "it was trained on other slides or files"
    shutil.copy(foreign / "last.pt", run / "last.pt")
    with pytest.raises(PatchwiseError, match=r"last\.pt belongs to another run") as exc:
        train(config(manifest, run, resume=True), StopAfter())
    assert listed in str(exc.value) and "\n" not in str(exc.value)


def test_a_run_of_an_older_version_resumes_with_one_warning(tmp_path, monkeypatch, caplog):
    """No inputs.json, a last.pt without identity, a relative manifest in config.json."""
    manifest = make_cohort(tmp_path / "cohort")
    run = started(manifest, tmp_path / "run")
    (run / "inputs.json").unlink()
    ckpt = torch.load(run / "last.pt", weights_only=True)
    del ckpt["run"]
    torch.save(ckpt, run / "last.pt")
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "manifest": "cohort.csv"}))
    monkeypatch.chdir(manifest.parent)
    rec = StopAfter()
    with caplog.at_level(logging.WARNING, logger="napari_patchwise.training.runs"):
        train(config("cohort.csv", run, resume=True), rec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "written by an older patchwise (no inputs.json)" in warnings[0]
    assert rec.steps == [3, 4]
    assert (run / "inputs.json").is_file()  # recorded now: the next resume is checked
    assert "run" in torch.load(run / "last.pt", weights_only=True)


# -- embed: the checkpoint by content, one embed per store ---------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny cohort and a finished 2-step smallcnn run on it."""
    folder = tmp_path_factory.mktemp("embed")
    manifest = make_cohort(folder / "cohort")
    run = train(config(manifest, folder / "run", steps=2))
    return manifest, run


class _Stop(Exception):
    pass


def _interrupted_embed(manifest, out, checkpoint, after=2):
    from napari_patchwise.training.embed import EmbedSource, embed

    def stop(done, total):
        if done >= after:
            raise _Stop

    with pytest.raises(_Stop):
        embed(manifest, out, EmbedSource(checkpoint=str(checkpoint)), device="cpu",
              chunk_rows=16, progress=stop)  # fmt: skip


@pytest.mark.parametrize("where", ["same path", "another path"])
def test_a_restored_identical_checkpoint_continues_an_interrupted_embed(trained, tmp_path, where):
    import os
    import time

    from napari_patchwise.io.feature_store import read_features
    from napari_patchwise.training.embed import EmbedSource, embed

    manifest, run = trained
    ckpt = tmp_path / "model" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(run / "best.pt", ckpt)
    out = tmp_path / "f.zarr"
    _interrupted_embed(manifest, out, ckpt)
    backup = tmp_path / "backup.pt"
    os.replace(ckpt, backup)  # lost, then restored from a backup: new inode and times
    time.sleep(0.01)
    restored = ckpt if where == "same path" else tmp_path / "elsewhere" / "best.pt"
    restored.parent.mkdir(exist_ok=True)
    shutil.copyfile(backup, restored)
    seen = []
    embed(manifest, out, EmbedSource(checkpoint=str(restored)), device="cpu", chunk_rows=16,
          progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    total = seen[-1][1]
    assert seen[0][0] == 2 and seen[-1][0] == total > 2  # continued, not refused or restarted
    assert read_features(out).vectors.shape[1] == 128


def test_an_interrupted_embed_still_refuses_a_checkpoint_of_other_content(trained, tmp_path):
    from napari_patchwise.training.embed import EmbedSource, embed

    manifest, run = trained
    out = tmp_path / "f.zarr"
    _interrupted_embed(manifest, out, run / "best.pt")
    other = tmp_path / "best.pt"
    ckpt = torch.load(run / "best.pt", weights_only=True)
    ckpt["model"] = {k: v + 1 for k, v in ckpt["model"].items()}
    torch.save(ckpt, other)
    with pytest.raises(PatchwiseError, match=r"interrupted embed of other inputs.*source"):
        embed(manifest, out, EmbedSource(checkpoint=str(other)), device="cpu", chunk_rows=16)


def test_a_second_embed_into_the_same_store_is_refused(trained, tmp_path, capsys):
    import os
    import threading

    from napari_patchwise.cli.main import main
    from napari_patchwise.training.embed import EmbedSource, embed

    manifest, run = trained
    out = tmp_path / "f.zarr"
    inside, release = threading.Event(), threading.Event()

    def hold(done, total):
        inside.set()
        release.wait(60)

    first = threading.Thread(
        target=embed,
        args=(manifest, out, EmbedSource(checkpoint=str(run))),
        kwargs=dict(device="cpu", chunk_rows=16, progress=hold),
    )
    first.start()
    try:
        assert inside.wait(60)  # the first embed is writing out.partial
        argv = ["embed", str(manifest), "--checkpoint", str(run), "--device", "cpu", "--quiet"]
        assert main([*argv, "--out", str(out)]) == 2
    finally:
        release.set()
        first.join(60)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"another patchwise embed (pid {os.getpid()}) is writing this feature store" in err
    assert str(out) in err
    assert out.is_dir() and not list(tmp_path.glob(".*lock"))  # the first one finished
    # a lock file left by a killed embed holds no lock: taken over
    other = tmp_path / "g.zarr"
    (tmp_path / ".g.zarr.patchwise-embed.lock").write_text("999999999")
    embed(manifest, other, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16)
    assert other.is_dir() and not list(tmp_path.glob(".*lock"))


# -- sweep reuse -------------------------------------------------------------------------------
def test_a_sweep_rerun_refuses_a_finished_run_whose_slides_changed(tmp_path, capsys):
    from napari_patchwise.cli.main import main

    manifest = make_cohort(tmp_path / "cohort")
    flags = ["--method", "erm", "--model", "smallcnn", "--patch-size", "16", "--batch-size",
             "16", "--steps", "2", "--eval-every", "2", "--num-threads", "1", "--quiet"]  # fmt: skip
    sweep_dir = tmp_path / "s"
    run = sweep_dir / "lr=0.05_seed=0"
    # the run a finished sweep holds, trained here (a sweep's worker runs the same train)
    assert (
        main(["train", str(manifest), *flags, "--lr", "0.05", "--seed", "0", "--out", str(run)])
        == 0
    )
    grid = {"axes": {"lr": [0.05]}, "seeds": [0]}
    spec = {"manifest": str(manifest), "method": "erm", "select": "val_wga", **grid}
    spec.update(grids=[grid], runs=[run.name])  # the sweep.json that sweep wrote
    (sweep_dir / "sweep.json").write_text(json.dumps(spec))
    argv = ["sweep", str(manifest), *flags, "--grid", "lr=0.05", "--out", str(sweep_dir)]
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    write_slide(manifest.parent, "s2", cells=8, patch=16, seed=999)  # the val slide, replaced
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run of other data: slide s2: image" in err
    assert str(run) in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
