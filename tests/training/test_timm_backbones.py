"""timm encoders as backbones: `embed --backbone timm:NAME`, `train --model timm:NAME`,
local weights (safetensors / weights_only), channel mapping, physical scale."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("safetensors")

from _cohort import make_cohort
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.feature_store import partial_path, read_features

pytestmark = pytest.mark.torch

ARCH = "vit_small_patch16_224"
SIZE = 32  # the ViT-S/16 at 32 px: 4 tokens, fast on a CPU


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny cohort (4 slides of 16 patches of 16 px, 2 channels), a random ViT-S/16
    state dict saved as .safetensors and as .pth, and its embed."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("timm")
    manifest = make_cohort(folder, cells=4, patch=16)
    torch.manual_seed(1)
    model = timm.create_model(ARCH, pretrained=False, num_classes=0, img_size=SIZE)
    weights = folder / "vits.safetensors"
    save_file(model.state_dict(), weights)
    torch.save(model.state_dict(), folder / "vits.pth")
    store = folder / "F.zarr"
    args = ["embed", str(manifest), "--backbone", f"timm:{ARCH}", "--weights", str(weights)]
    args += ["--input-size", str(SIZE), "--channels", "0,1,0+1", "--patch-size", "16"]
    assert main([*args, "--device", "cpu", "--quiet", "--out", str(store)]) == 0
    return manifest, weights, store, model.eval()


def _by_hand(model, patches: np.ndarray) -> np.ndarray:
    """R = channel 0, G = channel 1, B = their mean; /255; bicubic resize to 32 (clipped);
    the architecture's mean/std (0.5); the timm model's pooled output."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(patches.astype(np.float32))
    rgb = torch.stack([x[:, 0], x[:, 1], (x[:, 0] + x[:, 1]) / 2], dim=1) / 255
    rgb = F.interpolate(rgb, size=(SIZE, SIZE), mode="bicubic", antialias=True).clamp(0, 1)
    with torch.no_grad():
        return model((rgb - 0.5) / 0.5).numpy()


def test_embed_stores_the_timm_models_features_of_the_resized_normalised_patches(setup):
    manifest, _, store, model = setup
    features = read_features(store)
    assert features.spec["dim"] == model.num_features == 384
    assert features.vectors.shape == (64, 384)
    for slide in ("s0", "s3"):
        rows = (features.table["slide"] == slide).to_numpy()
        (npy,) = list((manifest.parent / ".patchwise-cache").glob(f"{slide}-*.npy"))
        expected = _by_hand(model, np.load(npy))
        np.testing.assert_allclose(
            features.vectors[rows].astype(np.float32), expected, rtol=2e-3, atol=2e-3
        )
    assert features.spec["source"]["encoder"]["mix"] == [[1, 0], [0, 1], [0.5, 0.5]]


def test_pth_weights_give_the_same_store_and_a_head_trains_on_it(setup, tmp_path):
    from napari_patchwise.io.feature_store import split_head
    from napari_patchwise.training.runs import load_model

    manifest, _, store, _ = setup
    run = tmp_path / "head"
    args = ["train", str(manifest), "--features", str(store), "--steps", "3"]
    assert (
        main([*args, "--eval-every", "3", "--batch-size", "8", "--quiet", "--out", str(run)]) == 0
    )
    # The head run's checkpoint is the whole encoder model: it rebuilds from its meta and
    # its backbone gives the stored vectors.
    model, meta = load_model(run)
    assert meta["model_name"] == f"timm:{ARCH}" and meta["encoder"]["input_size"] == SIZE
    backbone, _ = split_head(model, meta["model_name"])
    (npy,) = list((manifest.parent / ".patchwise-cache").glob("s1-*.npy"))
    import torch

    with torch.no_grad():
        again = backbone(torch.from_numpy(np.load(npy).astype(np.float32))).numpy()
    features = read_features(store)
    rows = (features.table["slide"] == "s1").to_numpy()
    np.testing.assert_allclose(features.vectors[rows].astype(np.float32), again, atol=2e-3)


def test_a_pth_state_dict_loads_like_the_safetensors_one(setup):
    from napari_patchwise.training.encoders import encoder_spec
    from napari_patchwise.training.models import build_model

    _, weights, _, model = setup
    spec = encoder_spec(f"timm:{ARCH}", channel_names=["a", "b", "c"], input_size=SIZE)
    for path in (weights, weights.with_suffix(".pth")):
        built = build_model(spec["name"], 3, weights=path, encoder=spec)
        state = built.encoder.state_dict()
        assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())


def test_a_preset_with_a_mismatched_weights_file_is_one_line(setup, tmp_path, capsys):
    manifest, weights, _, _ = setup
    out = tmp_path / "f.zarr"
    args = ["embed", str(manifest), "--backbone", "uni", "--weights", str(weights)]
    code = main([*args, "--patch-size", "16", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "weights do not match uni (" in err[0] and "missing" in err[0]
    assert str(weights) in err[0]
    assert not out.exists() and not partial_path(out).exists()


def test_a_pickle_with_objects_is_refused_unread(tmp_path):
    import torch

    from napari_patchwise.training.encoders import read_state_dict

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": PatchwiseError("x")}, path)
    with pytest.raises(PatchwiseError, match="cannot read weights"):
        read_state_dict(path)


def test_train_fine_tunes_a_timm_model_and_predict_rebuilds_it(setup, tmp_path):
    from napari_patchwise.training.runs import load_model

    manifest, weights, _, _ = setup
    run = tmp_path / "ft"
    args = ["train", str(manifest), "--model", f"timm:{ARCH}", "--weights", str(weights)]
    args += ["--input-size", str(SIZE), "--patch-size", "16", "--steps", "2", "--eval-every", "2"]
    assert main([*args, "--batch-size", "4", "--channels", "1", "--quiet", "--out", str(run)]) == 0
    model, meta = load_model(run)
    assert meta["encoder"]["mix"] == [[0, 1], [0, 1], [0, 1]]  # one channel: grey
    assert meta["mean"] == [0.0, 0.0] and meta["std"] == [1.0, 1.0]
    import torch

    with torch.no_grad():
        prob = model(torch.zeros(3, 2, 16, 16)).softmax(1)
    assert prob.shape == (3, 2) and torch.isfinite(prob).all()
    # fine-tuning moved the encoder's weights away from the file's
    from safetensors.torch import load_file

    start = load_file(weights)
    moved = model.encoder.state_dict()["blocks.0.attn.qkv.weight"]
    assert not torch.equal(moved, start["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "timm:no_such_net"], "timm has no model 'no_such_net'"),
        (["--backbone", f"timm:{ARCH}", "--channels", "0,X,1"], "no channel 'X'"),
        (["--backbone", "resnet18", "--channels", "0,1,1"], "--channels and --input-size go"),
        (["--backbone", "uni", "--input-size", "64"], "uni takes 224 px inputs"),
    ],
)
def test_bad_encoder_inputs_are_one_line_errors(setup, tmp_path, capsys, extra, message):
    manifest = setup[0]
    out = tmp_path / "f.zarr"
    code = main(["embed", str(manifest), *extra, "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1], err


def test_an_unknown_backbone_is_a_usage_error(capsys):
    assert main(["embed", "x.csv", "--backbone", "vgg", "--out", "f.zarr"]) == 2
    assert "unknown backbone 'vgg'" in capsys.readouterr().err


def test_without_timm_the_error_names_the_extra(monkeypatch):
    from napari_patchwise.training.encoders import encoder_spec

    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(PatchwiseError, match=r"pip install napari-patchwise\[fm\]"):
        encoder_spec(f"timm:{ARCH}", channel_names=["R", "G", "B"])


def test_channel_mix_rgb_grey_composites_and_defaults():
    from napari_patchwise.training.encoders import channel_mix

    assert channel_mix(None, ["R", "G", "B"]) == np.eye(3).tolist()
    assert channel_mix("SHG,CARS,TPEF", ["CARS", "TPEF", "SHG"]) == [
        [0, 0, 1],
        [1, 0, 0],
        [0, 1, 0],
    ]
    assert channel_mix("0+1+2", ["a", "b", "c"]) == [[1 / 3] * 3] * 3
    with pytest.warns(UserWarning, match="go into the encoder as R, G, B"):
        assert channel_mix(None, ["a", "b", "c", "d"]) == np.eye(3, 4).tolist()
    with pytest.raises(PatchwiseError, match="three channels"):
        channel_mix("0,1", ["a", "b", "c"])


def test_patches_cover_the_presets_field_of_view_at_the_slides_pixel_size(tmp_path):
    import tifffile

    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.embed import EmbedSource, encoder_setup

    image = tmp_path / "rgb.ome.tif"
    pixels = np.zeros((3, 64, 64), np.uint8)
    meta = {"axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
    tifffile.imwrite(image, pixels, metadata=meta, ome=True)
    source = EmbedSource(backbone="uni", fit_scale=True)
    _, settings = encoder_setup(image, source, PatchSettings(patch_size=64))
    assert settings.patch_size == 448  # 224 px x 0.5 µm = 112 µm = 448 px of 0.25 µm
    giga = EmbedSource(backbone="prov-gigapath", fit_scale=True)
    assert encoder_setup(image, giga, PatchSettings())[1].patch_size == 512  # 256 x 0.5 µm
    # an explicit --patch-size (no fit_scale) is kept
    kept = encoder_setup(image, EmbedSource(backbone="uni"), PatchSettings(patch_size=64))[1]
    assert kept.patch_size == 64
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with pytest.warns(UserWarning, match="no pixel size; patches of 64 px are not scaled"):
        assert encoder_setup(plain, source, PatchSettings(patch_size=64))[1].patch_size == 64
