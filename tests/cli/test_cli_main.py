"""The `patchwise` entry point: help, one-line errors, and clean termination."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from napari_patchwise.cli.main import COMMANDS, main

PATCHWISE = [sys.executable, "-m", "napari_patchwise.cli"]


def test_help_lists_every_command(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.ome.tif"
    code = main(["convert", str(missing), "--out", str(tmp_path / "out.ome.tif")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "out.ome.tif").exists()


def test_sigterm_unwinds_and_leaves_no_partial_output(tmp_path):
    out = tmp_path / "slide.ome.tif"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [*PATCHWISE, "synth", "--size", "8192", "8192", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Wait until the run has started writing (temporary files appear), then terminate it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(tmp_path.iterdir()):
        time.sleep(0.1)
    assert any(tmp_path.iterdir()), "synth never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []
