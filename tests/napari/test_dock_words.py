"""The dock speaks in its own words: no notification, label or tooltip cites a flag of the
``patchwise`` command (``--resume``, ``--out``, ``--weights``...).

Errors raised by the core carry the command's hint; the dock shows the core's
``dock_hint`` where there is one and names any other flag by the dock's field
(:func:`napari_patchwise._napari.dock.words.dock_line`). A real napari viewer under Xvfb.
"""

from __future__ import annotations

import re

import pytest
from qtpy.QtWidgets import QAbstractButton, QLabel, QLineEdit, QWidget

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.dock.words import dock_line
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.training.config import TrainConfig
from napari_patchwise.training.runs import check_new_run_dir, check_output_dir, resolve_checkpoint

pytestmark = pytest.mark.gui
FLAG = re.compile(r"--[a-z]")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    notes: list[str] = []
    for name in ("show_error", "show_info", "show_warning"):
        monkeypatch.setattr(notify, name, notes.append)
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    return widget, notes


def visible_texts(widget: QWidget) -> list[str]:
    """Every label, button text, tooltip and placeholder of the dock."""
    texts = []
    for child in widget.findChildren(QWidget):
        texts.append(child.toolTip())
        if isinstance(child, QLabel | QAbstractButton):
            texts.append(child.text())
        if isinstance(child, QLineEdit):
            texts.append(child.placeholderText())
    return [t for t in texts if t]


def test_no_label_tooltip_or_placeholder_cites_a_flag(dock):
    widget, _ = dock
    texts = visible_texts(widget)
    assert len(texts) > 50
    assert [t for t in texts if FLAG.search(t)] == []


def test_model_tab_errors_name_fields_not_flags(dock, manifest, tmp_path):
    widget, notes = dock
    form = widget.model_panel.form
    form.manifest_edit.setText(str(manifest))
    form.out_edit.setText(str(tmp_path / "run"))
    form.preset_combo.setCurrentText("paper")  # needs a weights file
    form.train_button.click()
    form.preset_combo.setCurrentText("none")
    form.freeze_bn.setChecked(True)  # frozen statistics of random weights
    form.train_button.click()
    form.freeze_bn.setChecked(False)
    form.model_combo.setCurrentText("smallcnn")
    form.method_combo.setCurrentText("gerne")
    form.batch_size.setValue(15)  # GERNE's two half batches
    form.train_button.click()
    assert len(notes) == 3, notes
    assert "preset paper needs weights" in notes[0]
    assert "frozen BatchNorm statistics needs weights" in notes[1]
    assert "batch size" in notes[2]
    assert [n for n in notes if FLAG.search(n)] == []
    assert not (tmp_path / "run").exists()


def test_predict_with_a_run_without_best_pt_says_resume_in_the_docks_words(dock, tmp_path):
    widget, notes = dock
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    image = make_cohort(tmp_path / "cohort").parent / "s0.ome.tif"
    widget.viewer.open(str(image), plugin="napari-patchwise")
    widget.model_panel.predict_box.run_edit.setText(str(run))
    widget.model_panel.predict_box.predict_button.click()
    (message,) = notes
    assert "no checkpoint (best.pt) yet" in message and "Resume run" in message
    assert not FLAG.search(message)


def test_a_folder_of_stray_files_offers_only_a_new_folder(dock, manifest, tmp_path):
    widget, notes = dock
    form = widget.model_panel.form
    out = tmp_path / "stray"
    out.mkdir()
    (out / "history.csv").write_text("step,loss\n")
    form.manifest_edit.setText(str(manifest))
    form.out_edit.setText(str(out))
    form.train_button.click()
    choice = form.folder_choice
    assert not choice.isHidden() and not choice.resume_button.isEnabled()
    assert choice.new_button.isEnabled() and not widget.model_panel.busy()
    assert notes == [] and not FLAG.search(choice.label.text())


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda tmp: check_new_run_dir(_run_with_last(tmp), resume=False, overwrite=False),
        lambda tmp: resolve_checkpoint(_run_with_last(tmp)),
        lambda tmp: check_output_dir(_a_file(tmp) / "run"),
        lambda tmp: TrainConfig.from_options(
            {"manifest": "m.csv", "out": "r", "lr": -1.0}
        ).validate(),
        lambda tmp: TrainConfig.from_options(
            {"manifest": "m.csv", "out": "r", "method": "dfr"}
        ).validate(),
    ],
    ids=["taken", "no-best", "file-in-the-way", "bad-lr", "dfr-without-features"],
)
def test_core_errors_reach_the_dock_without_flags(raise_it, tmp_path):
    with pytest.raises(PatchwiseError) as info:
        raise_it(tmp_path)
    assert FLAG.search(str(info.value))  # the command's line names its flag...
    line = dock_line(info.value)
    assert not FLAG.search(line), line  # ...the dock's does not
    assert notify.one_line(info.value) == line


def _run_with_last(tmp):
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text("{}")
    (run / "last.pt").write_bytes(b"")
    return run


def _a_file(tmp):
    path = tmp / "file"
    path.write_text("")
    return path
