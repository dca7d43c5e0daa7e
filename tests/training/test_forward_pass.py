"""One forward pass (inference.Forward) behind validation, predict and embed.

Each path must give exactly what its own copy of the pass gave before (normalise, model,
softmax or penultimate vectors) on a tiny model on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_patchwise.training.inference import Forward, autocast_context  # noqa: E402
from napari_patchwise.training.models import build_model  # noqa: E402

MEAN, STD = [10.0, 20.0, 30.0], [2.0, 4.0, 8.0]


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = build_model("smallcnn", 3).eval()
    patches = np.random.default_rng(0).uniform(0, 60, (5, 3, 16, 16)).astype(np.float32)
    return model, patches


def _reference_logits(model, patches: np.ndarray) -> torch.Tensor:
    """The pass as predict.py and embed.py wrote it before: normalise, then the model."""
    x = torch.from_numpy(patches.astype(np.float32))
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    with torch.no_grad():
        return model((x - mean) / std).float()


def test_forward_normalises_like_the_copies_it_replaces(tiny):
    model, patches = tiny
    forward = Forward(model, torch.device("cpu"), mean=MEAN, std=STD)
    expected = _reference_logits(model, patches)
    assert torch.equal(forward(patches), expected)
    np.testing.assert_array_equal(
        forward.probabilities(patches), torch.softmax(expected, dim=1)[:, 1].numpy()
    )
    assert not forward.channels_last  # channels-last and autocast are CUDA-only
    assert autocast_context(torch.device("cpu"), "auto")[1] is None


def test_predict_classifier_is_the_shared_pass(tiny):
    from napari_patchwise.training.predict import _Classifier

    model, patches = tiny
    expected = torch.softmax(_reference_logits(model, patches), dim=1)[:, 1].numpy()
    prob = _Classifier(model, {"mean": MEAN, "std": STD}, torch.device("cpu"))(patches)
    np.testing.assert_array_equal(prob, expected)


def test_validation_probabilities_are_the_shared_pass(tiny):
    from napari_patchwise.training.loop import dataset_probabilities

    model, patches = tiny
    normalised = (patches - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[
        :, None, None
    ]

    class Dataset:  # what PatchDataset yields: normalised x, label, group
        def __len__(self):
            return len(normalised)

        def __getitems__(self, indices):
            x = torch.from_numpy(normalised[indices])
            return x, torch.zeros(len(indices)), torch.zeros(len(indices))

    model.train()
    prob = dataset_probabilities(model, Dataset(), torch.device("cpu"), batch_size=2)
    assert model.training  # put back as it was
    model.eval()
    expected = torch.softmax(_reference_logits(model, patches), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(prob, expected, rtol=0, atol=1e-6)


def test_embedder_is_the_shared_pass(tiny, monkeypatch):
    from napari_patchwise.training import embed

    model, patches = tiny
    backbone = torch.nn.Sequential(*list(model.children())[:-1]).eval()
    monkeypatch.setattr(
        embed, "load_backbone", lambda _path, _device: (backbone, {"mean": MEAN, "std": STD})
    )
    embedder = embed._Embedder(embed.Path("store"), "cpu", batch_size=2)
    x = torch.from_numpy(patches)
    mean = torch.tensor(MEAN)[:, None, None]
    std = torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        expected = backbone((x - mean) / std).float().numpy().astype(np.float16)
    np.testing.assert_array_equal(embedder(patches), expected)


def test_channels_last_branch_gives_the_same_outputs(tiny):
    # The CUDA path's memory format, exercised on the CPU (autocast stays CUDA-only).
    model, patches = tiny
    expected = _reference_logits(model, patches)
    forward = Forward(model, torch.device("cpu"), mean=MEAN, std=STD, channels_last=True)
    weight = next(p for p in forward.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(forward(patches), expected, rtol=1e-5, atol=1e-5)
