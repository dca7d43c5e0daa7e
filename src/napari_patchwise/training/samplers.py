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

from ..groups import N_CLASSES, N_GROUPS, counts_of_groups


def stochastic_round(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts whose expectation is exactly ``expected`` and whose sum is fixed.

    Each entry becomes ``floor(expected)`` or ``floor(expected) + 1``; the slots left over
    after flooring go to entries with probability equal to their fractional parts
    (systematic sampling: one uniform number, points ``u, u + 1, ...`` laid over the
    cumulative fractional parts). So ``E[count] = expected`` for every entry, the counts
    always sum to ``round(expected.sum())``, and no count is ever more than one away from
    its expectation — the smallest spread any unbiased integer draw can have.

    Parameters
    ----------
    expected : (n,) array
        Non-negative expected counts whose sum is (within rounding error) an integer.
    rng : numpy.random.Generator
        Consumes exactly one uniform number.

    Returns
    -------
    counts : (n,) int64 array
    """
    expected = np.asarray(expected, dtype=np.float64)
    # a tiny tolerance so that 0.9 * 10 = 8.999999... floors to 9 (fraction 0, not ~1)
    base = np.floor(expected + 1e-9).astype(np.int64)
    frac = np.clip(expected - base, 0.0, None)
    left = round(float(expected.sum())) - int(base.sum())
    u = rng.random()
    if left <= 0:
        return base
    cum = np.cumsum(frac)
    cum *= left / cum[-1]  # remove rounding drift so that exactly `left` points fall inside
    cum[-1] = left
    upper = np.ceil(cum - u)
    lower = np.concatenate([[0.0], upper[:-1]])
    return base + (upper - lower).astype(np.int64)


def gerne_shares(alpha: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Within-class group shares of GERNE's biased and less-biased batches.

    See ``docs/methods.md`` ("GERNE").

    Parameters
    ----------
    alpha : (K, A) array
        ``alpha[y, a] = n_(y,a) / n_y`` on the training split.
    c : float
        Debiasing strength of the less-biased batch, in (0, 1].

    Returns
    -------
    biased, less_biased : (K, A) float arrays
        ``alpha`` and ``(1 - c) alpha + c / A``; each row sums to 1.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    return alpha, (1.0 - c) * alpha + c / alpha.shape[1]


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
        self.group_members = [np.flatnonzero(self.groups == g) for g in range(N_GROUPS)]
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
        # an odd batch gives its extra slot to a class at random, not always to class 0
        counts = stochastic_round(np.full(N_CLASSES, self.batch_size / N_CLASSES), rng)
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
        counts = counts_of_groups(self.groups)
        weights = 1.0 / counts[self.groups]
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, step: int) -> list[np.ndarray]:
        u = self.rng(step).random(self.batch_size)
        idx = np.searchsorted(self.cdf, u, side="right")
        return [np.minimum(idx, len(self.cdf) - 1)]


class GerneSampler(BatchSampler):
    """GERNE's two batches per step: biased then less-biased, each B per class.

    ``batch_size`` is the size of each batch, so B = ``batch_size / K`` per class. Each
    class's B slots are split among its groups afresh at every step by
    :func:`stochastic_round` of the intended shares (:func:`gerne_shares`) times B, so
    every group's expected count is exactly its share times B — also a minority share
    below ``1 / B``, which then appears in some batches and not in others. Within a group
    patches are drawn uniformly with replacement (minority groups are tiny). Why not fixed
    counts: ``docs/methods.md`` ("How the batches are drawn").
    """

    batches_per_step = 2

    def __init__(self, labels, groups, batch_size, seed, *, alpha: np.ndarray, c: float):
        super().__init__(labels, groups, batch_size, seed)
        if batch_size % N_CLASSES:
            raise ValueError(f"GERNE needs a batch size divisible by {N_CLASSES}")
        self.per_class = batch_size // N_CLASSES
        self.shares_biased, self.shares_less_biased = gerne_shares(alpha, c)

    def counts(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-group counts ``(K, A)`` of step ``step``'s biased and less-biased batch."""
        return self._counts(self.rng(step))

    def _counts(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return tuple(
            np.stack([stochastic_round(row * self.per_class, rng) for row in shares])
            for shares in (self.shares_biased, self.shares_less_biased)
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
        counts_biased, counts_less_biased = self._counts(rng)
        return [self._batch(rng, counts_biased), self._batch(rng, counts_less_biased)]
