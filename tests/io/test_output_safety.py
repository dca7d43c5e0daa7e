"""Nothing lost, nothing silently wrong: outputs replace only what is recognisably theirs.

Every case is one a user hit: ``--overwrite`` deleting a finished run, a folder of runs or
a slide put inside a ``*.zarr`` folder; ``train`` replacing a stray ``history.csv`` or a
finished run whose ``last.pt`` was deleted; a second sweep of another grid unlisting the
first; file-system errors naming an internal temporary (or nothing); a disk full while a
checkpoint is saved. The CLI runs in-process, as in ``tests/cli/test_cli_bad_inputs.py``:
one line on stderr, exit 2, and the user's files byte for byte as they were.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cohort import make_cohort
from _runs import make_run
from napari_patchwise import _atomic
from napari_patchwise._atomic import atomic_path, check_output
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.feature_store import FEATURE_STORE
from napari_patchwise.io.write import OME_ZARR

TRAIN_FAST = [
    "--model", "smallcnn", "--patch-size", "16", "--batch-size", "16", "--steps", "2",
    "--eval-every", "2", "--num-threads", "1", "--quiet",
]  # fmt: skip
EMBED = ["--backbone", "resnet18", "--patch-size", "16", "--device", "cpu", "--quiet"]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Four tiny slides (128 x 128, 2 channels) and their manifest."""
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def _victim(kind: str, folder: Path) -> Path:
    """A folder a careless --out could name, holding someone's work."""
    if kind == "run":  # a finished run
        return make_run(folder / "victim_run")
    if kind == "runs_parent":  # a folder of runs
        parent = folder / "runs_parent"
        make_run(parent / "a")
        make_run(parent / "b", seed=1)
        return parent
    if kind == "zarr_with_slide":  # a slide someone put in a folder named like a store
        store = folder / "x.ome.zarr"
        store.mkdir()
        tifffile.imwrite(store / "slide.ome.tif", np.zeros((2, 16, 16), np.uint8))
        return store
    raise AssertionError(kind)


# -- --overwrite replaces only the command's own kind of output --------------------------------


@pytest.mark.parametrize("victim", ["run", "runs_parent", "zarr_with_slide"])
@pytest.mark.parametrize("command", ["embed", "convert", "synth"])
def test_overwrite_never_replaces_a_folder_that_is_not_its_output(
    cohort, tmp_path, capsys, victim, command
):
    # Seen: `embed --out victim_run --overwrite` deleted a finished run; `--out
    # ../runs_parent --overwrite` a folder of runs; convert/synth a slide in x.ome.zarr.
    out = _victim(victim, tmp_path)
    argv = {
        "embed": ["embed", str(cohort), *EMBED],
        "convert": ["convert", str(cohort.parent / "s0.ome.tif"), "--quiet"],
        "synth": ["synth", "--size", "64", "64", "--tile", "32", "--quiet"],
    }[command]
    before = _tree(out)
    capsys.readouterr()
    if not out.name.endswith(".zarr"):
        # the name alone is refused (none of them writes a folder by that name) ...
        assert main([*argv, "--out", str(out), "--overwrite"]) == 2
        assert str(out) in _error_line(capsys)
        assert _tree(out) == before
        # ... and so is the same folder under a store's name
        out = out.rename(out.with_name(out.name + ".zarr"))
    assert main([*argv, "--out", str(out), "--overwrite"]) == 2
    line = _error_line(capsys)
    assert str(out) in line and "choose another --out" in line, line
    assert "--overwrite" not in line, line  # it would not replace it either
    assert _tree(out) == before


def test_overwrite_never_replaces_an_ome_zarr_that_holds_a_foreign_file(cohort, tmp_path, capsys):
    out = tmp_path / "c.ome.zarr"
    src = str(cohort.parent / "s0.ome.tif")
    assert main(["convert", src, "--out", str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("someone's notes\n")
    before = _tree(out)
    capsys.readouterr()
    assert main(["convert", src, "--out", str(out), "--overwrite", "--quiet"]) == 2
    line = _error_line(capsys)
    assert "notes.txt" in line and "--overwrite" not in line, line
    assert _tree(out) == before
    (out / "notes.txt").unlink()
    assert main(["convert", src, "--out", str(out), "--overwrite", "--quiet"]) == 0


def test_the_kind_of_a_folder_is_told_by_its_metadata(tmp_path):
    store = tmp_path / "f.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"attributes": {"patchwise_features": {}}}))
    (store / "vectors").mkdir()
    assert _atomic.folder_problem(store, FEATURE_STORE) is None
    assert "not an OME-Zarr image" in _atomic.folder_problem(store, OME_ZARR)
    with pytest.raises(PatchwiseError, match="already exists"):  # without --overwrite
        check_output(store, kind=FEATURE_STORE)
    assert check_output(store, kind=FEATURE_STORE, overwrite=True) == store
    (store / "slide.tif").write_bytes(b"x")
    with pytest.raises(PatchwiseError, match=r"slide\.tif") as info:
        check_output(store, kind=FEATURE_STORE, overwrite=True)
    assert "--overwrite" not in str(info.value)


def test_a_replaced_folder_is_checked_again_just_before_the_rename(tmp_path):
    store = tmp_path / "a.ome.zarr"
    store.mkdir()
    (store / ".zattrs").write_text(json.dumps({"multiscales": [{"datasets": [{"path": "0"}]}]}))
    (store / "0").mkdir()
    with (
        pytest.raises(PatchwiseError, match=r"slide\.tif"),
        atomic_path(store, replace=OME_ZARR) as tmp,
    ):
        tmp.mkdir()
        (store / "slide.tif").write_bytes(b"put there meanwhile")
    assert (store / "slide.tif").read_bytes() == b"put there meanwhile"


def test_embed_out_with_a_table_name_is_refused_before_work(cohort, tmp_path, capsys):
    # Seen: `embed --out e1.parquet` wrote a zarr store under a table's name.
    out = tmp_path / "e1.parquet"
    assert main(["embed", str(cohort), *EMBED, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert str(out) in line and ".zarr" in line, line
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.torch
def test_embed_overwrite_clears_a_stale_partial_store(cohort, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "f.zarr"

    class Stop(Exception):
        pass

    def stop(done, total):
        if done:
            raise Stop

    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.embed import EmbedSource, embed

    source = EmbedSource(backbone="resnet18")
    with pytest.raises(Stop):  # an interrupted embed of other settings
        embed(cohort, out, source, settings=PatchSettings(32), device="cpu", progress=stop)
    partial = out.with_name(out.name + ".partial")
    assert partial.is_dir()
    argv = ["embed", str(cohort), *EMBED, "--out", str(out)]
    assert main(argv) == 2
    assert "--overwrite" in _error_line(capsys)  # it is recognisably embed's own
    assert main([*argv, "--overwrite"]) == 0
    assert not partial.exists()
    spec = json.loads((out / "zarr.json").read_text())["attributes"]["patchwise_features"]
    assert spec["complete"] and spec["patch"]["patch_size"] == 16


# -- train -------------------------------------------------------------------------------------


def test_train_into_a_folder_with_a_stray_history_is_refused(cohort, tmp_path, capsys):
    # Seen: `echo notes > history.csv && patchwise train ... --out .` replaced it.
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "history.csv").write_text("notes\n")
    (folder / "slide.ome.tif").write_bytes(b"not really a slide")
    before = _tree(folder)
    for extra in ([], ["--overwrite"]):
        assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(folder), *extra]) == 2
        line = _error_line(capsys)
        assert str(folder) in line and "history.csv" in line, line
        assert "--overwrite" not in line and "choose another --out" in line, line
        assert _tree(folder) == before


def test_a_finished_run_without_last_pt_is_not_replaced(cohort, tmp_path, capsys):
    # Seen: a finished run whose last.pt was deleted lost best.pt, metrics and predictions.
    run = make_run(tmp_path / "run")
    (run / "last.pt").unlink()
    (run / "best.pt").write_bytes(b"the selected model")
    before = _tree(run)
    assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(run)]) == 2
    line = _error_line(capsys)
    assert "already holds a run" in line and "--overwrite" in line, line
    assert "--resume" not in line, line  # no last.pt: nothing to resume
    assert _tree(run) == before


def test_train_overwrite_replaces_a_run_and_only_a_run(cohort, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (run / "best_val_bca.pt").write_bytes(b"old")
    assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(run), "--overwrite"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["steps"] == 2 and config["model"] == "smallcnn"
    assert (run / "best_val_bca.pt").read_bytes() != b"old"
    assert (run / "last.pt").read_bytes() != b"checkpoint bytes"
    # a run folder that also holds other things (a subfolder of runs, a slide) is never replaced
    for extra in ("nested_run", "slide.ome.tif"):
        folder = make_run(tmp_path / f"with_{extra}")
        if extra == "nested_run":
            make_run(folder / extra)
        else:
            (folder / extra).write_bytes(b"a slide")
        before = _tree(folder)
        capsys.readouterr()
        assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(folder), "--overwrite"]) == 2
        line = _error_line(capsys)
        assert extra in line and "--overwrite" not in line, line
        assert _tree(folder) == before
    assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(run), "--overwrite", "--resume"])
    assert "not both" in _error_line(capsys)


# -- sweep -------------------------------------------------------------------------------------


def _sweep(cohort: Path, out: Path, grid: str, *extra: str) -> int:
    argv = ["sweep", str(cohort), "--method", "gerne", "--grid", grid, "--seeds", "0"]
    return main([*argv, *TRAIN_FAST, "--out", str(out), *extra])


def test_a_second_sweep_of_another_grid_is_refused(cohort, tmp_path, capsys):
    # Seen: a second grid into the same folder replaced sweep.json, sweep.csv and
    # selected.json; the first grid's runs were no longer listed.
    out = tmp_path / "sweep"
    out.mkdir()
    spec = {
        "manifest": str(cohort.resolve()), "method": "gerne", "select": "val_wga",
        "axes": {"beta": [0.5]}, "seeds": [0], "runs": ["beta=0.5_seed=0"],
    }  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(spec))
    (out / "sweep.csv").write_text("run,beta,seed,status\nbeta=0.5_seed=0,0.5,0,run\n")
    before = _tree(out)
    assert _sweep(cohort, out, "beta=1") == 2
    line = _error_line(capsys)
    assert "another grid" in line and "beta=0.5" in line and "--merge" in line, line
    assert _tree(out) == before
    spec["method"] = "erm"  # another experiment: never merged
    (out / "sweep.json").write_text(json.dumps(spec))
    assert _sweep(cohort, out, "beta=1", "--merge") == 2
    assert "another method" in _error_line(capsys)


@pytest.mark.torch
def test_merge_lists_both_grids(cohort, tmp_path, capsys):
    pytest.importorskip("torch")
    import pandas as pd

    out = tmp_path / "sweep"
    assert _sweep(cohort, out, "beta=0.5") == 0
    assert _sweep(cohort, out, "beta=0.25", "--merge") == 0
    spec = json.loads((out / "sweep.json").read_text())
    assert [g["axes"] for g in spec["grids"]] == [{"beta": [0.5]}, {"beta": [0.25]}]
    assert spec["axes"] == {"beta": [0.5, 0.25]}
    assert spec["runs"] == ["beta=0.5_seed=0", "beta=0.25_seed=0"]
    assert list(pd.read_csv(out / "sweep.csv")["run"]) == spec["runs"]
    # either grid's own command resumes the whole merged sweep (both runs reused)
    capsys.readouterr()
    assert _sweep(cohort, out, "beta=0.5") == 0
    assert capsys.readouterr().err.count("reused") == 2
    assert list(pd.read_csv(out / "sweep.csv")["run"]) == spec["runs"]


# -- file-system errors ------------------------------------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> None:
    """A small tmpfs at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")


@pytest.fixture
def mounted(tmp_path):
    mounts: list[Path] = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
        _mount_tmpfs(folder, options)
        mounts.append(folder)
        return folder

    yield mount
    for folder in reversed(mounts):
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


def _slide(path: Path, side: int, seed: int = 0) -> Path:
    image = np.random.default_rng(seed).integers(0, 255, (3, side, side), dtype=np.uint8)
    tifffile.imwrite(path, image, metadata={"axes": "CYX"}, ome=True)
    return path


def test_read_only_folder_error_names_the_output_not_a_temporary(tmp_path, mounted, capsys):
    # Seen: "./.patchwise-tmp-26315-zijezuk6: Read-only file system."
    src = _slide(tmp_path / "s.ome.tif", 64)
    ro = mounted("ro", "ro,size=1m")
    out = ro / "c.ome.tif"
    assert main(["convert", str(src), "--tile", "32", "--quiet", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert ".patchwise-" not in line, line
    assert str(ro) in line and "read-only" in line.lower(), line


def test_disk_full_error_names_the_output_and_says_what_to_do(tmp_path, mounted, capsys):
    # Seen: "No space left on device." naming nothing.
    src = _slide(tmp_path / "s.ome.tif", 1024)  # 3 MB of noise: no compression saves it
    full = mounted("full", "size=512k")
    out = full / "c.ome.tif"
    assert main(["convert", str(src), "--quiet", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert str(out) in line and ".patchwise-" not in line, line
    assert "No space left" in line and "another disk" in line, line
    assert list(full.iterdir()) == []  # no half-written file, no temporary


def test_read_only_cohort_storage_says_to_pass_cache_dir(cohort, tmp_path, mounted, capsys):
    ro = mounted("cohort", "size=4m")
    for path in cohort.parent.iterdir():
        if path.is_file():
            shutil.copy(path, ro / path.name)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True)
    if remount.returncode:
        pytest.skip("cannot remount the tmpfs read-only")
    out = tmp_path / "run"
    assert main(["train", str(ro / "cohort.csv"), *TRAIN_FAST, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "--cache-dir" in line and ".patchwise-cache" in line, line
    assert ".patchwise-tmp" not in line, line
    assert main(["train", str(ro / "cohort.csv"), *TRAIN_FAST, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0  # fmt: skip


def test_cache_dir_that_is_a_file_is_refused_before_work(cohort, tmp_path, capsys):
    # Seen: "afile: File exists."
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    argv = ["train", str(cohort), *TRAIN_FAST, "--cache-dir", str(afile)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert str(afile) in line and "not a folder" in line and "--cache-dir" in line, line
    assert afile.read_text() == "not a folder\n"


def test_user_os_error_maps_the_temporary_back():
    tmp = "/data/out/.patchwise-tmp-123-abcd/table.csv"
    exc = _atomic.user_os_error(
        OSError(errno.EROFS, "Read-only file system", tmp), ["/data/out/table.csv"]
    )
    assert exc.filename == "/data/out/table.csv" and exc.errno == errno.EROFS
    nameless = _atomic.user_os_error(OSError(errno.ENOSPC, "No space left on device"), ["t.csv"])
    assert nameless.filename == "t.csv"


# -- checkpoints -------------------------------------------------------------------------------


@pytest.mark.torch
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_old_one(
    cohort, tmp_path, capsys, monkeypatch
):
    # Seen: torch's "RuntimeError: [enforce fail at inline_container.cc:...]" traceback.
    torch = pytest.importorskip("torch")
    run = tmp_path / "run"
    assert main(["train", str(cohort), *TRAIN_FAST, "--out", str(run)]) == 0
    before = (run / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # half of it written, as when the disk filled up
            fh.truncate(Path(f).stat().st_size // 2)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . unexpected pos 4544 vs 4432"
        )

    monkeypatch.setattr(torch, "save", full_disk)
    argv = ["train", str(cohort), *TRAIN_FAST, "--steps", "4", "--out", str(run), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "inline_container" not in err, err
    line = err.strip().splitlines()[-1]  # after the validation lines of the steps run
    assert line.startswith("patchwise train: error: "), err
    assert "could not be written" in line and "is unchanged" in line, line
    assert str(run) in line and ".patchwise-tmp" not in line, line
    assert (run / "last.pt").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".patchwise-tmp")]
