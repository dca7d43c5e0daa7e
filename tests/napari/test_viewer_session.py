"""Save a session in the dock, close the viewer, reopen it in a fresh viewer and dock:
the same layers (names, visibility), settings, sliders and metrics (docs/sessions.md).

The slide of tests/napari/test_widget.py as files: a pyramidal OME-TIFF (0.5 µm pixels), its
mask TIFF and a prediction CSV.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
from test_widget import PROB, N, P, make_slide, wait_idle

from napari_patchwise._napari.canvas.navigation import viewer_camera
from napari_patchwise._napari.canvas.overlays import CORRECTNESS_COLORS
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.cli.main import main
from napari_patchwise.io.session import Session, SessionSlide, write_session
from napari_patchwise.io.write import write_ome_tiff

pytestmark = pytest.mark.gui
UM = 0.5


@pytest.fixture
def files(tmp_path):
    image, mask = make_slide()
    slides = tmp_path / "slides"
    slides.mkdir()
    level0 = da.from_array(image[None])
    write_ome_tiff(
        slides / "slide.ome.tif",
        [level0, level0[:, ::2, ::2], level0[:, ::4, ::4]],
        channel_names=["tissue"],
        pixel_size=UM,
        tile=128,
    )
    tifffile.imwrite(slides / "slide_mask.tif", mask)
    rows, cols = np.indices((N, N))
    pred = pd.DataFrame(
        {"slide": "slide", "row": rows.ravel(), "col": cols.ravel(), "prob": PROB.ravel()}
    )
    pred.to_csv(tmp_path / "pred.csv", index=False)
    flipped = (rows + cols) % 4 == 0  # run B: another model, wrong elsewhere
    pred["prob"] = np.where(flipped.ravel(), 1.0 - PROB.ravel(), PROB.ravel())
    pred.to_csv(tmp_path / "pred_b.csv", index=False)
    return tmp_path


def open_dock(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    return viewer, widget


def on_screen(viewer, widget):
    """What a session must bring back."""
    return {
        "layers": [(la.name, bool(la.visible)) for la in viewer.layers],
        "tau": widget.tau_slider.value(),
        "threshold": widget.threshold_slider.value(),
        "patch size": widget.form.patch_size.value(),
        "mask": widget.mask_combo.currentText(),
        "overlay": widget.overlay_choice.choice(),
        "metrics": widget.stats.metrics.text(),
        "cells": [[cell.text() for cell in row] for row in widget.stats.cells],
        "errors": widget.errors.rowCount(),
        "compared": widget.compare_box.summary.text(),
        "reviewed": getattr(widget.current, "reviewed", None),
        "center": tuple(round(v, 3) for v in viewer_camera(viewer).center[-2:]),
        "zoom": round(viewer_camera(viewer).zoom, 5),
    }


def test_saved_session_reopens_the_same_layers_settings_and_metrics(
    make_napari_viewer, qtbot, monkeypatch, files
):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer, widget = open_dock(make_napari_viewer)
    viewer.open(files / "slides" / "slide.ome.tif", plugin="napari-patchwise")
    (mask,) = viewer.open(files / "slides" / "slide_mask.tif", plugin="napari-patchwise")
    widget.configure(patch_size=P)
    widget.configure(mask=mask.name)
    widget.compute_button.click()
    wait_idle(qtbot, widget)
    assert widget.load_predictions(files / "pred.csv")
    wait_idle(qtbot, widget)
    with qtbot.waitSignal(widget.compare_box.compared, timeout=60_000):
        widget.compare_box.load_tables(files / "pred.csv", files / "pred_b.csv", ("A", "B"))
    widget.tau_slider.setValue(0.3)
    widget.threshold_slider.setValue(0.62)
    widget.overlay_choice.choose("groups")  # not the comparison the Compare tab chose
    widget.current.reviewed = {(3, 4), (0, 7)}  # the errors list's flags, where it keeps them
    mask.visible = False
    camera = viewer_camera(viewer)
    camera.center = (100.0, 60.0)
    camera.zoom = 1.5
    qtbot.wait(400)  # the errors list follows the sliders after a pause
    before = on_screen(viewer, widget)
    assert before["metrics"] and before["errors"] > 0 and "A vs B" in before["compared"]
    path = widget.session_box.save_session(files / "review.patchwise-session.json")
    assert not errors, errors
    saved = json.loads(path.read_text())
    (slide,) = saved["slides"]
    assert slide["image"] == "slides/slide.ome.tif" and slide["predictions"] == "pred.csv"
    assert slide["settings"]["tau"] == pytest.approx(0.3) and slide["computed"] is True
    assert slide["reviewed"] == [[0, 7], [3, 4]]
    assert saved["comparison"] == {
        "a": "pred.csv", "b": "pred_b.csv", "names": ["A", "B"], "slide": 0
    }  # fmt: skip
    viewer.close()

    viewer, widget = open_dock(make_napari_viewer)
    with qtbot.waitSignal(widget.session_box.restored, timeout=60_000):
        assert widget.session_box.open_session(path)
    wait_idle(qtbot, widget)
    qtbot.wait(400)
    assert not errors, errors
    after = on_screen(viewer, widget)
    assert after == before


def test_a_bad_session_is_one_notification(make_napari_viewer, monkeypatch, tmp_path):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    _viewer, widget = open_dock(make_napari_viewer)
    path = tmp_path / "s.patchwise-session.json"
    path.write_text(json.dumps({"format": "patchwise-session", "version": 9, "slides": []}))
    assert not widget.session_box.open_session(path)
    assert len(errors) == 1 and "version 9 is newer" in errors[0] and str(path) in errors[0]


def test_save_without_a_slide_file_says_so(make_napari_viewer, monkeypatch, tmp_path):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer, widget = open_dock(make_napari_viewer)
    image, _mask = make_slide()
    viewer.add_image(image, name="drawn")
    assert widget.session_box.save_session(tmp_path / "s.patchwise-session.json") is None
    assert len(errors) == 1 and "slide 'drawn' was not opened from a file" in errors[0]
    assert not list(tmp_path.iterdir())


def test_view_session_reopens_it_from_the_command_line(files):
    """``patchwise view --session FILE --screenshot``, in its own process (see
    tests/napari/test_viewer_overlays.py): the session's predictions and overlay are on screen."""
    from test_viewer_overlays import _read_png, has_colour

    settings = {"patch_size": P, "tissue": "mask", "tau": 0.3, "threshold": 0.6}
    slide = SessionSlide(
        image=files / "slides" / "slide.ome.tif",
        mask=files / "slides" / "slide_mask.tif",
        computed=True,
        predictions=files / "pred.csv",
        settings=settings,
    )
    path = write_session(Session(slides=[slide], overlay="outcome"), files / "s")
    png = files / "shot.png"
    done = subprocess.run(
        [sys.executable, "-m", "napari_patchwise.cli", "view", "--session", str(path),
         "--screenshot", str(png)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(png) in done.stdout
    shot = _read_png(png)
    for colour in CORRECTNESS_COLORS:  # the outcome overlay (and its legend) of the predictions
        assert has_colour(shot, colour), colour


def test_view_session_bad_input_is_one_line(files, capsys):
    bad = files / "bad.patchwise-session.json"
    bad.write_text(json.dumps({"format": "patchwise-session", "version": 1, "slides": [{}]}))
    assert main(["view", "--session", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        f"{bad}: slide 1 has no 'image' — save the session again from the Patchwise dock."
    )
    image = files / "slides" / "slide.ome.tif"
    assert main(["view", str(image), "--session", str(bad)]) == 2
    assert "IMAGE and --session both say what to open" in capsys.readouterr().err
    assert main(["view"]) == 2
    assert "name a slide to open (IMAGE) or a session" in capsys.readouterr().err
