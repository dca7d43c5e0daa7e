"""Ctrl-C at any moment of a ``patchwise`` command: "interrupted", exit 130, no traceback.

The window that used to print a traceback was the first second, while the package's
``__init__`` imported dask and the parser imported every command module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest


def _patchwise() -> list[str]:
    script = Path(sys.executable).with_name("patchwise")
    return [str(script)] if script.exists() else [sys.executable, "-m", "napari_patchwise.cli"]


@pytest.mark.parametrize("delay", [0.4, 0.8, 1.2])
def test_ctrl_c_early_in_a_command_is_one_line_and_exit_130(tmp_path, delay):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "slide.ome.tif"
    proc = subprocess.Popen(
        [*_patchwise(), "synth", "--size", "4096", "4096", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # a terminal's Ctrl-C reaches a command with SIGINT's default disposition; a test
        # run started as a background job inherits SIG_IGN, which Python would keep
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay)
    assert proc.poll() is None, "the command finished before the interrupt: make it longer"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err
    assert not out.exists(), "an interrupted synth left a half-written slide"


def test_warnings_are_one_line_naming_the_command():
    code = (
        "import warnings\n"
        "from napari_patchwise.cli.main import one_line_warnings\n"
        "with one_line_warnings('embed'):\n"
        "    warnings.warn('resnet18: no weights given;\\n  randomly initialised', UserWarning)\n"
        "warnings.warn('outside', UserWarning)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = proc.stderr.splitlines()
    assert lines[0] == "patchwise embed: warning: resnet18: no weights given; randomly initialised"
    # outside the command, Python's own format again (file:line, then the source line)
    assert lines[1].endswith("UserWarning: outside") and len(lines) == 2


def test_an_interrupt_python_could_not_raise_is_delivered_again():
    """A Ctrl-C inside a callback (printed as "Exception ignored" and dropped by Python's
    own hook) reaches the main thread as KeyboardInterrupt, and nothing is printed."""
    from napari_patchwise.cli.main import reraise_lost_interrupts

    lost = types.SimpleNamespace(
        exc_type=KeyboardInterrupt,
        exc_value=KeyboardInterrupt(),
        exc_traceback=None,
        err_msg=None,
        object=None,
    )
    with pytest.raises(KeyboardInterrupt):
        reraise_lost_interrupts(lost)
        for _ in range(1000):  # the interrupt arrives at the next bytecode check
            time.sleep(0.001)
