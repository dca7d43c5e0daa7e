"""GERNE: gradient extrapolation between a biased and a less-biased batch.

Asaad, Shadaydeh, Denzler, ICCV 2025 (arXiv 2503.13236). The update rule, the beta bound,
how the batches are drawn and why both batches go through one forward pass are explained
in ``docs/methods.md``.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import PatchwiseError
from ...groups import DEFAULT_ATTRIBUTE, N_ATTRIBUTES, group_names
from ..samplers import BatchSampler, GerneSampler
from .base import Method


def extrapolated_shares(alpha: np.ndarray, c: float, beta: float) -> np.ndarray:
    """Each group's weight within its class in GERNE's expected gradient.

    ``p_ext(a|y) = (1 + beta) p_lb(a|y) - beta alpha_ya
    = alpha_ya + c (1 + beta) (1/A - alpha_ya)``; each row sums to 1. The sampler draws
    batches whose expected make-up is exactly ``alpha`` and ``p_lb``, so this is the
    weight a group really gets on average (``docs/methods.md``).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    return alpha + c * (1.0 + beta) * (1.0 / alpha.shape[1] - alpha)


def beta_max(alpha: np.ndarray, c: float) -> float:
    """The upper bound on beta: ``alpha_max / (c (alpha_max - 1/A)) - 1``.

    The beta at which the weight (:func:`extrapolated_shares`) of the group with the
    largest ``alpha`` reaches zero; above it that group's weight is negative and training
    diverges. ``inf`` when every class is already group-balanced (alpha_max = 1/A). A
    class with no patches (a NaN row, :func:`groups.alpha_from_counts`) bounds nothing.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    present = alpha[~np.isnan(alpha)]
    if present.size == 0:
        return math.inf
    a_max = float(present.max())
    denom = c * (a_max - 1.0 / alpha.shape[1])
    return math.inf if denom <= 0 else a_max / denom - 1.0


class GERNE(Method):
    """``L = L_lb + beta * (L_lb - L_b)`` over a biased and a less-biased batch.

    One backward pass on ``L`` gives exactly ``g_lb + beta (g_lb - g_b)``. Both batches go
    through the model in one forward pass (concatenated): forwarded separately, BatchNorm
    in training mode would normalise each with its own statistics, which differ
    systematically between the two, and the network could lower ``L`` by telling them
    apart (``docs/methods.md``, "BatchNorm"). With GroupNorm or frozen BatchNorm the one
    pass gives the same numbers as two.
    """

    name = "gerne"
    hyperparameters = ("beta", "c")

    @classmethod
    def check_options(cls, config) -> None:
        """c in (0, 1] and beta >= -1; beta's upper bound needs the data (:meth:`validate`)."""
        beta, c = float(config.beta), float(config.c)
        if not 0.0 < c <= 1.0:
            raise PatchwiseError(f"GERNE needs c in (0, 1], got c={c:g}", hint="e.g. --c 0.5")
        if beta < -1.0:
            raise PatchwiseError(
                f"GERNE needs beta >= -1, got beta={beta:g}",
                hint="beta = -1 is class-balanced ERM; e.g. --beta 1",
            )

    def validate(self):
        beta = float(self.config.beta)
        c = float(self.config.c)
        tau = self.data.tau
        counts = self.data.counts
        attribute = getattr(self.config, "attribute", DEFAULT_ATTRIBUTE)
        where, flag = (f"tau={tau:g}", "--tau")
        if attribute != DEFAULT_ATTRIBUTE:
            where, flag = (f"{attribute} >= {tau:g}", "--attribute-threshold")
        for g, n in enumerate(counts):
            # the less-biased batch draws c/A * B from every group: none may be empty
            if n == 0:
                raise PatchwiseError(
                    f"GERNE: group {group_names(attribute)[g]} has no training patches at {where}",
                    hint=f"choose another {flag}, add training slides with such patches, or use erm",
                )
        bound = beta_max(self.data.alpha, c)
        self.beta_max = bound
        if not (-1.0 <= beta < bound):
            raise PatchwiseError(
                f"GERNE: beta={beta:g} is outside [-1, beta_max) with beta_max = "
                f"alpha_max / (c (alpha_max - 1/A)) - 1 = {bound:.4g} "
                f"(alpha_max={float(np.nanmax(self.data.alpha)):.4g}, c={c:g}, A={N_ATTRIBUTES})",
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
        import torch
        import torch.nn.functional as F

        (xb, yb, _), (xl, yl, _) = batches
        beta = float(self.config.beta)
        # one forward over both batches: shared BatchNorm statistics (docs/methods.md)
        logits = model(torch.cat([xb, xl])).float()
        loss_b = F.cross_entropy(logits[: len(xb)], yb)
        loss_lb = F.cross_entropy(logits[len(xb) :], yl)
        loss = loss_lb + beta * (loss_lb - loss_b)
        return loss, {
            "loss": float(loss.detach()),
            "loss_biased": float(loss_b.detach()),
            "loss_less_biased": float(loss_lb.detach()),
        }
