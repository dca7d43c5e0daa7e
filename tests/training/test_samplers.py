"""Batch samplers against hand computations (docs/methods.md, "How the batches are drawn").

Samplers only see label and group arrays, so every test builds them by hand; no torch.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise.training.samplers import (
    ClassBalancedSampler,
    GerneSampler,
    GroupWeightedSampler,
    UniformSampler,
    gerne_shares,
    stochastic_round,
)


def labels_groups(counts):
    """Labels and groups with exactly ``counts[g]`` patches in group g (g = 2 y + a)."""
    groups = np.repeat(np.arange(4), counts)
    return groups // 2, groups


def alpha_of(counts):
    c = np.asarray(counts, dtype=np.float64).reshape(2, 2)
    return c / c.sum(axis=1, keepdims=True)


def gerne(counts, batch_size, seed, c=0.5):
    labels, groups = labels_groups(counts)
    return GerneSampler(labels, groups, batch_size, seed, alpha=alpha_of(counts), c=c), groups


def group_counts(groups, idx):
    return np.bincount(groups[idx], minlength=4)


def binomial_tolerance(n_steps, per_batch, p, k=5.0):
    """k standard deviations of a sum of ``n_steps`` Binomial(per_batch, p) draws.

    Independent per-slot draws have this spread; the sampler's counts spread less (each
    is its expectation rounded down or up), so this is a generous tolerance.
    """
    return k * np.sqrt(n_steps * per_batch * p * (1 - p))


# -- stochastic_round ----------------------------------------------------------------
def test_stochastic_round_keeps_the_sum_and_stays_within_one():
    rng = np.random.default_rng(0)
    expected = np.array([14.4, 1.6])
    seen = set()
    for _ in range(200):
        counts = stochastic_round(expected, rng)
        assert counts.sum() == 16
        assert np.all(np.abs(counts - expected) < 1)
        seen.add(tuple(counts.tolist()))
    assert seen == {(14, 2), (15, 1)}  # both roundings occur
    # exact values stay exact (0.9 * 10 = 8.999999... is 9, not 8 or 10 at random)
    assert stochastic_round(np.array([0.9, 0.1]) * 10, rng).tolist() == [9, 1]
    assert stochastic_round(np.array([3.0, 0.0, 5.0]), rng).tolist() == [3, 0, 5]


def test_stochastic_round_expectation_is_exact_for_three_entries():
    # fractional parts .3, .5, .2 share the one slot left over after flooring
    expected = np.array([2.3, 0.5, 4.2])
    rng = np.random.default_rng(1)
    n = 20000
    total = sum(stochastic_round(expected, rng) for _ in range(n))
    for e, t in zip(expected, total, strict=True):
        frac = e - np.floor(e)
        assert abs(t - n * e) <= binomial_tolerance(n, 1, frac)


# -- GERNE's sampler -----------------------------------------------------------------
def test_gerne_batches_hold_B_per_class_and_counts_rounded_from_the_shares():
    # alpha: non-tumor 90 % small, tumor 80 % large; B = 16 per class; c = 0.5
    counts = [900, 100, 50, 200]
    biased_share, lb_share = gerne_shares(alpha_of(counts), 0.5)
    np.testing.assert_allclose(biased_share, [[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(lb_share, [[0.7, 0.3], [0.35, 0.65]])
    sampler, groups = gerne(counts, 32, seed=3)
    seen_biased, seen_lb = set(), set()
    for step in range(100):
        b, lb = sampler.draw(step)
        cb, clb = group_counts(groups, b), group_counts(groups, lb)
        assert (cb[0] + cb[1], cb[2] + cb[3]) == (16, 16)
        assert (clb[0] + clb[1], clb[2] + clb[3]) == (16, 16)
        # biased 14.4, 1.6 | 3.2, 12.8; less-biased 11.2, 4.8 | 5.6, 10.4: floor or ceil
        assert cb[0] in (14, 15) and cb[2] in (3, 4)
        assert clb[0] in (11, 12) and clb[2] in (5, 6)
        # counts(step) reports what draw(step) drew
        want_b, want_lb = sampler.counts(step)
        assert want_b.ravel().tolist() == cb.tolist()
        assert want_lb.ravel().tolist() == clb.tolist()
        seen_biased.add(tuple(cb.tolist()))
        seen_lb.add(tuple(clb.tolist()))
    # the make-up varies from batch to batch (it was identical in every batch before)
    assert len(seen_biased) == 4 and len(seen_lb) == 4


def test_gerne_tiny_minority_appears_at_its_long_run_frequency():
    # tumor/small is 2 % of the tumor patches: 0.02 * B = 0.32 < 1/2, so rounding the
    # same way in every batch gave it zero samples in every biased batch
    counts = [500, 500, 20, 980]
    sampler, groups = gerne(counts, 32, seed=7)
    n_steps = 3000
    total_b = np.zeros(4, dtype=np.int64)
    total_lb = np.zeros(4, dtype=np.int64)
    batches_with_minority = 0
    for step in range(n_steps):
        b, lb = sampler.draw(step)
        total_b += group_counts(groups, b)
        total_lb += group_counts(groups, lb)
        batches_with_minority += group_counts(groups, b)[2] > 0
    p_b = 0.02
    p_lb = 0.5 * 0.02 + 0.25  # (1 - c) alpha + c / A
    assert abs(total_b[2] - n_steps * 16 * p_b) <= binomial_tolerance(n_steps, 16, p_b)
    assert abs(total_lb[2] - n_steps * 16 * p_lb) <= binomial_tolerance(n_steps, 16, p_lb)
    # P(one minority slot) = 0.32 exactly: the batches that hold the minority
    assert abs(batches_with_minority - 0.32 * n_steps) <= binomial_tolerance(n_steps, 1, 0.32)
    assert total_b[2] == batches_with_minority  # never two: at most one away from 0.32


def test_gerne_draws_depend_only_on_seed_and_step():
    counts = [87, 13, 9, 91]
    first, _ = gerne(counts, 32, seed=5)
    again, _ = gerne(counts, 32, seed=5)
    other, _ = gerne(counts, 32, seed=6)
    # a resumed run (fresh sampler, steps out of order) redraws the very same batches
    for step in (11, 0, 3, 11):
        for u, v in zip(first.draw(step), again.draw(step), strict=True):
            assert np.array_equal(u, v)
    assert not np.array_equal(first.draw(1)[0], first.draw(2)[0])
    assert not np.array_equal(first.draw(1)[0], other.draw(1)[0])
    # the requests (index, augmentation code) are reproducible too
    a = list(first.requests(4, 6, augment=True))
    b = list(again.requests(4, 6, augment=True))
    assert len(a) == 4 and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_gerne_needs_an_even_batch_size():
    labels, groups = labels_groups([5, 5, 5, 5])
    with pytest.raises(ValueError, match="divisible by 2"):
        GerneSampler(labels, groups, 15, 0, alpha=alpha_of([5, 5, 5, 5]), c=0.5)


# -- the other samplers --------------------------------------------------------------
def test_uniform_sampler_covers_every_patch_once_per_epoch():
    labels, groups = labels_groups([5, 3, 2, 2])  # 12 patches, batch 4: 3 steps per epoch
    sampler = UniformSampler(labels, groups, 4, seed=0)
    epoch = np.concatenate([sampler.draw(s)[0] for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(12))
    wrap = UniformSampler(labels, groups, 5, seed=0).draw(2)[0]  # spans epochs 0/1
    assert len(wrap) == 5


def test_class_balanced_sampler_splits_odd_batches_fairly():
    labels, groups = labels_groups([900, 90, 9, 1])
    cb = ClassBalancedSampler(labels, groups, 10, seed=0)
    assert np.bincount(labels[cb.draw(0)[0]], minlength=2).tolist() == [5, 5]
    odd = ClassBalancedSampler(labels, groups, 9, seed=0)
    per_class = np.array([np.bincount(labels[odd.draw(s)[0]], minlength=2) for s in range(400)])
    assert set(per_class[:, 0].tolist()) == {4, 5}  # the extra slot goes either way
    n_tumor = per_class[:, 1].sum()
    assert abs(n_tumor - 400 * 4.5) <= binomial_tolerance(400, 1, 0.5)


def test_group_weighted_sampler_balances_groups():
    labels, groups = labels_groups([900, 90, 9, 1])
    gw = GroupWeightedSampler(labels, groups, 4000, seed=0).draw(0)[0]
    share = np.bincount(groups[gw], minlength=4) / 4000
    np.testing.assert_allclose(share, 0.25, atol=0.03)  # 1/n_g: every group equally likely
