"""GERNE with inferred groups: no group labels (the GERNE paper's unknown-bias setting).

A biased ERM model (weight decay x2, learning rate / 10, its checkpoint selected by
validation class-balanced accuracy) is trained first; within each class the share
``infer_fraction`` (t) of the training patches with the lowest probability for their own
class forms the pseudo-minority group, the rest the pseudo-majority. GERNE then runs on
these groups as on known ones (``docs/shortcuts.md``): group id ``2 * label + a`` with
``a = 1`` for the pseudo-minority (the project's group layout; which attribute value
stands for "minority" does not matter to GERNE).
"""

from __future__ import annotations

import numpy as np

from ...errors import PatchwiseError
from .base import TrainingGroups
from .gerne import GERNE


def own_class_probability(labels: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """``p(y_i | x_i)``: the tumor probability for tumor patches, 1 minus it otherwise."""
    labels = np.asarray(labels, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    return np.where(labels == 1, prob, 1.0 - prob)


def inferred_groups(labels: np.ndarray, prob: np.ndarray, t: float) -> np.ndarray:
    """Group ids: per class, the ``round(t * n_y)`` lowest own-class probabilities get
    ``a = 1`` (ties broken by index), the others ``a = 0``."""
    labels = np.asarray(labels, dtype=np.int64)
    own = own_class_probability(labels, prob)
    minority = np.zeros(len(labels), dtype=np.int64)
    for y in np.unique(labels):
        idx = np.flatnonzero(labels == y)
        n = round(t * idx.size)
        minority[idx[np.argsort(own[idx], kind="stable")[:n]]] = 1
    return 2 * labels + minority


def _minority_counts(labels: np.ndarray, t: float) -> np.ndarray:
    """The group counts :func:`inferred_groups` will give, from the labels alone."""
    counts = np.zeros(4, dtype=np.int64)
    for y in (0, 1):
        n = int(np.sum(np.asarray(labels) == y))
        counts[2 * y + 1] = round(t * n)
        counts[2 * y] = n - counts[2 * y + 1]
    return counts


class GERNEInferred(GERNE):
    """GERNE on the pseudo-groups of a biased first-stage model."""

    name = "gerne-inferred"
    hyperparameters = ("beta", "c", "infer_fraction")
    stage_name = "first_stage"

    @classmethod
    def check_options(cls, config) -> None:
        super().check_options(config)
        t = float(config.infer_fraction)
        if not 0.0 < t < 1.0:
            raise PatchwiseError(
                f"gerne-inferred needs --infer-fraction in (0, 1), got {t:g}", hint="e.g. 0.2"
            )

    def __init__(self, data, config):
        self.inferred = None
        # until the first stage has run, the groups are those it will give in number
        # (known from the labels and t), never the run's own groups
        t = float(config.infer_fraction)
        labels = np.asarray(data.labels, dtype=np.int64)
        self._planned = _minority_counts(labels, t)
        super().__init__(_Counted(labels, self._planned, data.tau), config)

    def prepare(self, stage) -> None:
        if self.inferred is None:
            config = self.config
            folder = stage.train_erm(
                self.stage_name,
                lr=float(config.lr) / 10,
                weight_decay=2 * float(config.weight_decay),
                select="val_bca",
            )
            prob = stage.train_probabilities(folder, "best")
            self.set_groups(inferred_groups(self.data.labels, prob, float(config.infer_fraction)))
            stage.log(
                f"gerne-inferred: pseudo-minority groups of {self.data.counts[1]} non-tumor "
                f"and {self.data.counts[3]} tumor training patches"
            )

    def set_groups(self, groups: np.ndarray) -> None:
        """Use these inferred groups (and check beta against their alpha)."""
        self.inferred = np.asarray(groups, dtype=np.int64)
        self.data = TrainingGroups(self.data.labels, self.inferred, self.data.tau)
        self.validate()

    def validate(self):
        if self.data.counts.sum() == 0:
            raise PatchwiseError("gerne-inferred: no training patches")
        super().validate()

    def make_sampler(self, batch_size, seed):
        if self.inferred is None:
            raise RuntimeError("GERNEInferred.prepare() must run before the sampler is made")
        return super().make_sampler(batch_size, seed)

    def state_dict(self) -> dict:
        import torch

        return {} if self.inferred is None else {"groups": torch.as_tensor(self.inferred)}

    def load_state_dict(self, state: dict) -> None:
        if "groups" in state:
            self.set_groups(state["groups"].cpu().numpy())


class _Counted(TrainingGroups):
    """Labels with group *counts* only: what GERNE's checks need before the first stage."""

    def __init__(self, labels, counts, tau):
        super().__init__(labels, np.full(len(labels), -1, dtype=np.int64), tau)
        object.__setattr__(self, "_counts", counts)

    @property
    def counts(self) -> np.ndarray:
        return self._counts
