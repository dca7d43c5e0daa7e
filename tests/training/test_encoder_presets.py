"""Each pathology encoder preset builds the model its card describes (on the meta device:
no GBs allocated) with the stated feature width and input size."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from napari_patchwise.training.encoder_presets import PRESET_NAMES, PRESETS

pytestmark = pytest.mark.torch

#: name -> (embedding width, transformer blocks, prefix tokens: class + registers)
EXPECTED = {
    "uni": (1024, 24, 1),
    "uni2-h": (1536, 24, 9),
    "virchow2": (2560, 32, 5),
    "h-optimus-0": (1536, 40, 5),
    "prov-gigapath": (1536, 40, 1),
}


def test_every_preset_is_checked():
    assert set(EXPECTED) == set(PRESET_NAMES)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_preset_builds_its_model_with_the_stated_width_and_input(name):
    import torch

    from napari_patchwise.training.encoders import (
        create_encoder,
        encoder_spec,
        feature_dim,
        with_head,
    )

    preset = PRESETS[name]
    width, depth, prefix = EXPECTED[name]
    spec = encoder_spec(name, channel_names=["R", "G", "B"])
    with torch.device("meta"):
        encoder = create_encoder(spec)
        model = with_head(encoder, spec)
        assert feature_dim(encoder, preset.pool) == preset.dim == width
        assert len(encoder.blocks) == depth and encoder.num_prefix_tokens == prefix
        assert tuple(encoder.patch_embed.img_size) == (preset.input_size,) * 2 == (224, 224)
        x = torch.zeros(2, 3, preset.input_size, preset.input_size)
        assert tuple(model.features(x).shape) == (2, width)
        assert tuple(model(x).shape) == (2, 2)
    assert model.fc.in_features == width
    assert preset.source.startswith("https://huggingface.co/")
    assert preset.pixel_size > 0 and preset.resize_size >= preset.input_size


def test_field_of_view_and_physical_patch_size():
    from napari_patchwise.errors import PatchwiseError
    from napari_patchwise.training.encoders import encoder_spec, physical_patch_size

    assert PRESETS["uni2-h"].field_of_view_um == pytest.approx(112.0)
    spec = encoder_spec("h-optimus-0", channel_names=["R", "G", "B"])
    assert physical_patch_size(spec, [0.5, 0.5]) == 224
    assert physical_patch_size(spec, [0.25]) == 448
    assert physical_patch_size(spec, [0.5, None]) is None
    with pytest.raises(PatchwiseError, match="different pixel sizes"):
        physical_patch_size(spec, [0.5, 0.25])
