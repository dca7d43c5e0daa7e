"""JTT and GERNE with inferred groups: exact sets, and training without reading groups."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise.cli.main import main
from napari_patchwise.training.methods.base import TrainingGroups
from napari_patchwise.training.methods.gerne_inferred import inferred_groups, own_class_probability
from napari_patchwise.training.methods.jtt import UpsampledSampler, error_set, upsampled_index

pytestmark = pytest.mark.torch

FAST = ["--model", "smallcnn", "--patch-size", "16", "--batch-size", "16"]
FAST += ["--num-threads", "1", "--quiet", "--steps", "6", "--eval-every", "3"]


def test_error_set_is_the_misclassified_patches():
    labels = np.array([0, 1, 1, 0, 1, 0])
    prob = np.array([0.2, 0.4, 0.5, 0.5, 0.9, 0.1])
    np.testing.assert_array_equal(error_set(labels, prob, 0.5), [1, 3])
    np.testing.assert_array_equal(error_set(labels, prob, 0.45), [1, 3])
    np.testing.assert_array_equal(error_set(labels, prob, 0.95), [1, 2, 4])


def test_upsampled_passes_count_each_error_up_times():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    index = upsampled_index(8, np.array([1, 6]), up=4)
    assert len(index) == 8 + 2 * 3
    sampler = UpsampledSampler(labels, 7, seed=0, index=index)
    drawn = np.concatenate([sampler.draw(s)[0] for s in range(2)])  # one pass: 14 slots
    np.testing.assert_array_equal(np.bincount(drawn, minlength=8), [1, 4, 1, 1, 1, 1, 4, 1])


def test_inferred_groups_are_the_lowest_own_class_probabilities_per_class():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    prob = np.array([0.9, 0.1, 0.6, 0.2, 0.3, 0.9, 0.2, 0.8, 0.05, 0.7, 0.6, 0.95, 0.4, 0.5, 1])
    np.testing.assert_allclose(own_class_probability(labels, prob)[:2], [0.1, 0.9])
    groups = inferred_groups(labels, prob, 0.4)
    # non-tumor: round(0.4 * 5) = 2 lowest p(0|x) = highest prob: patches 0 and 2
    # tumor: round(0.4 * 10) = 4 lowest prob: patches 8, 6, 12, 13
    minority = np.flatnonzero(groups % 2 == 1)
    np.testing.assert_array_equal(minority, [0, 2, 6, 8, 12, 13])
    np.testing.assert_array_equal(groups // 2, labels)


class _NoGroups(TrainingGroups):
    """Training groups whose groups cannot be read."""

    def __getattribute__(self, name):
        if name in ("groups", "counts", "alpha"):
            raise AssertionError(f"the method read the training groups ({name})")
        return super().__getattribute__(name)


@pytest.fixture
def no_groups(monkeypatch):
    """The method of the run gets no groups; its ERM first stage gets meaningless ones."""
    import napari_patchwise.training.loop as loop
    import napari_patchwise.training.methods as methods

    made, real = [], methods.make_method

    def make(name, data, config):
        if name == "erm":  # the first stage: uniform batches never look at a group
            data = TrainingGroups(data.labels, np.full(len(data.labels), -1), data.tau)
        else:
            data = _NoGroups(data.labels, data.groups, data.tau)
        made.append(real(name, data, config))
        return made[-1]

    # patched where the training loop looks it up (imported at module level there)
    monkeypatch.setattr(loop, "make_method", make)
    return made


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def _train_probabilities_recorder(monkeypatch):
    from napari_patchwise.training import loop as train

    seen = []
    real = train.FirstStage.train_probabilities

    def record(self, folder, which):
        prob = real(self, folder, which)
        seen.append((folder, which, prob, self.run.data.train_set))
        return prob

    monkeypatch.setattr(train.FirstStage, "train_probabilities", record)
    return seen


def _independent_probabilities(checkpoint, dataset, head: bool = False):
    """A checkpoint's probabilities of ``dataset`` (a head run's: of its vectors)."""
    import torch

    from napari_patchwise.io.feature_store import split_head
    from napari_patchwise.training.loop import dataset_probabilities
    from napari_patchwise.training.runs import load_model

    model, meta = load_model(checkpoint)
    if head:
        model = split_head(model, meta["model_name"])[1]
    return dataset_probabilities(model, dataset, torch.device("cpu"), batch_size=64)


def test_jtt_upweights_exactly_the_first_models_training_errors(
    manifest, tmp_path, monkeypatch, no_groups
):
    import torch

    seen = _train_probabilities_recorder(monkeypatch)
    out = tmp_path / "jtt"
    args = ["train", str(manifest), "--method", "jtt", "--jtt-fraction", "0.5"]
    assert main([*args, "--jtt-up", "5", *FAST, "--out", str(out)]) == 0
    (folder, which, prob, train_set) = seen[0]
    assert folder == out / "first_stage" and which == "last"
    stage_history = (out / "first_stage" / "history.csv").read_text().splitlines()
    assert stage_history[-1].split(",")[0] == "3"  # 0.5 x 6 steps
    again = _independent_probabilities(out / "first_stage" / "last.pt", train_set)
    np.testing.assert_allclose(again, prob, atol=1e-6)
    expected = np.flatnonzero((again >= 0.5).astype(int) != train_set.labels)
    state = torch.load(out / "last.pt", weights_only=True)["method"]
    np.testing.assert_array_equal(state["errors"].numpy(), expected)
    jtt = next(m for m in no_groups if m.name == "jtt")
    np.testing.assert_array_equal(jtt.errors, expected)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "jtt" and "wga" in metrics["test"]  # known-group WGA


def test_gerne_inferred_trains_on_the_biased_models_lowest_fraction(
    manifest, tmp_path, monkeypatch, no_groups
):
    seen = _train_probabilities_recorder(monkeypatch)
    out = tmp_path / "gi"
    args = ["train", str(manifest), "--method", "gerne-inferred", "--beta", "0.5"]
    assert main([*args, "--infer-fraction", "0.3", "--lr", "0.02", *FAST, "--out", str(out)]) == 0
    stage = json.loads((out / "first_stage" / "config.json").read_text())
    assert stage["method"] == "erm" and stage["select"] == "val_bca"
    assert stage["lr"] == pytest.approx(0.002) and stage["weight_decay"] == pytest.approx(2e-4)
    (_, which, prob, train_set) = seen[0]
    assert which == "best"
    again = _independent_probabilities(out / "first_stage" / "best.pt", train_set)
    np.testing.assert_allclose(again, prob, atol=1e-6)
    method = next(m for m in no_groups if m.name == "gerne-inferred")
    np.testing.assert_array_equal(method.inferred, inferred_groups(train_set.labels, again, 0.3))
    metrics = json.loads((out / "metrics.json").read_text())
    assert "wga" in metrics["test"]


def test_a_resumed_jtt_run_does_not_train_its_first_stage_again(manifest, tmp_path, monkeypatch):
    out = tmp_path / "jtt"
    assert main(["train", str(manifest), "--method", "jtt", *FAST, "--out", str(out)]) == 0
    seen = _train_probabilities_recorder(monkeypatch)
    more = [*FAST[:-4], "--steps", "9", "--eval-every", "3"]
    assert (
        main(["train", str(manifest), "--method", "jtt", *more, "--out", str(out), "--resume"]) == 0
    )
    assert seen == []
    # --overwrite replaces a run that holds a first stage
    assert (
        main(["train", str(manifest), "--method", "jtt", *FAST, "--out", str(out), "--overwrite"])
        == 0
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "jtt", "--jtt-fraction", "0"], "--jtt-fraction"),
        (["--method", "gerne-inferred", "--infer-fraction", "1"], "--infer-fraction"),
        (["--method", "erm", "--jtt-up", "3"], "--jtt-up"),
    ],
)
def test_bad_options_are_one_line_errors(manifest, tmp_path, capsys, flags, message):
    assert main(["train", str(manifest), *flags, *FAST, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r" / "first_stage").exists()


@pytest.mark.parametrize("method", ["jtt", "gerne-inferred"])
def test_head_only_runs_train_both_stages_on_the_feature_store(
    manifest, tmp_path, monkeypatch, no_groups, method
):
    from napari_patchwise.training.embed import EmbedSource, embed

    run = tmp_path / "run"
    assert main(["train", str(manifest), *FAST, "--out", str(run)]) == 0
    store = tmp_path / "features.zarr"
    embed(manifest, store, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16)
    seen = _train_probabilities_recorder(monkeypatch)
    out = tmp_path / method
    extra = ["--beta", "0"] if method == "gerne-inferred" else []
    head = ["--features", str(store), "--num-threads", "1", "--quiet", "--steps", "6"]
    assert main(["train", str(manifest), "--method", method, *extra, *head, "--out", str(out)]) == 0
    (_, which, prob, train_set) = seen[0]
    stage = json.loads((out / "first_stage" / "config.json").read_text())
    assert stage["features"] == str(store) and stage["method"] == "erm"
    again = _independent_probabilities(out / "first_stage" / f"{which}.pt", train_set, True)
    np.testing.assert_allclose(again, prob, atol=1e-5)
    assert "wga" in json.loads((out / "metrics.json").read_text())["test"]
