"""A model's forward pass at inference: the one place that normalises, goes channels-last
and runs under autocast.

Validation and test in the training loop (``train.dataset_probabilities``), prediction of a
slide (``predict``) and embedding (``embed``) all run a batch through a model the same way;
:class:`Forward` is that way, so a change of precision or memory format reaches all three.
torch is imported inside the functions (this module is imported by torch-free code paths).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Patches per forward pass when predicting or embedding (``--batch-size``).
DEFAULT_BATCH_SIZE = 256

#: A context-manager factory: ``with autocast(): ...`` (``contextlib.nullcontext`` for fp32).
Autocast = Callable[[], contextlib.AbstractContextManager]


def autocast_context(device, precision: str = "auto") -> tuple[Autocast, Any]:
    """Mixed precision on CUDA only: bf16 where supported, else fp16 (with a grad scaler).

    Parameters
    ----------
    device : torch.device
        Where the model runs; anything but CUDA runs in fp32.
    precision : str
        ``"auto"`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    Returns
    -------
    (autocast, dtype)
        The context factory and the autocast dtype (``None`` in fp32): training needs the
        dtype to enable its grad scaler for fp16.
    """
    import torch

    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


class Forward:
    """A model at inference: a batch of patches in, float32 outputs out.

    Each call moves the batch to ``device``, normalises it per channel (when ``mean`` and
    ``std`` are given: raw patches; datasets that normalise already pass neither), makes
    4-D input channels-last where the model is, and runs the model under ``autocast``
    without autograd.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode by the caller (training toggles it back afterwards).
    device : torch.device
    mean, std : sequence of float, optional
        Per-channel statistics of the training split (a checkpoint's ``meta``).
    autocast : callable, optional
        Context factory; default :func:`autocast_context` at ``"auto"`` precision.
    channels_last : bool, optional
        Convert the model and 4-D input to channels-last; default: on CUDA only (where
        it is faster; on the CPU it is not).
    """

    def __init__(
        self,
        model,
        device,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        autocast: Autocast | None = None,
        channels_last: bool | None = None,
    ) -> None:
        import torch

        self.device = device
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self.autocast = autocast or autocast_context(device)[0]
        self.mean = self.std = None
        if mean is not None and std is not None:
            self.mean = torch.tensor(mean, dtype=torch.float32, device=device)[:, None, None]
            self.std = torch.tensor(std, dtype=torch.float32, device=device)[:, None, None]

    def __call__(self, x) -> Any:
        """The model's output (float32 tensor on ``device``) for a batch (array or tensor)."""
        import torch

        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        x = x.to(self.device, non_blocking=True)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            out = self.model(x)
        return out.float()

    def probabilities(self, x) -> np.ndarray:
        """Tumor probability (softmax of the 2-output head, class 1) of each patch, (N,)."""
        import torch

        out = self(x)
        with torch.inference_mode():
            return torch.softmax(out, dim=1)[:, 1].cpu().numpy()
