"""Model factory: M-channel input, 2-output head, local pretrained weights, no download."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torchvision = pytest.importorskip("torchvision")

from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.training.models import RANDOM_INIT_MESSAGE, adapt_first_conv, build_model  # noqa: E402


@pytest.mark.parametrize(("name", "channels", "size"), [("smallcnn", 5, 20), ("resnet18", 2, 32)])
def test_models_take_m_channels_and_give_two_logits(name, channels, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(name, channels).eval()
    out = model(torch.zeros(3, channels, size, size))
    assert out.shape == (3, 2)


def test_resnet_without_weights_warns_random_init():
    with pytest.warns(UserWarning, match=RANDOM_INIT_MESSAGE):
        build_model("resnet18", 3)


def test_pretrained_rgb_filters_are_spread_over_channels(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    rgb = reference.conv1.weight.detach()

    five = build_model("resnet18", 5, weights=path)
    expected = rgb[:, [0, 1, 2, 0, 1]] * (3 / 5)
    assert torch.allclose(five.conv1.weight, expected)
    # the rest of the backbone is the pretrained one; the head is a new 2-way layer
    assert torch.equal(five.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert five.fc.out_features == 2

    one = build_model("resnet18", 1, weights=path)
    assert torch.allclose(one.conv1.weight, rgb.sum(dim=1, keepdim=True), atol=1e-6)
    # a constant image gives the first layer the same response as the RGB model
    assert torch.allclose(adapt_first_conv(rgb, 6).sum(dim=1), rgb.sum(dim=1), atol=1e-6)


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PatchwiseError, match=r"resnet50\.pth: weights do not match"):
        build_model("resnet18", 3, weights=path)
    with pytest.raises(PatchwiseError, match="weights file not found"):
        build_model("resnet18", 3, weights=tmp_path / "missing.pth")
    with pytest.raises(PatchwiseError, match="unknown model 'vgg'"):
        build_model("vgg", 3)
