"""Model factory: ResNet-18/50 and a small CNN with an M-channel input and a 2-output head.

Nothing is ever downloaded. Pretrained weights come from a local torchvision state-dict
file; without one the model starts from random initialisation (and says so). torch is
imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING

from ..errors import PatchwiseError
from .encoders import (
    build_encoder,
    create_encoder,
    encoder_names_help,
    is_encoder_name,
    read_state_dict,
    with_head,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

# The one list of model names (CLI choices, TrainConfig.validate, checkpoints, the dock),
# largest first: ResNet-50 is the paper's and the default; the dock lists them reversed.
MODEL_NAMES: tuple[str, ...] = ("resnet50", "resnet18", "smallcnn")
RANDOM_INIT_MESSAGE = "no pretrained weights given; starting from random initialisation"
#: The models with BatchNorm layers: ``--freeze-bn`` applies to them, and GERNE with
#: beta > 0 needs it there (``TrainConfig.validate``; docs/methods.md, "BatchNorm").
#: smallcnn normalises with GroupNorm.
BATCHNORM_MODELS: tuple[str, ...] = ("resnet50", "resnet18")


def is_model_name(name: object) -> bool:
    """Whether ``name`` is a built-in model or a timm encoder (``timm:NAME``, a preset)."""

    return name in MODEL_NAMES or is_encoder_name(name)


def build_model(
    name: str,
    in_channels: int,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int = 2,
    encoder: dict | None = None,
) -> torch.nn.Module:
    """Build a patch classifier for ``in_channels``-channel patches.

    Parameters
    ----------
    name : {"resnet50", "resnet18", "smallcnn"}
        Backbone. ResNet-50 is the paper's; ``smallcnn`` is a few conv-GroupNorm-ReLU blocks for
        CPU work on 16-64 px patches.
    in_channels : int
        Number of modalities M of the slides.
    weights : path-like, optional
        A local torchvision state dict of the same ResNet (ImageNet weights). The RGB
        filters of the first convolution are spread over the M channels (see
        :func:`adapt_first_conv`) and the head is replaced. Loaded with
        ``weights_only=True``; never downloaded.
    num_classes : int
        Outputs of the head (2: non-tumor, tumor).
    encoder : dict, optional
        For a timm encoder (``timm:NAME`` or a preset, :mod:`.encoders`): its spec
        (:func:`.encoders.encoder_spec`); ``weights`` is then the encoder's state dict.

    Returns
    -------
    torch.nn.Module
        The model, in training mode, on the CPU.
    """
    if encoder is not None or (name not in MODEL_NAMES and is_model_name(name)):
        return build_encoder(
            _encoder_spec(name, encoder), in_channels, num_classes=num_classes, weights=weights
        )
    model = build_architecture(name, in_channels, num_classes=num_classes, _torchvision_head=True)
    if weights is None:
        if name != "smallcnn":
            warnings.warn(RANDOM_INIT_MESSAGE, UserWarning, stacklevel=2)
        log.info(RANDOM_INIT_MESSAGE)
    else:
        if name == "smallcnn":
            raise PatchwiseError(
                "pretrained weights apply to the ResNet models only",
                path=weights,
                hint="use --model resnet18 or resnet50, or drop --weights",
            )
        _load_pretrained(model, weights, in_channels)
    _replace_head(model, name, num_classes)
    return model


def build_architecture(
    name: str,
    in_channels: int,
    *,
    num_classes: int = 2,
    encoder: dict | None = None,
    _torchvision_head: bool = False,
) -> torch.nn.Module:
    """The bare architecture, randomly initialised (used to rebuild a saved model).

    With ``_torchvision_head`` the ResNet keeps torchvision's 1000-class head so that an
    ImageNet state dict loads before the head is replaced. A timm encoder needs its
    ``encoder`` spec (the checkpoint's meta holds it).
    """
    import torch

    if encoder is not None or (name not in MODEL_NAMES and is_model_name(name)):
        spec = _encoder_spec(name, encoder)
        return with_head(create_encoder(spec), spec, num_classes)
    if name not in MODEL_NAMES:
        raise PatchwiseError(
            f"unknown model {name!r}",
            hint=f"choose one of {', '.join(MODEL_NAMES)}, or {encoder_names_help()}",
        )
    if in_channels < 1:
        raise PatchwiseError(f"a model needs at least one input channel, got {in_channels}")
    if name == "smallcnn":
        return SmallCNN(in_channels, num_classes)
    import torchvision  # only for the ResNets: importing it costs seconds

    factory = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
    model = factory[name](weights=None)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = torch.nn.Conv2d(
            in_channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=False,
        )
    if not _torchvision_head:
        _replace_head(model, name, num_classes)
    return model


def _encoder_spec(name: str, encoder: dict | None) -> dict:
    if encoder is None:
        raise PatchwiseError(
            f"model {name!r} needs its encoder spec (channels, input size, normalisation)",
            hint="build it with encoders.encoder_spec",
        )
    return encoder


def _replace_head(model: torch.nn.Module, name: str, num_classes: int) -> None:
    import torch

    if name == "smallcnn":
        return
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Spread pretrained RGB filters ``(O, 3, k, k)`` over ``in_channels`` inputs.

    Channel ``i`` gets the RGB filter ``i % 3`` (M >= 3) or the mean of the three
    (M < 3), and everything is scaled by ``3 / M`` so that a constant image gives the
    same first-layer response as the RGB model did: the pretrained activations keep
    their scale whatever the number of modalities.
    """
    import torch

    if weight.shape[1] == in_channels:
        return weight.clone()
    if weight.shape[1] != 3:
        raise ValueError(f"expected RGB filters, got {tuple(weight.shape)}")
    if in_channels >= 3:
        spread = weight[:, torch.arange(in_channels) % 3]
    else:
        spread = weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    return spread * (3 / in_channels)


def check_weights_file(weights: str | os.PathLike, model: str | None = None) -> None:
    """Refuse a ``--weights`` file that is missing, unreadable or not a state dict of
    ``model`` (a ResNet unless ``model`` is a timm encoder, whose file is read safely by
    :func:`.encoders.read_state_dict`; its keys are checked when the model is built).

    Run before any slide is read (``patchwise train``, ``sweep``, ``embed``): the tensors
    are memory-mapped, not loaded, so the check costs milliseconds even for ResNet-50.

    Raises
    ------
    PatchwiseError
        One line naming the file.
    """

    if model is not None and is_encoder_name(model):
        read_state_dict(weights)
        return
    _read_pretrained(os.fspath(weights), mmap=True)


def _read_pretrained(path: str, *, mmap: bool = False) -> dict:
    """The state dict in ``path`` (a ``{"state_dict": ...}`` wrapper unwrapped), checked."""
    import torch

    if not os.path.isfile(path):
        raise PatchwiseError(
            "weights file not found", path=path, hint="give a local state-dict file"
        )
    if not os.access(path, os.R_OK):
        raise PatchwiseError(
            "weights file is not readable (permission denied)",
            path=path,
            hint="check the file's permissions",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # a pickle that is not a plain state dict, or a corrupt file
        if mmap:  # an old (non-zip) torch.save format cannot be mapped: read it whole
            return _read_pretrained(path)
        raise PatchwiseError(
            f"cannot read weights ({type(exc).__name__})",
            path=path,
            hint="give a torchvision state dict saved with torch.save(model.state_dict())",
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise PatchwiseError(
            "not a torchvision ResNet state dict (no conv1.weight)",
            path=path,
            hint="give the state dict of torchvision's resnet18/resnet50",
        )
    return state


def _load_pretrained(model: torch.nn.Module, weights: str | os.PathLike, in_channels: int) -> None:
    path = os.fspath(weights)
    state = dict(_read_pretrained(path))
    state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], in_channels)
    # The head is replaced anyway; drop it so a 2-class or 1000-class dict both load.
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        example = (missing + unexpected + reshaped)[0]
        raise PatchwiseError(
            f"weights do not match the model ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} differently shaped keys, e.g. {example})",
            path=path,
            hint="check that --model matches the weights (resnet18 vs resnet50)",
        )
    model.load_state_dict(state, strict=False)


def _smallcnn_block(cin: int, cout: int):
    import torch

    # GroupNorm, not BatchNorm: every patch is normalised on its own, so no output depends
    # on the other patches of its batch. GERNE puts a negative weight on its biased batch,
    # and with training-mode BatchNorm its loss runs away, even with both batches in one
    # forward pass (docs/methods.md, "BatchNorm").
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        torch.nn.GroupNorm(min(8, cout), cout),
        torch.nn.ReLU(inplace=True),
    )


def SmallCNN(in_channels: int, num_classes: int = 2, width: int = 32) -> torch.nn.Module:
    """A few conv-norm-relu blocks with pooling, a global average pool and a linear head.

    Four stages (``width``, 2x, 4x, 4x channels), halving the resolution after each of
    the first three: cheap enough on a CPU for 16-64 px patches.
    """
    import torch

    widths = (width, 2 * width, 4 * width, 4 * width)
    layers: list[torch.nn.Module] = []
    cin = in_channels
    for i, cout in enumerate(widths):
        layers.append(_smallcnn_block(cin, cout))
        if i < len(widths) - 1:
            layers.append(torch.nn.MaxPool2d(2, ceil_mode=True))
        cin = cout
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(cin, num_classes)]
    return torch.nn.Sequential(*layers)
