"""Slide-level bootstrap intervals of worst-group and balanced-class accuracy.

Patches of one slide are not independent samples (same patient, same staining, same
scanner day), so an interval that resamples patches is far too narrow. These functions
resample **slides** with replacement, keep every patch of a drawn slide, and recompute
the metrics of each draw (a cluster bootstrap; ``docs/numbers.md``, "Intervals").

Public API (stable; the benchmarks use it)
-----------------------------------------
* :func:`slide_counts` -- per-slide, per-group patch and correct counts of one
  prediction set (plain arrays in); :func:`table_slide_counts` does the same for a patch
  table (``slide``, ``label``, the attribute, ``prob`` or ``pred``).
* :func:`slide_bootstrap_ci` -- 95 % percentile intervals of WGA and BCA of one run.
* :func:`paired_wga_difference_ci` -- interval of ``WGA(B) - WGA(A)`` of two runs over
  the **same** resampled slides (a paired comparison: slide-to-slide difficulty cancels).
* :func:`seed_averaged_ci` -- several runs (seeds) on the same test slides: each draw
  resamples the slides once and averages the runs' WGA (and BCA), so the interval covers
  the slide sampling of the seed-averaged number Table 1 reports.
* :func:`bootstrap_draws` -- the slide-count matrix of the draws, ``(n_boot, n_slides)``.

Each draw is a weighted sum of per-slide counts (the weight of a slide is how often the
draw picked it), so 2,000 draws cost one ``(n_boot, n_slides) @ (n_slides, 4)`` product;
WGA and BCA of a draw follow :func:`napari_patchwise.analysis.metrics.evaluation_from_counts`
(empty groups and absent classes are left out, as in every metric of the project;
:func:`metrics_of_counts` is checked against it in the tests). The interval is the
``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the draws (draws whose metric
is undefined, no patches of a class at all, are dropped). With fewer than two slides
there is nothing to resample: every function raises a one-line :class:`PatchwiseError`
instead of returning a zero-width interval.

Everything is deterministic given ``seed`` (NumPy's ``default_rng``); nothing is cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import PatchwiseError
from ..groups import (
    DEFAULT_ATTRIBUTE,
    DEFAULT_TAU,
    N_ATTRIBUTES,
    N_CLASSES,
    N_GROUPS,
    as_label,
    attribute_values,
    check_same_length,
    group_ids,
)
from ..schema import DEFAULT_THRESHOLD

#: Draws of every interval unless told otherwise.
DEFAULT_N_BOOT = 2000
#: Coverage of the percentile intervals.
DEFAULT_LEVEL = 0.95
#: The fewest slides an interval needs.
MIN_SLIDES = 2


@dataclass(frozen=True)
class SlideCounts:
    """Per-slide, per-group patch and correct counts of one prediction set.

    ``counts[s, g]`` patches of group ``g`` on slide ``names[s]``, ``correct[s, g]`` of
    them predicted right. Slides are sorted by name.
    """

    names: tuple[str, ...]
    counts: np.ndarray  # (S, 4) int64
    correct: np.ndarray  # (S, 4) int64

    @property
    def n_slides(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval (fractions in [0, 1])."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_slides: int

    def as_list(self) -> list[float | None]:
        """``[low, high]`` for JSON (NaN as ``None``)."""
        return [_json(self.low), _json(self.high)]


@dataclass(frozen=True)
class BootstrapResult:
    """WGA and BCA intervals of one run (or of a seed average)."""

    wga: Interval
    bca: Interval


def slide_counts(
    slides: ArrayLike,
    label: ArrayLike,
    values: ArrayLike,
    *,
    tau: float = DEFAULT_TAU,
    prob: ArrayLike | None = None,
    pred: ArrayLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> SlideCounts:
    """Count every slide's patches and correct predictions per group.

    Parameters
    ----------
    slides : array_like, shape (N,)
        The slide of each patch (any hashable values; names in the result are ``str``).
    label : array_like of {0, 1}, shape (N,)
    values : array_like of float, shape (N,)
        The spurious attribute (``tissue_ratio`` unless another one groups the patches).
    tau : float
        The attribute's threshold: group ``2 * label + (values >= tau)``.
    prob, pred : array_like, shape (N,)
        Predicted tumor probability (``pred = prob >= threshold``), or the decisions
        when ``prob`` is not given. One of them is required.
    threshold : float
        Decision threshold on ``prob``.

    Returns
    -------
    SlideCounts
    """
    y = as_label(label)
    groups = group_ids(y, values, tau).astype(np.intp)
    if prob is not None:
        decided = np.asarray(prob, dtype=np.float64).reshape(-1) >= threshold
    elif pred is not None:
        decided = as_label(pred)
    else:
        raise PatchwiseError("an interval needs predictions", hint="give prob or pred")
    slide_arr = np.asarray(slides).reshape(-1)
    check_same_length(y, groups, decided, slide_arr)
    # factorize hashes (np.unique on a million strings sorts them: ~10x slower)
    slide_ids, names = pd.factorize(slide_arr, sort=True)
    cell = slide_ids.astype(np.intp) * N_GROUPS + groups
    size = names.size * N_GROUPS
    counts = np.bincount(cell, minlength=size).reshape(-1, N_GROUPS).astype(np.int64)
    right = np.bincount(cell[decided == y], minlength=size).reshape(-1, N_GROUPS)
    return SlideCounts(tuple(str(n) for n in names), counts, right.astype(np.int64))


def table_slide_counts(
    table: Any,
    *,
    attribute: str = DEFAULT_ATTRIBUTE,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    path: Any = None,
) -> SlideCounts:
    """:func:`slide_counts` of a patch table with ``slide``, ``label``, the attribute and
    ``prob`` (or ``pred``); ``path`` is named in errors."""
    if "slide" not in getattr(table, "columns", ()):
        raise PatchwiseError(
            "table has no 'slide' column, so patches cannot be resampled by slide",
            path=path,
            hint="use a table written by 'patchwise stats', 'predict' or 'train'",
        )
    if "prob" not in table and "pred" not in table:
        raise PatchwiseError(
            "table has no 'prob' or 'pred' column", path=path, hint="give a prediction table"
        )
    return slide_counts(
        table["slide"].to_numpy(),
        table["label"].to_numpy(),
        attribute_values(table, attribute, path=path),
        tau=tau,
        prob=table["prob"].to_numpy() if "prob" in table else None,
        pred=table["pred"].to_numpy() if "pred" in table else None,
        threshold=threshold,
    )


def bootstrap_draws(n_slides: int, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """How often each slide is drawn in each of ``n_boot`` resamples.

    Draw ``b`` picks ``n_slides`` slides uniformly with replacement
    (``rng.integers(0, n_slides, (n_boot, n_slides))`` with ``rng = default_rng(seed)``).

    Returns
    -------
    weights : ndarray of int64, shape (n_boot, n_slides)
        Each row sums to ``n_slides``.
    """
    if n_boot < 1:
        raise PatchwiseError(f"the number of bootstrap draws must be at least 1, not {n_boot}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_slides, size=(n_boot, n_slides))
    offsets = np.arange(n_boot)[:, None] * n_slides
    flat = np.bincount((picks + offsets).ravel(), minlength=n_boot * n_slides)
    return flat.reshape(n_boot, n_slides).astype(np.int64)


def metrics_of_counts(counts: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGA and BCA of many count vectors at once (rows of ``(..., 4)`` arrays).

    The same definitions as :func:`napari_patchwise.analysis.metrics.evaluation_from_counts`:
    WGA is the lowest accuracy over non-empty groups, BCA the mean recall over classes
    present; NaN where nothing is left.
    """
    counts = np.asarray(counts, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = np.where(counts > 0, correct / counts, np.nan)
        shape = (*counts.shape[:-1], N_CLASSES, N_ATTRIBUTES)
        class_n = counts.reshape(shape).sum(axis=-1)
        class_right = correct.reshape(shape).sum(axis=-1)
        per_class = np.where(class_n > 0, class_right / class_n, np.nan)
    return _nan_min(per_group), _nan_mean(per_class)


def slide_bootstrap_ci(
    counts: SlideCounts,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    path: Any = None,
) -> BootstrapResult:
    """Slide-level percentile intervals of one run's WGA and BCA.

    Parameters
    ----------
    counts : SlideCounts
        From :func:`slide_counts` / :func:`table_slide_counts`.
    n_boot : int
        Number of resamples (2,000 by default).
    seed : int
        Seed of the resampling; the same seed gives the same interval.
    level : float
        Coverage (0.95: the 2.5th and 97.5th percentiles of the draws).
    path : path-like, optional
        The table, named in errors.

    Raises
    ------
    PatchwiseError
        Fewer than two slides (one line saying so).

    Examples
    --------
    >>> c = slide_counts(["a", "a", "b", "b"], [0, 1, 0, 1], [0.5] * 4, prob=[0.1, 0.9, 0.6, 0.8])
    >>> r = slide_bootstrap_ci(c, n_boot=200)
    >>> r.wga.estimate, r.wga.low <= r.wga.estimate <= r.wga.high
    (0.5, True)
    """
    return seed_averaged_ci([counts], n_boot=n_boot, seed=seed, level=level, path=path)


def seed_averaged_ci(
    runs: Sequence[SlideCounts],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    path: Any = None,
) -> BootstrapResult:
    """Intervals of the mean WGA and BCA over several runs (seeds) on the same test slides.

    Each draw resamples the slides **once** and applies the same draw to every run; the
    draw's value is the mean over the runs of their WGA (BCA) on the drawn slides. The
    interval thus covers which slides were tested on, for the seed-averaged number (the
    spread between seeds is Table 1's std). The estimate is the mean of the runs' own WGA.

    Raises
    ------
    PatchwiseError
        No runs, runs on different slide sets, or fewer than two slides.
    """
    if not runs:
        raise PatchwiseError("no runs to bootstrap")
    names = runs[0].names
    for other in runs[1:]:
        if other.names != names:
            raise PatchwiseError(
                "the runs were tested on different slides, so one slide draw cannot serve all",
                path=path,
                hint="average runs tested on the same slides",
            )
    _check_slides(len(names), path)
    check_level(level)
    weights = bootstrap_draws(len(names), n_boot=n_boot, seed=seed)
    wga = np.zeros(n_boot)
    bca = np.zeros(n_boot)
    estimates = np.zeros((len(runs), 2))
    for i, run in enumerate(runs):
        run_wga, run_bca = metrics_of_counts(weights @ run.counts, weights @ run.correct)
        wga += run_wga
        bca += run_bca
        estimates[i] = metrics_of_counts(run.counts.sum(axis=0), run.correct.sum(axis=0))
    wga /= len(runs)
    bca /= len(runs)
    mean = estimates.mean(axis=0)
    return BootstrapResult(
        _interval(float(mean[0]), wga, level, len(names)),
        _interval(float(mean[1]), bca, level, len(names)),
    )


def paired_wga_difference_ci(
    a: SlideCounts,
    b: SlideCounts,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    path: Any = None,
) -> Interval:
    """Interval of ``WGA(B) - WGA(A)`` over the same resampled slides.

    Both runs must hold the same slides (normally the same patches: two models'
    predictions of one test set). An interval that excludes 0 says B's WGA differs from
    A's beyond what the choice of test slides explains.

    Raises
    ------
    PatchwiseError
        The runs hold different slides, or fewer than two.
    """
    if a.names != b.names:
        raise PatchwiseError(
            "the two tables hold different slides; a paired interval needs the same ones",
            path=path,
            hint="compare predictions of the same test slides",
        )
    _check_slides(a.n_slides, path)
    check_level(level)
    weights = bootstrap_draws(a.n_slides, n_boot=n_boot, seed=seed)
    wga_a, _ = metrics_of_counts(weights @ a.counts, weights @ a.correct)
    wga_b, _ = metrics_of_counts(weights @ b.counts, weights @ b.correct)
    point_a, _ = metrics_of_counts(a.counts.sum(axis=0), a.correct.sum(axis=0))
    point_b, _ = metrics_of_counts(b.counts.sum(axis=0), b.correct.sum(axis=0))
    return _interval(float(point_b - point_a), wga_b - wga_a, level, a.n_slides)


def check_level(level: float) -> None:
    """Refuse a coverage outside (0, 1)."""
    if not 0.0 < float(level) < 1.0:
        raise PatchwiseError(f"interval level {level} is outside (0, 1)")


# -- helpers ---------------------------------------------------------------------------
def _check_slides(n_slides: int, path: Any) -> None:
    if n_slides < MIN_SLIDES:
        raise PatchwiseError(
            f"a slide-level interval needs at least {MIN_SLIDES} test slides, "
            f"this table holds {n_slides}",
            path=path,
            hint="patches of one slide are not independent samples; test on more slides",
        )


def _interval(estimate: float, draws: np.ndarray, level: float, n_slides: int) -> Interval:
    kept = draws[np.isfinite(draws)]
    if kept.size == 0:
        low = high = math.nan
    else:
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = (float(v) for v in np.percentile(kept, [tail, 100.0 - tail]))
    return Interval(float(estimate), low, high, float(level), int(draws.size), int(n_slides))


def _nan_min(values: np.ndarray) -> np.ndarray:
    filled = np.where(np.isnan(values), np.inf, values).min(axis=-1)
    return np.where(np.isinf(filled), np.nan, filled)


def _nan_mean(values: np.ndarray) -> np.ndarray:
    present = ~np.isnan(values)
    total = np.where(present, values, 0.0).sum(axis=-1)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
