"""DFR: Deep Feature Reweighting (Kirichenko, Izmailov, Wilson 2022, "Last Layer
Re-Training is Sufficient for Robustness to Spurious Correlations").

Last-layer retraining on frozen features, so head-only (``train --features``): no SGD
steps. Following the paper and its code (``dfr_evaluate_spurious.py``):

1. Standardise the features with the training split's mean and standard deviation.
2. Split the validation split at random into two halves. For each inverse
   regularisation strength ``C`` in :data:`C_GRID`, fit an L1-regularised logistic
   regression (liblinear) on a *group-balanced* subset of the first half (every group
   down-sampled to the smallest group's size, :func:`balanced_subset`) and evaluate it on
   the second half. ``C`` is the one with the best held-out validation WGA (or BCA, by
   ``--select``).
3. Fit :data:`N_FITS` such regressions at that ``C`` on balanced subsets of the *whole*
   validation split and average their weights and intercepts: the final head.

The standardisation is folded into the linear head, so the head's checkpoint is an
ordinary model (``docs/features.md`` says what differs from the paper's setting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PatchwiseError
from ..groups import GROUP_NAMES, N_GROUPS
from .base import Method

#: The paper's grid of inverse L1 strengths (their code's ``C_OPTIONS``).
C_GRID: tuple[float, ...] = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
#: Balanced-subset fits averaged into the final head (the paper's ``num_retrains``).
N_FITS = 20


class DFR(Method):
    """Registered so that ``--method dfr`` is one of the methods; trained by :func:`fit_dfr`
    through :func:`napari_patchwise.train.train`, never by SGD steps."""

    name = "dfr"
    sgd = False  # a closed-form fit per C (C_GRID), no steps

    @classmethod
    def check_options(cls, config) -> None:
        if getattr(config, "features", None) is None:
            raise PatchwiseError(
                "--method dfr retrains the last layer on cached features",
                hint="embed the cohort with `patchwise embed` and pass --features FEATURES.zarr",
            )


def balanced_subset(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of a group-balanced subset: every group down-sampled (without
    replacement) to the smallest group's size; sorted.

    Raises
    ------
    PatchwiseError
        A group without any patch (nothing to balance it with).
    """
    groups = np.asarray(groups)
    members = [np.flatnonzero(groups == g) for g in range(N_GROUPS)]
    empty = [GROUP_NAMES[g] for g, m in enumerate(members) if not len(m)]
    if empty:
        raise PatchwiseError(
            f"DFR balances the groups of the validation split, but {', '.join(empty)} has "
            "no patch there",
            hint="use another --tau, or a validation split holding every group",
        )
    size = min(len(m) for m in members)
    chosen = [rng.choice(m, size, replace=False) for m in members]
    return np.sort(np.concatenate(chosen))


@dataclass
class HeadFit:
    """A selected head: ``Linear(D, 2)`` weights and what selected it."""

    weight: np.ndarray  # (2, D) float32
    bias: np.ndarray  # (2,) float32
    c: float
    step: int  # 1-based position of c in the grid (the history row)
    value: float  # held-out validation value of the selection metric


@dataclass
class DfrResult:
    rows: list[tuple[float, Any]] = field(default_factory=list)  # (C, evaluation)
    heads: dict[str, HeadFit] = field(default_factory=dict)


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    import sklearn
    from sklearn.linear_model import LogisticRegression

    # scikit-learn 1.8 spells the L1 penalty l1_ratio=1 (``penalty`` is deprecated)
    new_api = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)
    l1 = {"l1_ratio": 1.0} if new_api else {"penalty": "l1"}
    return LogisticRegression(C=c, solver="liblinear", random_state=seed, **l1).fit(x, y)


def _as_head(coef: np.ndarray, intercept: float, mean: np.ndarray, std: np.ndarray):
    """A binary logistic regression on standardised features as ``Linear(D, 2)`` on raw ones.

    ``softmax([0, z])[1] = sigmoid(z)``, with ``z = coef . (x - mean) / std + intercept``.
    """
    w = coef / std
    weight = np.zeros((2, len(coef)), dtype=np.float32)
    weight[1] = w
    bias = np.array([0.0, intercept - float(np.dot(w, mean))], dtype=np.float32)
    return weight, bias


def _column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each column, float64 sums over float32 values: a float64 copy and
    ``np.std`` of 70,000 x 512 vectors took 2.3 s of a 7.5 s DFR run; this takes ~0.2 s."""
    x = np.asarray(x, np.float32)
    mean = x.sum(axis=0, dtype=np.float64) / len(x)
    var = np.square(x).sum(axis=0, dtype=np.float64) / len(x) - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def fit_dfr(
    train_x: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    val_groups: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray], Any],
    *,
    select: Sequence[str] = ("val_wga", "val_bca"),
    seed: int = 0,
    n_fits: int = N_FITS,
) -> DfrResult:
    """DFR's C search and final averaged head (see the module docstring).

    ``evaluate(rows, prob)`` evaluates probabilities of the validation rows ``rows``
    (a :class:`~napari_patchwise.metrics.Evaluation`: ``.wga``, ``.bca``), so that the
    groups are the training loop's. Returns each selection metric's head.
    """
    mean, std = _column_stats(train_x)
    z = (np.asarray(val_x, np.float64) - mean) / std
    val_y = np.asarray(val_y, np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(z))
    held_out, fit_rows = np.sort(order[: len(z) // 2]), np.sort(order[len(z) // 2 :])
    result = DfrResult()
    subsets = [fit_rows[balanced_subset(val_groups[fit_rows], rng)] for _ in C_GRID]
    models = _fit_all(z, val_y, subsets, C_GRID, seed)
    for c, model in zip(C_GRID, models, strict=True):
        result.rows.append((c, evaluate(held_out, model.predict_proba(z[held_out])[:, 1])))
    final: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for metric in select:
        values = np.array([getattr(ev, metric.removeprefix("val_")) for _, ev in result.rows])
        best = int(np.argmax(np.where(np.isfinite(values), values, -np.inf)))
        c = C_GRID[best]
        if c not in final:  # both metrics may select the same C: one averaged head
            final[c] = _averaged_head(z, val_y, val_groups, c, rng, seed, n_fits, mean, std)
        result.heads[metric] = HeadFit(*final[c], c, best + 1, float(values[best]))
    return result


def _averaged_head(z, y, groups, c, rng, seed, n_fits, mean, std):
    """Mean weights and intercept of ``n_fits`` fits on balanced subsets, as a head."""
    subsets = [balanced_subset(groups, rng) for _ in range(n_fits)]
    models = _fit_all(z, y, subsets, [c] * n_fits, seed)
    coef = np.mean([m.coef_[0] for m in models], axis=0)
    intercept = float(np.mean([m.intercept_[0] for m in models]))
    return _as_head(coef, intercept, mean, std)


def _fit_all(z, y, subsets, cs, seed) -> list:
    """One fit per (subset, C), in order. (Threads gave nothing here: 8 fits of 2,500 x
    512 took 1.67 s on two threads and 1.71 s on one, on this shared 2-core machine.)"""
    return [_fit(z[rows], y[rows], c, seed) for rows, c in zip(subsets, cs, strict=True)]
