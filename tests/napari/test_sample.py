"""File > Open Sample: the cached synthetic slide, opened through the plugin reader."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise._napari.reader import sample
from napari_patchwise.synthetic.slides import SynthConfig


@pytest.fixture
def small_sample(tmp_path, monkeypatch):
    monkeypatch.setenv(sample.SAMPLE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(sample, "SAMPLE_CONFIG", SynthConfig(size=(600, 520), seed=2))
    return tmp_path


def test_sample_is_written_once_and_returned_as_layer_data(small_sample):
    layers = sample.make_sample_slide()
    image, mask = sample.sample_paths(small_sample, sample.SAMPLE_CONFIG)
    assert image.is_file() and mask.is_file()
    first_write = image.stat().st_mtime_ns

    assert [kind for _, _, kind in layers] == ["image", "image", "image", "labels"]
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names[:3] == ["CARS", "TPEF", "SHG"]
    for data, kwargs, _ in layers[:3]:
        assert kwargs["multiscale"] and kwargs["blending"] == "additive"
        assert [lvl.shape for lvl in data] == [(600, 520), (300, 260), (150, 130)]
        lo, hi = kwargs["contrast_limits"]
        assert 0 <= lo < hi <= 255
    assert len({kwargs["colormap"] for _, kwargs, _ in layers[:3]}) == 3
    labels = np.asarray(layers[3][0][0])
    assert labels.shape == (600, 520) and set(np.unique(labels)) == {0, 1, 2}

    again = sample.make_sample_slide()  # cached: nothing is rewritten
    assert image.stat().st_mtime_ns == first_write
    assert [kwargs["name"] for _, kwargs, _ in again] == names


def test_sample_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv(sample.SAMPLE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sample.sample_cache_dir() == tmp_path / "napari-patchwise" / "samples"


@pytest.mark.gui
def test_open_sample_menu_entry_adds_the_slide(make_napari_viewer, qtbot, small_sample):
    from napari.layers import Image, Labels
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer(show=True)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    viewer.open_sample("napari-patchwise", "synthetic-slide")  # writes it: seconds
    timer.stop()
    # The event loop kept turning while the sample was written (a blocking write: 0).
    assert len(ticks) >= 5, len(ticks)
    assert [type(layer) for layer in viewer.layers] == [Image, Image, Image, Labels]
    assert [layer.name for layer in viewer.layers][:3] == ["CARS", "TPEF", "SHG"]
    viewer.layers[-1].visible = False
    viewer.reset_view()
    qtbot.wait(100)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit = shot[..., :3].max(axis=-1) > 40
    assert 0.05 < lit.mean() < 0.95, lit.mean()  # tissue drawn on a black background
