"""Named presets for published pathology foundation models distributed as timm checkpoints.

Each preset records what its model card states: the timm architecture and the keyword
arguments that build it, the input size and resize rule, the normalisation, which output
is the embedding (the class token, or the class token concatenated with the mean of the
patch tokens), the feature width, and the pixel size the encoder was trained at. Values
the cards do not state are marked in :attr:`EncoderPreset.unconfirmed` and in
``docs/encoders.md``. No weights are ever downloaded: the user points ``--weights`` at a
local copy (``docs/encoders.md`` says how to get one).

Plain data only (no torch, no timm): :mod:`.encoders` builds the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Bioptimus' H&E statistics (H-optimus-0 model card).
HOPTIMUS_MEAN: tuple[float, float, float] = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD: tuple[float, float, float] = (0.211883, 0.230117, 0.177517)


@dataclass(frozen=True)
class EncoderPreset:
    """One published encoder, as its model card describes it.

    Attributes
    ----------
    name : str
        The name given to ``--backbone`` / ``--model`` (e.g. ``uni2-h``).
    arch : str
        The timm architecture passed to ``timm.create_model``.
    kwargs : dict
        Its keyword arguments; layer classes are named by string (``"SwiGLUPacked"``,
        ``"SiLU"``) and resolved when the model is built.
    input_size : int
        Side of the square image the encoder sees.
    resize_size : int
        The patch is resized to this side, then centre-cropped to ``input_size``
        (equal to ``input_size``: resized only).
    interpolation : str
        ``"bilinear"`` or ``"bicubic"``.
    mean, std : tuple of float
        Normalisation of RGB values in [0, 1].
    pool : str
        ``"token"``: the model's pooled output (its class token); ``"cls+mean"``: the
        class token concatenated with the mean of the patch tokens (register tokens
        left out).
    dim : int
        Width of the embedding.
    pixel_size : float
        Micrometres per pixel of the training tiles (before ``resize_size``).
    magnification : str
        What the card says about magnification.
    source : str
        The model card.
    unconfirmed : tuple of str
        Fields the model card does not state (docs/encoders.md says what was assumed).
    """

    name: str
    arch: str
    kwargs: dict[str, Any]
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pool: str
    dim: int
    pixel_size: float
    magnification: str
    source: str
    unconfirmed: tuple[str, ...] = field(default=())

    @property
    def field_of_view_um(self) -> float:
        """Side in µm of the tissue one input covers (the resized tile, before the crop)."""
        return self.resize_size * self.pixel_size


PRESETS: dict[str, EncoderPreset] = {
    p.name: p
    for p in (
        EncoderPreset(
            name="uni",
            arch="vit_large_patch16_224",
            kwargs={
                "img_size": 224,
                "patch_size": 16,
                "init_values": 1e-5,
                "num_classes": 0,
                "dynamic_img_size": True,
            },
            input_size=224,
            resize_size=224,
            interpolation="bilinear",  # torchvision Resize(224), its default
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pool="token",
            dim=1024,
            pixel_size=0.5,
            magnification="20x",
            source="https://huggingface.co/MahmoodLab/UNI",
            unconfirmed=("pixel_size",),
        ),
        EncoderPreset(
            name="uni2-h",
            arch="vit_giant_patch14_224",
            kwargs={
                "img_size": 224,
                "patch_size": 14,
                "depth": 24,
                "num_heads": 24,
                "init_values": 1e-5,
                "embed_dim": 1536,
                "mlp_ratio": 2.66667 * 2,
                "num_classes": 0,
                "no_embed_class": True,
                "mlp_layer": "SwiGLUPacked",
                "act_layer": "SiLU",
                "reg_tokens": 8,
                "dynamic_img_size": True,
            },
            input_size=224,
            resize_size=224,
            interpolation="bilinear",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pool="token",
            dim=1536,
            pixel_size=0.5,
            magnification="20x",
            source="https://huggingface.co/MahmoodLab/UNI2-h",
            unconfirmed=("pixel_size", "magnification"),
        ),
        EncoderPreset(
            name="virchow2",
            arch="vit_huge_patch14_224",
            kwargs={
                "img_size": 224,
                "init_values": 1e-5,
                "num_classes": 0,
                "mlp_ratio": 5.3375,
                "reg_tokens": 4,
                "global_pool": "",
                "dynamic_img_size": True,
                "mlp_layer": "SwiGLUPacked",
                "act_layer": "SiLU",
            },
            input_size=224,
            resize_size=224,
            interpolation="bicubic",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pool="cls+mean",
            dim=2560,
            # Trained on tiles at 5x, 10x, 20x and 40x (mixed magnification); 20x here.
            pixel_size=0.5,
            magnification="mixed 5x/10x/20x/40x (20x used here)",
            source="https://huggingface.co/paige-ai/Virchow2",
        ),
        EncoderPreset(
            name="h-optimus-0",
            arch="vit_giant_patch14_reg4_dinov2",
            kwargs={
                "img_size": 224,
                "init_values": 1e-5,
                "num_classes": 0,
                "global_pool": "token",
                "dynamic_img_size": False,
            },
            input_size=224,
            resize_size=224,
            interpolation="bilinear",
            mean=HOPTIMUS_MEAN,
            std=HOPTIMUS_STD,
            pool="token",
            dim=1536,
            pixel_size=0.5,
            magnification="20x (224 px at 0.5 µm/px)",
            source="https://huggingface.co/bioptimus/H-optimus-0",
        ),
        EncoderPreset(
            name="prov-gigapath",
            arch="vit_giant_patch14_dinov2",
            kwargs={
                "img_size": 224,
                "in_chans": 3,
                "patch_size": 16,
                "embed_dim": 1536,
                "depth": 40,
                "num_heads": 24,
                "init_values": 1e-5,
                "mlp_ratio": 5.33334,
                "num_classes": 0,
            },
            input_size=224,
            resize_size=256,  # Resize(256, bicubic) then CenterCrop(224), as on the card
            interpolation="bicubic",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pool="token",
            dim=1536,
            pixel_size=0.5,
            magnification="20x (256 px tiles at 0.5 µm/px)",
            source="https://huggingface.co/prov-gigapath/prov-gigapath",
        ),
    )
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_encoder_preset(name: str) -> EncoderPreset | None:
    """The preset called ``name`` (case-insensitive), or None."""
    return PRESETS.get(name.lower())
