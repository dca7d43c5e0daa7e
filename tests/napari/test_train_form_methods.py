"""The dock's training form: beta and c are editable for every method that reads them."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("method", "enabled"),
    [("gerne", True), ("gerne-inferred", True), ("jtt", False), ("erm", False)],
)
def test_beta_and_c_follow_the_methods_hyperparameters(qtbot, method, enabled):
    from napari_patchwise._napari.model_tab.train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    form.method_combo.setCurrentText(method)
    form._on_method(method)
    assert form.beta.isEnabled() is enabled and form.c.isEnabled() is enabled
