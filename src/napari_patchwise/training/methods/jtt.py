"""JTT: Just Train Twice (Liu et al., ICML 2021), with no group labels.

A first ERM model, trained for a share ``jtt_fraction`` of the steps, finds the training
patches it misclassifies (the error set); the run's own model, fresh, then trains on
uniform batches over the training split with every patch of the error set counted
``jtt_up`` times (JTT's upsampling, lambda_up). No group is read: only labels and the
first model's probabilities (``docs/shortcuts.md``).
"""

from __future__ import annotations

import numpy as np

from ...errors import PatchwiseError
from ..samplers import BatchSampler, UniformSampler
from .base import Method


def error_set(labels: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the patches whose decision ``prob >= threshold`` misses their label."""
    pred = (np.asarray(prob) >= threshold).astype(np.int64)
    return np.flatnonzero(pred != np.asarray(labels, dtype=np.int64))


def upsampled_index(n: int, errors: np.ndarray, up: int) -> np.ndarray:
    """Every patch once, each of ``errors`` ``up`` times in all: JTT's upsampled set."""
    return np.concatenate([np.arange(n), np.repeat(np.asarray(errors, np.int64), up - 1)])


class UpsampledSampler(UniformSampler):
    """Uniform batches over an index list in which some patches appear several times."""

    def __init__(self, labels, batch_size: int, seed: int, *, index: np.ndarray):
        labels = np.asarray(labels, dtype=np.int64)
        # no groups: the sampler's group lists are never used, the labels stand in
        super().__init__(labels, labels, batch_size, seed)
        self.index = np.asarray(index, dtype=np.int64)
        self._n_real = len(labels)
        self.labels = labels[self.index]  # one entry per slot: passes over the slots

    def draw(self, step: int) -> list[np.ndarray]:
        return [self.index[slot] for slot in super().draw(step)]


class JTT(Method):
    """Uniform batches over the upsampled set; mean cross entropy."""

    name = "jtt"
    hyperparameters = ("jtt_fraction", "jtt_up")
    #: The subfolder of the run holding the first-stage model.
    stage_name = "first_stage"

    @classmethod
    def check_options(cls, config) -> None:
        fraction, up = float(config.jtt_fraction), int(config.jtt_up)
        if not 0.0 < fraction <= 1.0:
            raise PatchwiseError(
                f"JTT needs --jtt-fraction in (0, 1], got {fraction:g}", hint="e.g. 0.2"
            )
        if up < 1:
            raise PatchwiseError(f"JTT needs --jtt-up >= 1, got {up}", hint="e.g. 10")

    def __init__(self, data, config):
        super().__init__(data, config)
        self.errors: np.ndarray | None = None

    def first_stage_steps(self) -> int:
        return max(1, round(float(self.config.jtt_fraction) * int(self.config.steps)))

    def prepare(self, stage) -> None:
        if self.errors is not None:  # restored by a resume
            return
        folder = stage.train_erm(self.stage_name, steps=self.first_stage_steps())
        prob = stage.train_probabilities(folder, "last")
        self.errors = error_set(self.data.labels, prob, float(self.config.threshold))
        stage.log(
            f"JTT: the first-stage model misclassifies {self.errors.size} of "
            f"{len(prob)} training patches; they count {int(self.config.jtt_up)} times"
        )

    def make_sampler(self, batch_size: int, seed: int) -> BatchSampler:
        if self.errors is None:
            raise RuntimeError("JTT.prepare() must run before the sampler is made")
        index = upsampled_index(len(self.data.labels), self.errors, int(self.config.jtt_up))
        return UpsampledSampler(self.data.labels, batch_size, seed, index=index)

    def state_dict(self) -> dict:
        import torch

        return {} if self.errors is None else {"errors": torch.as_tensor(self.errors)}

    def load_state_dict(self, state: dict) -> None:
        if "errors" in state:
            self.errors = np.asarray(state["errors"].cpu().numpy(), dtype=np.int64)
