"""Group-aware batch samplers for step-based training.

A sampler says which training patches make up the batch(es) of step ``s``. Every draw
is a pure function of ``(seed, step)``: a run resumed at step ``s`` draws exactly the
batches the uninterrupted run would have drawn, without saving any sampler state, and
data-parallel ranks sample independently by using different seeds.

Samplers see only two integer arrays — the class label and the group id
(``group = label * A + attribute``) of every training patch — so they are tested on
hand-built arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

N_CLASSES = 2
N_ATTRIBUTES = 2


def largest_remainder(p: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``p`` that sum to ``total`` (Hamilton's method).

    Each entry gets ``floor(p * total)``; the slots left over go to the largest
    fractional parts (ties to the lower index).
    """
    p = np.asarray(p, dtype=np.float64)
    raw = p / p.sum() * total
    # a tiny tolerance so that 0.9 * 10 = 8.999999... still floors to 9
    base = np.floor(raw + 1e-9).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        order = np.argsort(-(raw - base), kind="stable")
        base[order[:left]] += 1
    return base


def gerne_counts(alpha: np.ndarray, c: float, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sample counts of GERNE's biased and less-biased batches (METHODS.md).

    Parameters
    ----------
    alpha : (K, A) array
        ``alpha[y, a] = n_(y,a) / n_y`` on the training split.
    c : float
        Debiasing strength of the less-biased batch, in (0, 1].
    per_class : int
        B, the samples per class in each batch.

    Returns
    -------
    biased, less_biased : (K, A) int arrays
        ``round(alpha_ya * B)`` and ``round(((1 - c) alpha_ya + c / A) * B)``, each row
        rounded by largest remainder to sum to B.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    n_attr = alpha.shape[1]
    p_lb = (1.0 - c) * alpha + c / n_attr
    biased = np.stack([largest_remainder(row, per_class) for row in alpha])
    less_biased = np.stack([largest_remainder(row, per_class) for row in p_lb])
    return biased, less_biased


class BatchSampler:
    """Base class: ``draw(step)`` returns the index arrays of one step's batches."""

    batches_per_step = 1

    def __init__(self, labels: np.ndarray, groups: np.ndarray, batch_size: int, seed: int):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.groups = np.asarray(groups, dtype=np.int64)
        if self.labels.shape != self.groups.shape or self.labels.ndim != 1:
            raise ValueError("labels and groups must be 1-D arrays of the same length")
        if len(self.labels) == 0:
            raise ValueError("no training patches to sample from")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        n_groups = N_CLASSES * N_ATTRIBUTES
        self.group_members = [np.flatnonzero(self.groups == g) for g in range(n_groups)]
        self.class_members = [np.flatnonzero(self.labels == y) for y in range(N_CLASSES)]

    def rng(self, step: int, stream: int = 0) -> np.random.Generator:
        """A generator that depends only on (seed, stream, step)."""
        return np.random.default_rng([self.seed, stream, int(step)])

    def draw(self, step: int) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def requests(self, start_step: int, stop_step: int, *, augment: bool) -> Iterator[np.ndarray]:
        """Yield the batches of steps ``start_step .. stop_step - 1`` as ``(n, 2)`` arrays.

        Column 0 is the patch index, column 1 the augmentation code in 0..7 (rotation by
        ``code % 4`` quarter turns, then a left-right flip if ``code >= 4``), 0 without
        augmentation. The codes come from their own stream so they too depend only on
        (seed, step).
        """
        for step in range(start_step, stop_step):
            aug_rng = self.rng(step, stream=2)
            for idx in self.draw(step):
                codes = (
                    aug_rng.integers(0, 8, size=len(idx))
                    if augment
                    else np.zeros(len(idx), dtype=np.int64)
                )
                yield np.stack([idx.astype(np.int64), codes.astype(np.int64)], axis=1)


class UniformSampler(BatchSampler):
    """Uniform batches: passes over random permutations of the training patches."""

    def _permutation(self, epoch: int) -> np.ndarray:
        cache = getattr(self, "_perm_cache", None)
        if cache is None or cache[0] != epoch:
            cache = (
                epoch,
                np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.labels)),
            )
            self._perm_cache = cache
        return cache[1]

    def draw(self, step: int) -> list[np.ndarray]:
        n = len(self.labels)
        start = step * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(positions // n):
            sel = positions // n == epoch
            out[sel] = self._permutation(int(epoch))[positions[sel] % n]
        return [out]


class ClassBalancedSampler(BatchSampler):
    """``batch_size / K`` patches per class, uniform with replacement within the class."""

    def draw(self, step: int) -> list[np.ndarray]:
        rng = self.rng(step)
        counts = largest_remainder(np.ones(N_CLASSES), self.batch_size)
        parts = []
        for y, k in enumerate(counts):
            members = self.class_members[y]
            if len(members) == 0:
                continue
            parts.append(members[rng.integers(0, len(members), size=k)])
        return [np.concatenate(parts)]


class GroupWeightedSampler(BatchSampler):
    """Each patch drawn with probability proportional to ``1 / n_g`` (with replacement).

    Every non-empty group then has the same expected share of each batch.
    """

    def __init__(self, labels, groups, batch_size, seed):
        super().__init__(labels, groups, batch_size, seed)
        counts = np.bincount(self.groups, minlength=N_CLASSES * N_ATTRIBUTES)
        weights = 1.0 / counts[self.groups]
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, step: int) -> list[np.ndarray]:
        u = self.rng(step).random(self.batch_size)
        idx = np.searchsorted(self.cdf, u, side="right")
        return [np.minimum(idx, len(self.cdf) - 1)]


class GerneSampler(BatchSampler):
    """GERNE's two batches per step: biased then less-biased, each B per class.

    ``batch_size`` is the size of each batch, so B = ``batch_size / K`` per class. The
    per-group counts are fixed (:func:`gerne_counts`); within a group patches are drawn
    uniformly with replacement (minority groups are tiny).
    """

    batches_per_step = 2

    def __init__(self, labels, groups, batch_size, seed, *, alpha: np.ndarray, c: float):
        super().__init__(labels, groups, batch_size, seed)
        if batch_size % N_CLASSES:
            raise ValueError(f"GERNE needs a batch size divisible by {N_CLASSES}")
        self.counts_biased, self.counts_less_biased = gerne_counts(
            alpha, c, batch_size // N_CLASSES
        )

    def _batch(self, rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
        parts = []
        for g, k in enumerate(counts.ravel()):
            if k == 0:
                continue
            members = self.group_members[g]
            parts.append(members[rng.integers(0, len(members), size=int(k))])
        return np.concatenate(parts)

    def draw(self, step: int) -> list[np.ndarray]:
        rng = self.rng(step)
        return [self._batch(rng, self.counts_biased), self._batch(rng, self.counts_less_biased)]
