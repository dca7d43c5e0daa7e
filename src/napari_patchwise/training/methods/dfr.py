"""DFR: Deep Feature Reweighting (Kirichenko, Izmailov, Wilson 2022, "Last Layer
Re-Training is Sufficient for Robustness to Spurious Correlations").

Last-layer retraining on frozen features, so head-only (``train --features``): no SGD
steps. Two variants, named by the split whose labels the head is fitted on:

* ``dfr`` (label "DFR (val labels)"): the paper's DFR^Val_Tr, **fitted on the validation
  split's labels and groups**, as the reference code ``dfr_evaluate_spurious.py`` does it
  (``dfr_on_validation_tune`` / ``dfr_on_validation_eval`` with ``balance_val=True``,
  ``add_train=False``):

  1. split the validation split at random into two halves; draw **one** group-balanced
     subset of the second half (every group down-sampled without replacement to the
     smallest group's size, :func:`balanced_subset`);
  2. standardise with the mean and standard deviation **of that subset** (the reference's
     ``StandardScaler().fit_transform`` of the data it fits on) and fit an L1-regularised
     logistic regression (liblinear) for every ``C`` in :data:`C_GRID` on that same
     subset; score each on the first half (standardised with the same scaler). ``C`` is
     the one with the best held-out WGA (or BCA, by ``--select``);
  3. standardise with the **training split's** mean and standard deviation (the
     reference's ``scaler.fit(all_embeddings["train"])`` in ``dfr_on_validation_eval``),
     fit :data:`N_FITS` regressions at that ``C`` on group-balanced subsets of the *whole*
     validation split and average their weights and intercepts: the final head.

* ``dfr-train`` (label "DFR (train)"): the same protocol on the **training** split, with
  no label beyond the training split's groups: the C search fits on a balanced subset of
  one half of the training split and scores on the other half; the standardisation is
  the training split's throughout (as the reference's ``dfr_train_subset_tune``). The
  reference scores C on the validation WGA instead (docs/methods.md, "DFR").

The standardisation of the final head is folded into the linear head, so the head's
checkpoint is an ordinary model (``docs/features.md`` says what differs from the paper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import PatchwiseError
from ...groups import GROUP_NAMES, N_GROUPS
from .base import Method

#: The paper's grid of inverse L1 strengths (their code's ``C_OPTIONS``).
C_GRID: tuple[float, ...] = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
#: Balanced-subset fits averaged into the final head (the paper's ``num_retrains``).
N_FITS = 20
#: The split each DFR method fits its head on (``fitted_on`` in ``metrics.json``).
FIT_ON: dict[str, str] = {"dfr": "val", "dfr-train": "train"}
#: How runs and reports say it.
FITTED_ON_LABEL: dict[str, str] = {"val": "val labels", "train": "train"}


class DFR(Method):
    """Registered so that ``--method dfr`` is one of the methods; trained by :func:`fit_dfr`
    through :func:`napari_patchwise.training.loop.train`, never by SGD steps."""

    name = "dfr"
    sgd = False  # a closed-form fit per C (C_GRID), no steps

    @classmethod
    def check_options(cls, config) -> None:
        if getattr(config, "features", None) is None:
            raise PatchwiseError(
                f"--method {cls.name} retrains the last layer on cached features",
                hint="embed the cohort with `patchwise embed` and pass --features FEATURES.zarr",
            )


class DFRTrain(DFR):
    """``--method dfr-train``: DFR fitted on group-balanced training features only."""

    name = "dfr-train"


def balanced_subset(
    groups: np.ndarray, rng: np.random.Generator, split: str = "validation"
) -> np.ndarray:
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
            f"DFR balances the groups of the {split} split, but {', '.join(empty)} has "
            "no patch there",
            hint=f"use another --tau, or a {split} split holding every group",
        )
    size = min(len(m) for m in members)
    chosen = [rng.choice(m, size, replace=False) for m in members]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class Split:
    """One split's feature vectors ``x`` (N, D), labels ``y`` and group ids ``groups``."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray


@dataclass
class HeadFit:
    """A selected head: ``Linear(D, 2)`` weights and what selected it."""

    weight: np.ndarray  # (2, D) float32
    bias: np.ndarray  # (2,) float32
    c: float
    step: int  # 1-based position of c in the grid (the history row)
    value: float  # validation value of the selection metric (the reported row's)


@dataclass
class DfrResult:
    """What :func:`fit_dfr` did: positions are rows of the split it fitted on."""

    fit_on: str = "val"
    search_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    held_out: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    final_rows: list[np.ndarray] = field(default_factory=list)
    rows: list[tuple[float, Any]] = field(default_factory=list)  # (C, validation evaluation)
    search: list[Any] = field(default_factory=list)  # each C's held-out (selection) evaluation
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
    """Mean and std of each column (scikit-learn's ``StandardScaler``: population std, 1
    for a constant column), float64 sums over float32 values: a float64 copy and
    ``np.std`` of 70,000 x 512 vectors took 2.3 s of a 7.5 s DFR run; this takes ~0.2 s."""
    x = np.asarray(x, np.float32)
    mean = x.sum(axis=0, dtype=np.float64) / len(x)
    var = np.square(x).sum(axis=0, dtype=np.float64) / len(x) - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def _standardised(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64) - mean) / std


def _probability(model, x: np.ndarray, mean: np.ndarray, std: np.ndarray, chunk: int = 16384):
    """``model.predict_proba`` of the standardised ``x``, a chunk of rows at a time with
    the scaler folded into the weights: a held-out half of a 10^6-patch training split,
    standardised at once in float64, would take 2 GB."""
    w = model.coef_[0] / std
    b = float(model.intercept_[0]) - float(np.dot(w, mean))
    logits = np.concatenate(
        [np.asarray(x[i : i + chunk], np.float64) @ w for i in range(0, len(x), chunk)]
    )
    return 1.0 / (1.0 + np.exp(-(logits + b)))


def fit_dfr(
    train: Split,
    val: Split,
    evaluate: Callable[[str, np.ndarray, np.ndarray], Any],
    *,
    fit_on: str = "val",
    select: Sequence[str] = ("val_wga", "val_bca"),
    seed: int = 0,
    n_fits: int = N_FITS,
) -> DfrResult:
    """DFR's C search and final averaged head (see the module docstring).

    ``evaluate(split, rows, prob)`` evaluates probabilities of the rows ``rows`` of
    ``split`` (``"train"`` or ``"val"``; a :class:`~napari_patchwise.analysis.metrics.Evaluation`:
    ``.wga``, ``.bca``), so that the groups are the training loop's. ``fit_on="train"``
    reads no validation label: ``val`` is then only evaluated, for the history rows.
    Returns each selection metric's head.
    """
    source = val if fit_on == "val" else train
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(source.y))
    half = len(order) // 2  # the reference: idx[:n_val] scores, idx[n_val:] fits
    held_out, fit_half = np.sort(order[:half]), np.sort(order[half:])
    split_name = "validation" if fit_on == "val" else "training"
    search_rows = fit_half[balanced_subset(source.groups[fit_half], rng, split_name)]
    result = DfrResult(fit_on=fit_on, search_rows=search_rows, held_out=held_out)
    # the search's scaler: the reference fits it on the balanced subset it fits on (DFR on
    # validation), on the training split for DFR on training data
    stats_of = source.x[search_rows] if fit_on == "val" else train.x
    mean, std = _column_stats(stats_of)
    z = _standardised(source.x[search_rows], mean, std)
    y = np.asarray(source.y, np.int64)
    models = [_fit(z, y[search_rows], c, seed) for c in C_GRID]  # every C, one subset
    held_x = source.x[held_out]
    for c, model in zip(C_GRID, models, strict=True):
        scored = evaluate(fit_on, held_out, _probability(model, held_x, mean, std))
        result.search.append(scored)
        if fit_on == "val":
            result.rows.append((c, scored))
        else:  # reported only: no validation label decides anything
            prob = _probability(model, val.x, mean, std)
            result.rows.append((c, evaluate("val", np.arange(len(val.y)), prob)))
    _final_heads(result, train, source, y, select, rng, seed, n_fits, split_name)
    return result


def _final_heads(result, train, source, y, select, rng, seed, n_fits, split_name) -> None:
    """Each selection metric's C, refitted ``n_fits`` times on balanced subsets of the
    whole fitted split (the same subsets for every C) and averaged, as a head."""
    mean, std = _column_stats(train.x)  # the reference's final scaler: the training split
    result.final_rows = [balanced_subset(source.groups, rng, split_name) for _ in range(n_fits)]
    final: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for metric in select:
        key = metric.removeprefix("val_")
        values = np.array([getattr(ev, key) for ev in result.search])
        best = int(np.argmax(np.where(np.isfinite(values), values, -np.inf)))
        c = C_GRID[best]
        if c not in final:  # both metrics may select the same C: one averaged head
            models = [
                _fit(_standardised(source.x[r], mean, std), y[r], c, seed)
                for r in result.final_rows
            ]
            coef = np.mean([m.coef_[0] for m in models], axis=0)
            intercept = float(np.mean([m.intercept_[0] for m in models]))
            final[c] = _as_head(coef, intercept, mean, std)
        reported = float(getattr(result.rows[best][1], key))
        result.heads[metric] = HeadFit(*final[c], c, best + 1, reported)
