"""timm encoders as backbones: ``timm:NAME`` and the pathology presets (``uni2-h``...).

An encoder model is an :class:`EncoderClassifier`-style module: the slide's M channels
are mixed into the three the encoder expects (:func:`channel_mix`), scaled to [0, 1]
(by the value range of the slides' dtype), resized (and centre-cropped) to the encoder's
input, normalised with the encoder's mean and std, passed through the timm model, pooled
as its model card says, and ended by a linear ``fc`` head. So every step a pretrained
encoder expects travels with the model: the pipeline's own per-channel normalisation is
the identity for these models (mean 0, std 1), and ``runs.load_model`` rebuilds the
whole thing from the checkpoint's ``encoder`` spec (a plain dict, JSON and
``weights_only`` safe). ``split_head`` cuts at ``fc`` as for the ResNets.

Weights come from a local file only (``.safetensors``, ``.bin``, ``.pth``/``.pt``),
read safely (safetensors, or ``torch.load(weights_only=True)``); timm, torch and
safetensors are imported inside functions.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import PatchwiseError
from .encoder_presets import PRESET_NAMES, get_encoder_preset

log = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
FM_HINT = "pip install napari-patchwise[fm]"
RANDOM_INIT_MESSAGE = (
    "no pretrained weights given for {name}; starting from random initialisation "
    "(give --weights PATH)"
)
#: Layer classes a preset names by string (timm's, torch's).
_LAYERS = {"SwiGLUPacked": ("timm.layers", "SwiGLUPacked"), "SiLU": ("torch.nn", "SiLU")}


def is_encoder_name(name: object) -> bool:
    """Whether ``name`` is ``timm:ARCH`` or an encoder preset."""
    if not isinstance(name, str):
        return False
    if name.startswith(TIMM_PREFIX):
        return len(name) > len(TIMM_PREFIX)
    return get_encoder_preset(name) is not None


def encoder_names_help() -> str:
    """What ``--backbone`` / ``--model`` accept besides the built-in models."""
    return f"timm:NAME (any timm model) or a preset: {', '.join(PRESET_NAMES)}"


def import_timm():
    """timm, or a one-line error naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise PatchwiseError(
            "timm encoders need the timm package, which is not installed", hint=FM_HINT
        ) from None
    return timm


# -- the spec: everything needed to rebuild the model --------------------------------------
def dtype_scale(dtype) -> float:
    """The value that maps to 1.0: the top of an integer dtype's range, 1 for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def channel_mix(text: str | None, names: Sequence[str]) -> list[list[float]]:
    """The 3 x M matrix that makes the encoder's RGB input from the slide's M channels.

    ``text`` is three comma-separated items (one item: a grey image, repeated), each a
    channel name or index, or several joined by ``+`` (their mean: a composite), e.g.
    ``"TPEF,SHG,CARS"`` or ``"0,1,0+1"``. Without ``text``: an RGB slide goes in as RGB,
    any 3-channel slide in its order, one channel as grey, and other counts take their
    first three channels (or repeat the last), with a warning (docs/encoders.md).
    """
    names = [str(n) for n in names]
    m = len(names)
    if text is None:
        order = [min(i, m - 1) for i in range(3)] if m != 1 else [0, 0, 0]
        if m not in (1, 3) or (m == 3 and [n.upper() for n in names] != ["R", "G", "B"]):
            chosen = ", ".join(names[i] for i in order)
            warnings.warn(
                f"channels {chosen} go into the encoder as R, G, B (an RGB-trained "
                "encoder); choose others with --channels",
                UserWarning,
                stacklevel=2,
            )
        items = [[i] for i in order]
    else:
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3 or not all(parts):
            raise PatchwiseError(
                f"--channels {text!r} does not name three channels",
                hint="give three names or indices, e.g. --channels TPEF,SHG,CARS or 0,1,0+1",
            )
        items = [[_channel_index(c, names, text) for c in part.split("+")] for part in parts]
    matrix = np.zeros((3, m))
    for row, channels in enumerate(items):
        for c in channels:
            matrix[row, c] += 1.0 / len(channels)
    return matrix.tolist()


def _channel_index(item: str, names: list[str], text: str) -> int:
    item = item.strip()
    if item in names:
        return names.index(item)
    if item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
        return int(item)
    raise PatchwiseError(
        f"--channels {text!r}: no channel {item!r} (the slides have {', '.join(names)})",
        hint="name a channel or give its index from 0",
    )


def encoder_spec(
    name: str,
    *,
    channel_names: Sequence[str],
    dtype: Any = np.uint8,
    channels: str | None = None,
    input_size: int | None = None,
) -> dict[str, Any]:
    """The plain-dict description of an encoder model (stored in checkpoints' meta).

    Parameters
    ----------
    name : str
        ``timm:ARCH`` or a preset name.
    channel_names : sequence of str
        The slides' channels (their number M is the model's input channels).
    dtype : numpy dtype
        The slides' pixel type: its range is scaled to [0, 1].
    channels : str, optional
        ``--channels``: which channels make R, G, B (:func:`channel_mix`).
    input_size : int, optional
        The input side of a ``timm:`` model (default: the architecture's); a preset's is
        fixed by its model card.
    """
    preset = get_encoder_preset(name)
    if preset is not None:
        if input_size is not None and input_size != preset.input_size:
            raise PatchwiseError(
                f"{preset.name} takes {preset.input_size} px inputs (its model card)",
                hint="drop --input-size",
            )
        spec = {
            "arch": preset.arch,
            "kwargs": dict(preset.kwargs),
            "input_size": preset.input_size,
            "resize_size": preset.resize_size,
            "interpolation": preset.interpolation,
            "mean": list(preset.mean),
            "std": list(preset.std),
            "pool": preset.pool,
            "pixel_size": preset.pixel_size,
        }
    elif is_encoder_name(name):
        spec = _timm_spec(name[len(TIMM_PREFIX) :], input_size)
    else:
        raise PatchwiseError(f"unknown encoder {name!r}", hint=encoder_names_help())
    spec.update(
        name=name if preset is None else preset.name,
        mix=channel_mix(channels, channel_names),
        scale=dtype_scale(dtype),
    )
    return spec


def _timm_spec(arch: str, input_size: int | None) -> dict[str, Any]:
    timm = import_timm()
    if not timm.is_model(arch):
        raise PatchwiseError(
            f"timm has no model {arch!r}",
            hint="see timm.list_models(), e.g. timm:vit_small_patch16_224",
        )
    cfg = timm.models.get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if cfg is not None else {}
    size = int(input_size or (cfg.get("input_size") or (3, 224, 224))[-1])
    kwargs: dict[str, Any] = {"num_classes": 0}
    if input_size is not None:
        kwargs["img_size"] = size
    return {
        "arch": arch,
        "kwargs": kwargs,
        "input_size": size,
        "resize_size": size,
        "interpolation": "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear",
        "mean": [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))],
        "std": [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))],
        "pool": "token",
        "pixel_size": None,
    }


# -- building ----------------------------------------------------------------------------------
def create_encoder(spec: dict[str, Any]):
    """The bare timm model of ``spec`` (no head: ``num_classes=0``), randomly initialised."""

    timm = import_timm()
    kwargs = dict(spec["kwargs"])
    for key in ("mlp_layer", "act_layer"):
        if isinstance(kwargs.get(key), str):
            module, attr = _LAYERS[kwargs[key]]
            kwargs[key] = getattr(importlib.import_module(module), attr)
    kwargs["num_classes"] = 0
    return timm.create_model(spec["arch"], pretrained=False, **kwargs)


def feature_dim(encoder, pool: str) -> int:
    """Width of the pooled output of ``encoder``."""
    width = int(encoder.num_features)
    return 2 * width if pool == "cls+mean" else width


def build_encoder(
    spec: dict[str, Any],
    in_channels: int,
    *,
    num_classes: int = 2,
    weights: str | os.PathLike | None = None,
):
    """The encoder model of ``spec`` for ``in_channels``-channel patches, with a linear head.

    ``weights`` (a local state dict of the timm model) is loaded into the encoder; without
    it the encoder is randomly initialised, and a warning says so.
    """
    if len(spec["mix"][0]) != in_channels:
        raise PatchwiseError(
            f"the encoder's channel mapping is for {len(spec['mix'][0])} channels, "
            f"the slides have {in_channels}"
        )
    if weights is None:
        encoder = create_encoder(spec)
        message = RANDOM_INIT_MESSAGE.format(name=spec["name"])
        warnings.warn(message, UserWarning, stacklevel=2)
        log.info(message)
    else:
        import torch

        state = read_state_dict(weights)
        with torch.device("meta"):  # check the keys before a big model is initialised
            check_weights(create_encoder(spec), state, weights, spec["name"])
        encoder = create_encoder(spec)
        encoder.load_state_dict(_without_extra_head(state, encoder.state_dict()))
    return with_head(encoder, spec, num_classes)


def with_head(encoder, spec: dict[str, Any], num_classes: int = 2):
    """``encoder`` (a timm model) wrapped with the input steps of ``spec`` and a linear head."""
    return _classifier_class()(encoder, spec, num_classes)


def _classifier_class():
    """:class:`EncoderClassifier`, defined on first use (torch is imported lazily)."""
    global EncoderClassifier  # the class, made once
    if EncoderClassifier is not None:
        return EncoderClassifier
    import torch
    import torch.nn.functional as F

    class _EncoderClassifier(torch.nn.Module):
        """Mix channels, scale, resize/crop, normalise, encode, pool; then ``fc``."""

        def __init__(self, encoder, spec: dict[str, Any], num_classes: int):
            super().__init__()
            self.encoder = encoder
            self.spec = dict(spec)
            self.fc = torch.nn.Linear(feature_dim(encoder, spec["pool"]), num_classes)
            # Not persistent: rebuilt from the spec, so state dicts hold weights only.
            mix = torch.tensor(spec["mix"], dtype=torch.float32) / float(spec["scale"])
            self.register_buffer("mix", mix, persistent=False)
            mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(spec["std"], dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)

        def prepare(self, x):
            """Raw patches (B, M, p, p) -> the encoder's normalised RGB input."""
            x = torch.einsum("km,bmhw->bkhw", self.mix.to(x.dtype), x)
            size, crop = int(self.spec["resize_size"]), int(self.spec["input_size"])
            if tuple(x.shape[-2:]) != (size, size):
                mode = self.spec["interpolation"]
                x = F.interpolate(x, size=(size, size), mode=mode, antialias=True)
                if mode == "bicubic":  # bicubic overshoots; image resizers clip to range
                    x = x.clamp(0.0, 1.0)
            if crop < size:
                top = (size - crop) // 2
                x = x[..., top : top + crop, top : top + crop]
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

        def features(self, x):
            x = self.prepare(x)
            if self.spec["pool"] == "cls+mean":
                tokens = self.encoder.forward_features(x)
                patches = tokens[:, self.encoder.num_prefix_tokens :]
                return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
            return self.encoder(x)

        def forward(self, x):
            return self.fc(self.features(x))

    EncoderClassifier = _EncoderClassifier
    return EncoderClassifier


EncoderClassifier = None  # the nn.Module class, made by _classifier_class()


# -- weights -------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """A state dict from a local file, read without unpickling arbitrary objects.

    ``.safetensors`` through safetensors; anything else through
    ``torch.load(weights_only=True)``. A dict holding the weights under ``state_dict``
    or ``model`` is unwrapped, and a DataParallel ``module.`` prefix dropped.
    """
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PatchwiseError("weights file not found", path=path, hint="give a local file")
    try:
        if path.lower().endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise PatchwiseError(
                    "reading .safetensors needs the safetensors package", path=path, hint=FM_HINT
                ) from None
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PatchwiseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a pickle with objects, a corrupt file...
        raise PatchwiseError(
            f"cannot read weights ({type(exc).__name__})",
            path=path,
            hint="give a state dict (.safetensors, or torch.save(model.state_dict()))",
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PatchwiseError(
            "not a state dict (a mapping of names to tensors)",
            path=path,
            hint="save the model's state_dict(), not the model",
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _without_extra_head(state: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    # A classifier head in the file (head.*) that the headless encoder lacks is
    # ignored: the head is replaced anyway.
    return {k: v for k, v in state.items() if k in own or not k.startswith("head.")}


def check_weights(encoder, state: dict[str, Any], path, name: str) -> None:
    """Refuse a state dict that does not fit ``encoder``, in one line (counts, examples).

    ``encoder`` may live on the meta device: only names and shapes are compared.
    """
    own = encoder.state_dict()
    state = _without_extra_head(state, own)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        examples = [f"missing {k}" for k in missing[:2]]
        examples += [f"unexpected {k}" for k in unexpected[:2]]
        examples += [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in reshaped[:2]]
        raise PatchwiseError(
            f"weights do not match {name} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} differently shaped keys; e.g. {'; '.join(examples)})",
            path=path,
            hint="check that --backbone/--model names the encoder these weights are for",
        )


# -- physical scale ------------------------------------------------------------------------
def physical_patch_size(spec: dict[str, Any], pixel_sizes: Sequence[float | None]) -> int | None:
    """Patch side (slide pixels) covering the field of view the encoder was trained on.

    ``pixel_sizes`` are the slides' µm per pixel. None when the encoder has no training
    pixel size (a plain ``timm:`` model) or a slide has none (the caller warns).

    Raises
    ------
    PatchwiseError
        Slides of different pixel sizes: one patch size cannot fit them all.
    """
    if spec.get("pixel_size") is None or not pixel_sizes or None in pixel_sizes:
        return None
    view = float(spec["resize_size"]) * float(spec["pixel_size"])
    sides = sorted({max(1, round(view / float(p))) for p in pixel_sizes})
    if len(sides) > 1:
        raise PatchwiseError(
            f"the slides have different pixel sizes ({', '.join(f'{p:g}' for p in sorted(set(pixel_sizes)))} "
            f"µm): {spec['name']}'s {view:g} µm field of view needs patches of {sides} px",
            hint="embed slides of one pixel size together, or give --patch-size",
        )
    return sides[0]
