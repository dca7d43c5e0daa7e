"""GERNE: gradient extrapolation between a biased and a less-biased batch.

Asaad, Shadaydeh, Denzler, ICCV 2025 (arXiv 2503.13236); see METHODS.md.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PatchwiseError
from ..samplers import N_ATTRIBUTES, BatchSampler, GerneSampler
from .base import GROUP_LABELS, Method


def beta_max(alpha: np.ndarray, c: float) -> float:
    """The upper bound on beta: ``alpha_max / (c (alpha_max - 1/A)) - 1``.

    ``inf`` when every class is already group-balanced (alpha_max = 1/A).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    a_max = float(alpha.max())
    denom = c * (a_max - 1.0 / alpha.shape[1])
    return math.inf if denom <= 0 else a_max / denom - 1.0


class GERNE(Method):
    """``L = L_lb + beta * (L_lb - L_b)`` over two separately forwarded batches.

    One backward pass on ``L`` gives exactly ``g_lb + beta (g_lb - g_b)``. The two
    batches are never concatenated, so BatchNorm sees each with its own statistics.
    """

    name = "gerne"

    def validate(self):
        beta = float(self.config.beta)
        c = float(self.config.c)
        tau = self.data.tau
        if not 0.0 < c <= 1.0:
            raise PatchwiseError(f"GERNE needs c in (0, 1], got c={c:g}", hint="e.g. --c 0.5")
        counts = self.data.counts
        for g, n in enumerate(counts):
            # the less-biased batch draws c/A * B from every group: none may be empty
            if n == 0:
                raise PatchwiseError(
                    f"GERNE: group {GROUP_LABELS[g]} has no training patches at tau={tau:g}",
                    hint="choose another --tau, add training slides with such patches, or use erm",
                )
        bound = beta_max(self.data.alpha, c)
        self.beta_max = bound
        if not (-1.0 <= beta < bound):
            raise PatchwiseError(
                f"GERNE: beta={beta:g} is outside [-1, beta_max) with beta_max = "
                f"alpha_max / (c (alpha_max - 1/A)) - 1 = {bound:.4g} "
                f"(alpha_max={float(self.data.alpha.max()):.4g}, c={c:g}, A={N_ATTRIBUTES})",
                hint=f"choose --beta in [-1, {bound:.4g})",
            )

    def make_sampler(self, batch_size: int, seed: int) -> BatchSampler:
        return GerneSampler(
            self.data.labels,
            self.data.groups,
            batch_size,
            seed,
            alpha=self.data.alpha,
            c=float(self.config.c),
        )

    def loss(self, model, batches):
        import torch.nn.functional as F

        (xb, yb, _), (xl, yl, _) = batches
        beta = float(self.config.beta)
        loss_b = F.cross_entropy(model(xb).float(), yb)
        loss_lb = F.cross_entropy(model(xl).float(), yl)
        loss = loss_lb + beta * (loss_lb - loss_b)
        return loss, {
            "loss": float(loss.detach()),
            "loss_biased": float(loss_b.detach()),
            "loss_less_biased": float(loss_lb.detach()),
        }
