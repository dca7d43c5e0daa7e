"""Encoders in the dock (run under Xvfb): the Debias tab's Embed box embeds the open slide
with a timm encoder and a local weights file in the background (progress, Cancel), and the
Model tab offers the encoder presets and ``timm:NAME``.

The slide is tests/_cohort.py's tiny one (16 px patches, 8 x 8 cells); the encoder a
randomly initialised ViT-Ti/16 whose state dict the test saves (no download).
"""

from __future__ import annotations

import pytest
import tifffile

pytest.importorskip("torch")
pytest.importorskip("timm")

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.io.feature_store import partial_path, read_features, read_spec

pytestmark = pytest.mark.gui

P = 16
ARCH = "vit_tiny_patch16_224"
WIDTH = 192  # ViT-Ti's embedding width
SMALL = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny cohort and random ViT-Ti/16 state dicts saved with torch.save: at its own
    224 px input, and at 32 px (4 tokens: fast on a CPU)."""
    import timm
    import torch

    folder = tmp_path_factory.mktemp("enc")
    manifest = make_cohort(folder, patch=P)
    torch.manual_seed(3)
    model = timm.create_model(ARCH, pretrained=False, num_classes=0)
    weights = folder / "vit_tiny.pth"
    torch.save(model.state_dict(), weights)
    small = timm.create_model(ARCH, pretrained=False, num_classes=0, img_size=SMALL)
    torch.save(small.state_dict(), folder / "vit_tiny_32.pth")
    return manifest, weights, folder / "vit_tiny_32.pth"


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch, setup, tmp_path):
    """The dock on slide s3 with its grid computed; notifications recorded."""
    notes: dict[str, list[str]] = {"error": [], "info": [], "warning": []}
    for kind in notes:
        monkeypatch.setattr(notify, f"show_{kind}", notes[kind].append)
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    folder = setup[0].parent
    viewer.open(str(folder / "s3.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / "s3_mask.tif"), name="s3_mask")
    widget.configure(mask="s3_mask")
    widget.configure(patch_size=P)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    box = widget.debias.embed
    box.out_edit.setText(str(tmp_path / "stores"))
    box.options = {"device": "cpu", "batch_size": 8, "chunk_rows": 8}
    return widget, box, notes


def test_embed_box_embeds_the_open_slide_in_the_background(dock, qtbot, setup):
    widget, box, notes = dock
    box.encoder_combo.setCurrentText(f"timm:{ARCH}")
    assert box.weights_note.text().startswith("no weights file")  # random init, said
    box.weights_edit.setText(str(setup[2]))
    assert box.weights_note.text() == ""
    box.input_size.setValue(SMALL)
    embedded: list = []
    box.embedded.connect(embedded.append)
    box.embed_button.click()
    assert box.busy() and not box.embed_button.isEnabled()  # the event loop runs on
    qtbot.waitUntil(lambda: not box.busy(), timeout=120_000)
    assert not notes["error"]
    (out,) = embedded
    features = read_features(out)
    assert features.vectors.shape == (64, WIDTH)  # 8 x 8 cells, the model's width
    assert read_spec(out)["source"]["encoder"]["name"] == f"timm:{ARCH}"
    assert read_spec(out)["patch"]["patch_size"] == P  # the dock's grid
    assert box.progress_bar.value() == box.progress_bar.maximum() == 8  # 64 rows / 8
    assert widget.debias.retrain.features_edit.text() == str(out)
    assert not notes["error"]
    qtbot.waitUntil(lambda: not box.busy(), timeout=10_000)
    assert box.cancel_button.isEnabled() is False


def test_cancel_stops_the_embed_mid_run_and_leaves_nothing(dock, qtbot, setup, tmp_path):
    _widget, box, notes = dock
    box.encoder_combo.setCurrentText(f"timm:{ARCH}")
    box.weights_edit.setText(str(setup[1]))  # 224 px inputs: slow enough to cancel
    box.options["batch_size"] = 4
    reported: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        reported.append((done, total))
        if done >= 1 and box.cancel_button.isEnabled():
            box.cancel_button.click()

    original = box._on_progress
    box._on_progress = lambda d, t: (original(d, t), on_progress(d, t))
    embedded: list = []
    box.embedded.connect(embedded.append)
    assert box.start()
    qtbot.waitUntil(lambda: not box.busy(), timeout=120_000)
    stores = tmp_path / "stores"
    # the worker thread removes the partial store once Cancelled reaches it
    qtbot.waitUntil(lambda: not any(stores.glob("*.partial")), timeout=60_000)
    assert not embedded
    assert reported and max(d for d, _ in reported) < reported[0][1]  # stopped mid-run
    assert not [p for p in stores.iterdir() if p.name.endswith(".zarr")]
    assert "Patchwise: embedding cancelled" in notes["info"]
    assert not notes["error"]


def test_mismatched_weights_are_one_line(dock, qtbot, setup, tmp_path):
    _widget, box, notes = dock
    box.encoder_combo.setCurrentText("uni")  # a ViT-L/16: the ViT-Ti file does not fit it
    box.weights_edit.setText(str(setup[1]))
    assert box.start()
    qtbot.waitUntil(lambda: not box.busy(), timeout=60_000)
    assert len(notes["error"]) == 1
    line = notes["error"][0]
    assert "\n" not in line and "weights do not match uni" in line and "missing" in line
    assert str(setup[1]) in line
    stores = tmp_path / "stores"
    assert not stores.exists() or not any(partial_path(p).exists() for p in stores.iterdir())
    assert box.status_label.text().startswith("failed: ")


def test_unknown_encoders_are_one_line(dock, qtbot):
    _widget, box, notes = dock
    box.encoder_combo.setCurrentText("resnet18")  # not an encoder: refused at once
    assert not box.start()
    assert (
        notes["error"] == [notes["error"][0]] and "unknown encoder 'resnet18'" in notes["error"][0]
    )
    box.encoder_combo.setCurrentText("timm:no_such_model_xyz")  # timm is asked in the job
    assert box.start()
    qtbot.waitUntil(lambda: not box.busy(), timeout=60_000)
    assert len(notes["error"]) == 2 and "timm has no model 'no_such_model_xyz'" in notes["error"][1]
    assert any("randomly initialised" in w for w in notes["warning"])  # no weights: said


def test_model_tab_offers_presets_and_timm_models(dock, tmp_path):
    widget, _box, _notes = dock
    form = widget.model_panel.form
    items = [form.model_combo.itemText(i) for i in range(form.model_combo.count())]
    assert {"smallcnn", "resnet18", "uni", "uni2-h", "virchow2", "h-optimus-0"} <= set(items)
    assert "timm:vit_small_patch16_224" in items
    form.model_combo.setCurrentText("timm:vit_tiny_patch16_224")  # typed names work too
    assert "randomly initialised" in form.weights_note.text()
    form.weights_edit.setText(str(tmp_path / "w.safetensors"))
    assert form.weights_note.text() == ""
    form.model_combo.setCurrentText("smallcnn")
    form.weights_edit.setText("")
    assert form.weights_note.text() == ""  # a built-in model: no encoder note


def test_a_cohort_embed_feeds_retrain_head(dock, qtbot, setup, tmp_path):
    """'whole cohort': the store of every manifest slide goes into the Retrain box, and a
    DFR head trains on it and predicts the open slide (the encoder model with the head)."""
    import numpy as np

    from napari_patchwise.training.predict import predict_table

    widget, box, notes = dock
    manifest = setup[0]
    retrain = widget.debias.retrain
    retrain.manifest_edit.setText(str(manifest))
    box.cohort_check.setChecked(True)
    box.encoder_combo.setCurrentText(f"timm:{ARCH}")
    box.weights_edit.setText(str(setup[2]))
    box.input_size.setValue(SMALL)
    with qtbot.waitSignal(box.embedded, timeout=120_000) as done:
        assert box.start()
    store = done.args[0]
    assert read_features(store).vectors.shape == (4 * 64, WIDTH)  # 4 slides of 8 x 8 cells
    assert retrain.features_edit.text() == str(store)
    retrain.extra_options = {"num_threads": 1, "seed": 0}
    retrain.out_edit.setText(str(tmp_path / "heads"))
    retrain.method_combo.setCurrentText("dfr")
    qtbot.waitUntil(lambda: not box.busy(), timeout=10_000)
    with qtbot.waitSignal(retrain.retrained, timeout=180_000) as signal:
        retrain.retrain_button.click()
    assert notes["error"] == []
    head = signal.args[0]
    state = widget.current
    expected = predict_table(state.slide, state.data.table, head)["prob"].to_numpy()
    np.testing.assert_allclose(state.data.prob, expected, atol=1e-6)
