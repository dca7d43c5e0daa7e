"""A cohort's patch tables for browsing: per-slide counts and metrics, and cohort totals.

The viewer's cohort browser lists every slide of a manifest with its split, patch
counts and — once predictions are attached — accuracy and WGA, and shows the cohort's
group counts and metrics beside the current slide's. This module is that computation,
without Qt:

* :func:`cohort_slide_table` — one slide's patch table, reused from the training patch
  cache (``.patchwise-cache`` beside the manifest, :func:`.data.cached_patch_table`) when
  ``patchwise train`` (or an earlier browse) counted it with the same settings; else
  computed and stored there, so a later training run reuses it too.
* :class:`SlideSummary` — a slide's table with evaluators prepared once (O(N log N)),
  so any ``(tau, threshold)`` costs O(log N) per slide
  (:class:`~napari_patchwise.analysis.incremental.SliderEvaluator`).
* :func:`slide_evaluations` / :func:`pooled` (:func:`cohort_evaluation` = both) — the
  cohort's group counts (every patch) and metrics (the patches with a prediction) as
  sums of the slides' counts: exactly :func:`~napari_patchwise.analysis.metrics.evaluate` on the
  concatenated tables.
* :func:`read_predictions` / :func:`attach_predictions` — a prediction table covering
  the cohort (a run's ``predictions.parquet``, ``patchwise predict`` or ``stats``
  tables with ``prob``) split by slide and merged onto each slide's grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import ProgressCallback
from ..analysis.incremental import SliderEvaluator
from ..analysis.intervals import MIN_SLIDES, BootstrapResult, SlideCounts, slide_bootstrap_ci
from ..analysis.metrics import Evaluation, evaluation_from_counts
from ..cohort.manifest import CohortEntry
from ..errors import PatchwiseError
from ..groups import N_GROUPS
from ..io.tables import read_table
from ..patches.grid import PatchGrid
from ..patches.predictions import merge_predictions, slide_predictions
from ..patches.table import PatchTable, frame_table
from ..settings import PatchSettings
from .data import cached_patch_table
from .runs import PREDICTIONS

#: Where a slide's table came from (shown in the browser's slide list).
FROM_CACHE = "training cache"
COMPUTED = "computed"


def default_cache_dir(manifest: str | os.PathLike) -> Path:
    """The training patch cache of a manifest: ``.patchwise-cache`` beside it."""
    return Path(manifest).parent / ".patchwise-cache"


def cohort_slide_table(
    entry: CohortEntry,
    settings: PatchSettings,
    *,
    cache_dir: str | os.PathLike,
    progress: ProgressCallback | None = None,
) -> tuple[PatchTable, str]:
    """One cohort slide's patch table and where it came from (:data:`FROM_CACHE`, :data:`COMPUTED`).

    The table is the one ``patchwise train`` caches for these settings (same key: the
    image and mask fingerprints, the slide id, every patch setting with the background
    resolved to the slide's own); a computed table is
    stored in ``cache_dir`` for training to reuse (when ``cache_dir`` cannot be written,
    e.g. a read-only share, the table is only returned).

    Raises
    ------
    PatchwiseError
        The slide or mask cannot be read, the mask does not fit, or no patch fits.
    """
    settings.validate()
    _, table, fresh = cached_patch_table(
        entry, settings, cache_dir, progress=progress, store_optional=True
    )
    return table, COMPUTED if fresh else FROM_CACHE


@dataclass(frozen=True)
class SlideSummary:
    """One slide's patch table, prepared for evaluations at any tau and threshold.

    ``table`` carries ``prob`` (NaN: no prediction) once predictions are attached;
    ``counts`` evaluates every patch (group counts), ``scored`` the patches with a
    prediction (``None`` without any).
    """

    slide: str
    split: str
    table: pd.DataFrame
    source: str
    counts: SliderEvaluator
    scored: SliderEvaluator | None
    grid: PatchGrid | None = None  # the grid the table was cut with (None: unknown)

    @classmethod
    def from_table(
        cls,
        slide: str,
        split: str,
        table: pd.DataFrame,
        source: str,
        grid: PatchGrid | None = None,
    ) -> SlideSummary:
        """Prepare ``table`` (O(N log N): run it off the GUI thread)."""
        label = table["label"].to_numpy(dtype=np.int8)
        ratio = table["tissue_ratio"].to_numpy(dtype=np.float64)
        scored = None
        if "prob" in table:
            prob = table["prob"].to_numpy(dtype=np.float64)
            has = ~np.isnan(prob)
            if has.any():
                scored = SliderEvaluator(label[has], ratio[has], prob[has])
        return cls(slide, split, table, source, SliderEvaluator(label, ratio), scored, grid)

    def patch_table(self) -> PatchTable:
        """The slide's table with its grid (guessed from the rows when not recorded)."""
        return frame_table(self.table, self.slide, None if self.grid is None else (self.grid, None))

    @property
    def n_patches(self) -> int:
        return len(self.table)

    @property
    def n_tumor(self) -> int:
        return int(self.counts.n_y)

    @property
    def n_scored(self) -> int:
        return 0 if self.scored is None else self.scored.n

    def group_counts(self, tau: float) -> np.ndarray:
        """Patches per group at ``tau`` (every patch of the slide)."""
        return self.counts.evaluate(tau).group_counts

    def evaluate(self, tau: float, threshold: float) -> Evaluation | None:
        """Metrics over the patches with a prediction (None: the slide has none)."""
        return None if self.scored is None else self.scored.evaluate(tau, threshold)


#: One slide's evaluations at a tau and threshold: (every patch, the predicted patches).
SlideEvaluation = tuple[Evaluation, Evaluation | None]


def slide_evaluations(
    summaries: list[SlideSummary], tau: float, threshold: float
) -> list[SlideEvaluation]:
    """Each slide's ``(counts over every patch, metrics over its predicted patches)``."""
    return [(s.counts.evaluate(tau, threshold), s.evaluate(tau, threshold)) for s in summaries]


def pooled(
    evaluations: list[SlideEvaluation], tau: float, threshold: float
) -> tuple[Evaluation, Evaluation | None]:
    """The evaluations of several slides as one: their patches pooled.

    Group sizes and correct counts are summed and the metrics computed from the sums
    (:func:`~napari_patchwise.analysis.metrics.evaluation_from_counts`), so the result equals
    :func:`~napari_patchwise.analysis.metrics.evaluate` on the concatenated tables (ECE excepted:
    NaN here). The second item is None when no slide has a prediction.
    """
    zeros = np.zeros(N_GROUPS, dtype=np.int64)
    counts = sum((c.group_counts for c, _ in evaluations), zeros)
    every = evaluation_from_counts(
        counts, zeros, tau=tau, threshold=threshold, ece=np.nan, has_predictions=False
    )
    scored = [m for _, m in evaluations if m is not None]
    if not scored:
        return every, None
    metrics = evaluation_from_counts(
        sum((m.group_counts for m in scored), zeros),
        sum((m.group_correct for m in scored), zeros),
        tau=tau,
        threshold=threshold,
        ece=np.nan,
        has_predictions=True,
    )
    return every, metrics


def pooled_interval(
    evaluations: list[SlideEvaluation],
    names: list[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> BootstrapResult | None:
    """Slide-level 95 % bootstrap intervals of the pooled WGA and BCA of ``evaluations``.

    The slides with predictions (``names``: each evaluation's slide) are resampled with
    replacement, their patches kept together; slides are taken in name order, so the
    interval equals ``patchwise metrics --ci`` on the same slides' concatenated table
    with the same seed (:func:`~napari_patchwise.analysis.intervals.slide_bootstrap_ci`). None
    with fewer than two predicted slides: one slide gives no slide-level interval.
    """
    scored = sorted(
        (name, m) for name, (_, m) in zip(names, evaluations, strict=True) if m is not None
    )
    if len(scored) < MIN_SLIDES:
        return None
    counts = SlideCounts(
        tuple(name for name, _ in scored),
        np.stack([np.asarray(m.group_counts, dtype=np.int64) for _, m in scored]),
        np.stack([np.asarray(m.group_correct, dtype=np.int64) for _, m in scored]),
    )
    return slide_bootstrap_ci(counts, n_boot=n_boot, seed=seed)


def cohort_evaluation(
    summaries: list[SlideSummary], tau: float, threshold: float
) -> tuple[Evaluation, Evaluation | None]:
    """The group counts (every patch) and metrics (predicted patches) of ``summaries`` pooled.

    See :func:`pooled`; the browser evaluates each slide once per slider move
    (:func:`slide_evaluations`) and pools those for the cohort column.
    """
    return pooled(slide_evaluations(summaries, tau, threshold), tau, threshold)


# -- predictions ---------------------------------------------------------------------------
def read_predictions(path: str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    """A cohort's prediction table: a parquet/CSV file, or a run folder's ``predictions.parquet``.

    The table needs ``slide, row, col, prob`` (a run's ``predictions.parquet``, tables of
    ``patchwise predict`` or ``patchwise stats`` with ``prob``, concatenated). Returns
    the table and the file it was read from.
    """

    path = Path(path)
    if path.is_dir():
        if not (path / PREDICTIONS).is_file():
            raise PatchwiseError(
                f"folder has no {PREDICTIONS}",
                path=path,
                hint="choose a training run folder (one with test slides) or a prediction table",
            )
        path = path / PREDICTIONS
    table = read_table(path, required=("slide", "row", "col", "prob"))
    return table, path


def predictions_by_slide(
    predictions: pd.DataFrame, slides: list[str], *, source: str | os.PathLike
) -> dict[str, pd.DataFrame]:
    """The rows of ``predictions`` for each of ``slides`` that it names (checked).

    Raises
    ------
    PatchwiseError
        The table names none of ``slides`` (the message lists a few it names).
    """
    names = predictions["slide"].astype(str)
    present = set(names)
    found = [s for s in slides if s in present]
    if not found:
        listed = ", ".join(map(str, pd.unique(names)[:3]))
        raise PatchwiseError(
            f"predictions are for slide(s) {listed}, none of the cohort's",
            path=source,
            hint="load the predictions of this cohort (e.g. a run trained on its manifest)",
        )
    return {s: slide_predictions(predictions[names == s], s, source=source) for s in found}


def grid_index(table: pd.DataFrame) -> np.ndarray:
    """Table position at each grid cell ``(row, col)``; ``-1`` where there is no patch."""
    rows = table["row"].to_numpy(dtype=np.int64)
    cols = table["col"].to_numpy(dtype=np.int64)
    index = np.full((int(rows.max()) + 1, int(cols.max()) + 1), -1, dtype=np.int64)
    index[rows, cols] = np.arange(len(table))
    return index


def attach_predictions(
    table: pd.DataFrame, predictions: pd.DataFrame, *, slide: str, source: str | os.PathLike
) -> pd.DataFrame:
    """``table`` with the ``prob`` of ``predictions`` (NaN where a patch has none).

    Raises
    ------
    PatchwiseError
        A prediction is not a patch of ``table``'s grid (another patch size or stride).
    """
    return merge_predictions(table, grid_index(table), predictions, slide=slide, source=source)
