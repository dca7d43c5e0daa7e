"""Outputs never destroy data: existing folders and inputs are refused, temporaries are
private and cleaned, a slide and its mask are replaced together."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import tifffile

from _runs import make_run
from napari_patchwise._atomic import atomic_path, check_output, clean_stale
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.write import OME_ZARR

PATCHWISE = [sys.executable, "-m", "napari_patchwise.cli"]
SYNTH = ["synth", "--size", "64", "64", "--tile", "32", "--quiet"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def _tree(folder) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[4:20, 4:28] = 1
    mask[8:16, 8:16] = 2
    image, mask_path = tmp_path / "s.tif", tmp_path / "s_mask.tif"
    tifffile.imwrite(
        image, rng.integers(0, 255, (3, 32, 32), dtype=np.uint8), photometric="minisblack"
    )
    tifffile.imwrite(mask_path, mask)
    return image, mask_path


# -- existing folders and inputs named as outputs --------------------------------------------


def test_report_out_naming_the_run_folder_keeps_the_run(tmp_path):
    # Seen: `patchwise report RUN --out RUN` deleted the run's checkpoints, exit 0.
    run = make_run(tmp_path / "run")
    before = _tree(run)
    proc = subprocess.run(
        [*PATCHWISE, "report", str(run), "--out", str(run)], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"patchwise report: error: {run}: is an existing folder, not a file name; nothing "
        "was written — name a file (e.g. inside that folder)."
    ]
    assert _tree(run) == before
    # The same run reports fine into a file (the refusal is about the name only).
    assert main(["report", str(run), "--out", str(run / "report.html")]) == 0
    assert (run / "report.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("option", ["--out", "--geojson"])
def test_stats_output_naming_an_existing_folder_keeps_it(tmp_path, pair, capsys, option):
    # A folder whose name looks like a table (or a GeoJSON) file.
    folder = tmp_path / ("results.csv" if option == "--out" else "results.geojson")
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    outputs = {"--out": str(tmp_path / "t.csv"), "--geojson": str(tmp_path / "t.geojson")}
    outputs[option] = str(folder)
    args = ["stats", str(pair[0]), "--mask", str(pair[1]), "--patch-size", "16", "--quiet"]
    args += ["--out", outputs["--out"], "--geojson", outputs["--geojson"]]
    assert main(args) == 2
    assert "is an existing folder" in _error_line(capsys)
    assert _tree(folder) == {"keep.txt": b"precious"}


def test_stats_refuses_to_overwrite_its_manifest(tmp_path, pair, capsys):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"image,mask,split\n{pair[0].name},{pair[1].name},train\n")
    before = manifest.read_bytes()
    assert main(["stats", str(manifest), "--patch-size", "16", "--out", str(manifest)]) == 2
    line = _error_line(capsys)
    assert "would overwrite the input of this command" in line and str(manifest) in line
    assert manifest.read_bytes() == before
    # A relative spelling of the same file is the same file.
    os.chdir(tmp_path)
    assert main(["stats", "cohort.csv", "--patch-size", "16", "--out", "./cohort.csv"]) == 2
    assert manifest.read_bytes() == before


def test_synth_mask_out_equal_to_out_is_refused(tmp_path, capsys):
    out = tmp_path / "s.ome.tif"
    assert main([*SYNTH, "--out", str(out), "--mask-out", str(out)]) == 2
    assert "would overwrite the slide (--out)" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_synth_zarr_store_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "s.ome.zarr"
    assert main([*SYNTH, "--out", str(out), "--seed", "1"]) == 0
    capsys.readouterr()
    before = _tree(out)
    assert main([*SYNTH, "--out", str(out), "--seed", "2"]) == 2
    line = _error_line(capsys)
    assert "already exists" in line and "--overwrite" in line
    assert _tree(out) == before
    assert main([*SYNTH, "--out", str(out), "--seed", "2", "--overwrite"]) == 0
    assert _tree(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ome.zarr", "s_mask.ome.zarr"]


def test_synth_tiff_name_that_is_a_folder_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "s.ome.tif"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main([*SYNTH, "--out", str(out), "--overwrite"]) == 2
    assert "is an existing folder" in _error_line(capsys)
    assert _tree(out) == {"keep.txt": b"x"}


def test_convert_zarr_store_needs_overwrite_and_is_never_its_own_input(tmp_path, capsys):
    src = tmp_path / "in.ome.tif"
    tifffile.imwrite(
        src, np.arange(3 * 40 * 40, dtype=np.uint8).reshape(3, 40, 40), photometric="minisblack"
    )
    out = tmp_path / "out.ome.zarr"
    assert main(["convert", str(src), "--out", str(out), "--quiet"]) == 0
    before = _tree(out)
    capsys.readouterr()
    assert main(["convert", str(src), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert main(["convert", str(out), "--out", str(out), "--overwrite", "--quiet"]) == 2
    assert "would overwrite the input" in _error_line(capsys)
    assert _tree(out) == before
    assert main(["convert", str(src), "--out", str(out), "--overwrite", "--quiet"]) == 0


def test_check_output_refuses_a_folder_output_that_holds_an_input(tmp_path):
    store = tmp_path / "a.ome.zarr"
    (store / "0").mkdir(parents=True)
    with pytest.raises(PatchwiseError, match="holds the input"):
        check_output(store, inputs=[store / "0"], kind=OME_ZARR, overwrite=True)
    with pytest.raises(PatchwiseError, match="is a file"):
        (tmp_path / "f").write_text("")
        check_output(tmp_path / "f" / "t.csv")
    link = tmp_path / "link.csv"
    target = tmp_path / "cohort.csv"
    target.write_text("x")
    link.symlink_to(target)
    with pytest.raises(PatchwiseError, match="would overwrite"):
        check_output(link, inputs=[target])


# -- temporaries --------------------------------------------------------------------------------


def test_atomic_temporary_lives_in_a_fresh_private_folder(tmp_path):
    # The temporary is never a name in the shared folder that was created, deleted and
    # created again (a window in which another process could take it).
    target = tmp_path / "t.csv"
    with atomic_path(target) as tmp:
        assert not tmp.exists() and tmp.name == "t.csv"
        assert tmp.parent.parent == tmp_path and tmp.parent.name.startswith(
            f".patchwise-tmp-{os.getpid()}-"
        )
        assert stat.S_IMODE(tmp.parent.stat().st_mode) == 0o700
        tmp.write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_run_removes_stale_leftovers_of_killed_runs_only(tmp_path, capsys):
    dead, old = _dead_pid(), time.time() - 2 * 3600
    stale_scratch = tmp_path / f".patchwise-scratch-{dead}-abc123"
    stale_tmp = tmp_path / f".patchwise-tmp-{dead}-x_y9"
    fresh = tmp_path / f".patchwise-tmp-{dead}-fresh1"  # dead owner, but touched just now
    alive = tmp_path / f".patchwise-scratch-{os.getppid()}-live00"  # owner still runs
    for folder in (stale_scratch, stale_tmp, fresh, alive):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "chunk").write_bytes(b"x" * 1000)
    for folder in (stale_scratch, stale_tmp, alive):
        for p in (folder / "sub" / "chunk", folder / "sub", folder):
            os.utime(p, (old, old))
    user_files = [tmp_path / ".patchwise-tmp-notes", tmp_path / ".t.abcd1234.tmp.csv"]
    for p in user_files:
        p.write_text("mine")
        os.utime(p, (old, old))

    assert main([*SYNTH, "--out", str(tmp_path / "s.ome.tif")]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [fresh.name, alive.name, *(p.name for p in user_files), "s.ome.tif", "s_mask.tif"]
    )


def test_clean_stale_sweeps_each_folder_once_per_process(tmp_path):
    leftover = tmp_path / f".patchwise-tmp-{_dead_pid()}-abc"
    leftover.mkdir()
    assert clean_stale(tmp_path, max_age=-1) == [leftover]
    leftover.mkdir()
    assert clean_stale(tmp_path, max_age=-1) == []  # swept already: no rescans per write


# -- synth: slide and mask are one unit; no host id in the metadata -----------------------------


def test_interrupted_synth_keeps_the_old_slide_and_mask_together(tmp_path, monkeypatch):
    from napari_patchwise.io import write
    from napari_patchwise.synthetic import slides

    out = tmp_path / "s.ome.tif"
    assert main([*SYNTH, "--out", str(out), "--seed", "1"]) == 0
    before = _tree(tmp_path)
    assert sorted(before) == ["s.ome.tif", "s_mask.tif"]
    real = write.write_ome_tiff
    calls = []

    def failing_mask_write(path, levels, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the slide is written, the mask write is interrupted
            raise KeyboardInterrupt
        return real(path, levels, **kwargs)

    monkeypatch.setattr(slides, "write_ome_tiff", failing_mask_write)  # synth's writer
    assert main([*SYNTH, "--out", str(out), "--seed", "2"]) == 130  # Ctrl-C's exit status
    assert len(calls) == 2
    assert _tree(tmp_path) == before  # old slide beside old mask, nothing else


def test_synth_ome_uuid_is_random_not_time_and_mac(tmp_path):
    out = tmp_path / "s.ome.tif"
    assert main([*SYNTH, "--out", str(out)]) == 0
    for path in (out, tmp_path / "s_mask.tif"):
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
        value = xml.split('UUID="urn:uuid:', 1)[1].split('"', 1)[0]
        assert uuid.UUID(value).version == 4


# -- interrupts are quiet -------------------------------------------------------------------------

_UNRETRIEVED = """
import asyncio, gc, sys
from distributed.client import AllExit
if sys.argv[1] == "quiet":
    from napari_patchwise._compute import quiet_distributed_shutdown
    quiet_distributed_shutdown()
async def fail(exc):
    raise exc
loop = asyncio.new_event_loop()
tasks = [loop.create_task(fail(AllExit())), loop.create_task(fail(ValueError("real")))]
loop.run_until_complete(asyncio.sleep(0.01))
del tasks
gc.collect()
"""


@pytest.mark.parametrize("mode", ["loud", "quiet"])
def test_distributed_shutdown_signal_is_not_printed(mode):
    # Seen: ~165 "Task exception was never retrieved ... AllExit" tracebacks when
    # `stats --workers 1` was terminated (the client cancels its pending gathers).
    pytest.importorskip("distributed")
    proc = subprocess.run(
        [sys.executable, "-c", _UNRETRIEVED, mode], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert ("AllExit" in proc.stderr) == (mode == "loud")  # the loud run proves the probe
    assert "ValueError: real" in proc.stderr  # other unretrieved errors still show


@pytest.mark.parametrize("name", ["config.json", "metrics.json", "history.csv", "last.pt"])
def test_report_never_overwrites_a_file_of_a_run(tmp_path, capsys, name):
    run = make_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["report", str(run), "--out", str(run / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # a new file beside the run's files is fine
    assert main(["report", str(run), "--out", str(run / "report.html")]) == 0


def test_report_refuses_a_run_listed_twice(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    args = ["report", str(run), str(tmp_path / "." / "run"), "--out", str(tmp_path / "r.html")]
    assert main(args) == 2
    assert "run listed twice" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
