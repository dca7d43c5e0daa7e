"""``patchwise demo``: a synthetic slide in napari and a screenshot showing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.io import imread

from napari_patchwise.cli import demo
from napari_patchwise.cli.main import main


def _lit_fraction(rgb: np.ndarray) -> float:
    return float((rgb[..., :3].max(axis=-1) > 40).mean())


@pytest.mark.gui
@pytest.mark.torch
def test_demo_no_gui_trains_both_runs_and_writes_screenshot_and_report(tmp_path):
    """The real command, as `make demo` runs it under Xvfb (small slides, few steps)."""
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "napari_patchwise.cli", "demo", "--out", str(out)]
    cmd += ["--no-gui", "--size", "512", "--steps", "6"]
    env = {**os.environ, "NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shot_path = out / "screenshot.png"
    assert proc.stdout.strip().splitlines()[-1] == str(shot_path)
    assert f"report: {out / 'report.html'}" in proc.stderr
    shot = imread(shot_path)
    assert shot.shape[0] >= 600 and shot.shape[1] >= 900
    # The right part of the window is the canvas: the slide must be visible there.
    canvas = shot[80:-80, shot.shape[1] // 3 :]
    assert 0.05 < _lit_fraction(canvas) < 0.95
    assert len(np.unique(canvas.reshape(-1, canvas.shape[-1])[:, :3] // 32, axis=0)) > 8
    assert sorted(p.name for p in out.iterdir()) == [
        "cohort", "images", "predictions", "report.html", "runs", "screenshot.png", "table1.csv"
    ]  # fmt: skip

    # the report gives both runs' worst-group accuracy, as their metrics.json hold it
    report = (out / "report.html").read_text()
    for name, label in (("erm", "ERM"), ("gerne", "GERNE")):
        metrics = json.loads((out / "runs" / name / "metrics.json").read_text())
        wga = 100 * metrics["by_selection"]["val_wga"]["test"]["wga"]
        assert f"{label} {wga:.1f} %" in report
        overlay = imread(out / "images" / f"{name}.png")
        assert 0.05 < _lit_fraction(overlay) < 0.95
    assert report.count("data:image/png;base64,") == 6  # curves, figure 1 x2, 3 overlays
    assert "ERM (A) against GERNE (B)" in report
    compare = imread(out / "images" / "compare.png")[..., :3].reshape(-1, 3)
    # the comparison overlay's colours are on the canvas (both right, only ERM/GERNE right)
    assert len(np.unique(compare // 16, axis=0)) > 8

    # a second demo reuses the runs and predictions: tests/training/test_demo_story.py


@pytest.mark.gui
def test_build_demo_viewer_opens_channels_and_mask(make_napari_viewer, qtbot, tmp_path):
    from napari.layers import Image, Labels

    from napari_patchwise._napari.reader.sample import ensure_sample_slide
    from napari_patchwise.synthetic.slides import SynthConfig

    image, mask = ensure_sample_slide(tmp_path, SynthConfig(size=(512, 512), seed=1))
    viewer = make_napari_viewer(show=True)
    layers = demo.build_demo_viewer(tmp_path, viewer, image=image, mask=mask)
    assert [layer.name for layer in layers["channels"]] == ["CARS", "TPEF", "SHG"]
    assert all(isinstance(layer, Image) for layer in layers["channels"])
    assert isinstance(layers["mask"], Labels)
    assert {int(v) for v in np.unique(np.asarray(layers["mask"].data[-1]))} == {0, 1, 2}
    path = demo.save_screenshot(viewer, tmp_path / "shot.png")
    assert 0.05 < _lit_fraction(imread(path)) < 0.95


def test_demo_without_display_or_xvfb_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "no display to show napari on" in capsys.readouterr().err
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    assert main(["demo", "--out", str(tmp_path), "--no-gui"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no display and no xvfb-run" in err[0]
    assert list(tmp_path.iterdir()) == []
