"""ReSample: patches drawn with probability proportional to ``1 / n_g``."""

from __future__ import annotations

from ..samplers import BatchSampler, GroupWeightedSampler
from .base import Method


class ReSample(Method):
    """Group-balanced batches in expectation (with replacement); plain cross entropy."""

    name = "resample"

    def make_sampler(self, batch_size: int, seed: int) -> BatchSampler:
        return GroupWeightedSampler(self.data.labels, self.data.groups, batch_size, seed)
