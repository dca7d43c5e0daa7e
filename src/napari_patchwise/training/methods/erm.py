"""ERM: mean cross entropy on uniform (or class-balanced) batches."""

from __future__ import annotations

from ..samplers import BatchSampler, ClassBalancedSampler, UniformSampler
from .base import Method


class ERM(Method):
    """Empirical risk minimisation.

    With ``config.class_balanced`` each batch holds ``batch_size / 2`` patches per class
    (GERNE with beta = -1 in expectation); otherwise batches are uniform over the
    training patches.
    """

    name = "erm"
    hyperparameters = ("class_balanced",)

    def make_sampler(self, batch_size: int, seed: int) -> BatchSampler:
        cls = (
            ClassBalancedSampler
            if getattr(self.config, "class_balanced", False)
            else UniformSampler
        )
        return cls(self.data.labels, self.data.groups, batch_size, seed)
