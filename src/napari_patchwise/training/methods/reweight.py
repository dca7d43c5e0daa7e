"""ReWeight: uniform batches, per-sample loss weight ``w_g`` by group."""

from __future__ import annotations

import numpy as np

from .base import Method


def reweight_weights(counts: np.ndarray) -> np.ndarray:
    """``w_g = (1/n_g) / sum_g'(1/n_g') * G`` over the G non-empty groups; 0 for empty ones.

    The weights of the non-empty groups sum to G, so a group-balanced batch has mean
    weight one.
    """
    counts = np.asarray(counts, dtype=np.float64)
    inv = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    n_nonempty = int((counts > 0).sum())
    return inv / inv.sum() * n_nonempty


class ReWeight(Method):
    """Loss = mean over the batch of ``w_g * cross_entropy``."""

    name = "reweight"

    def __init__(self, data, config):
        super().__init__(data, config)
        self.weights_np = reweight_weights(data.counts)
        self._weights = None

    def to(self, device):
        import torch

        self._weights = torch.as_tensor(self.weights_np, dtype=torch.float32, device=device)
        return self

    def loss(self, model, batches):
        import torch.nn.functional as F

        if self._weights is None:
            self.to(batches[0][0].device)
        x, y, g = batches[0]
        ce = F.cross_entropy(model(x).float(), y, reduction="none")
        loss = (self._weights[g] * ce).mean()
        return loss, {"loss": float(loss.detach()), "ce": float(ce.detach().mean())}
