"""Slice discovery: coherent groups of patches, in feature space, where a model errs.

An error-aware Gaussian mixture in the spirit of Domino (Eyuboglu et al., ICLR 2022).
The feature vectors are reduced with PCA (scaled so that the average component has unit
variance); a mixture with diagonal covariances is fitted on ``[features, lambda * label,
lambda * error]``, so that its components follow both the geometry of the features and
where the model errs. A slice is then a *region of feature space*: each patch's
responsibility comes from the feature dimensions of the components alone (a diagonal
Gaussian's marginal is its own sub-vector), so a slice can be described, and re-found on
new patches, without knowing their errors. Its score is the excess errors it holds,
``(errors - size * overall error rate) / N``: error rate above the overall one, times its
share of the patches.

Cross-fitting: a model's own errors gather in its feature space even without any
shortcut (where it is unsure), and a mixture fitted *with* the errors finds such a
region and fits its noise too, so in-sample scores overstate slices. Each slice is
therefore also scored on patches whose errors did not shape it (:func:`held_out_scores`:
two folds, the mixture fitted on one, the matching component counted on the other); the
slices are ranked by this held-out score.

Noise floor: errors permuted within each class (seeded; the per-class error rates kept)
and the whole procedure, cross-fitting included, run again; the 95th percentile of the
top held-out score over the permutations is the floor; slices whose held-out score is
above it are marked. Measured (docs/shortcuts.md): without any artefact, the in-sample
top score of a briefly trained model's errors beat the in-sample permutation floor in 2
of 3 cohorts; the held-out score beat the cross-fitted floor in none, while the
pen-marked slice of a shortcut-broken test split stayed far above it.

Plain arrays in, plain arrays out; no torch, no files (``commands/discover.py`` joins a
feature store to a prediction table and writes the results).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import PatchwiseError

#: The percentile of the permuted top held-out scores that is the noise floor.
FLOOR_PERCENTILE = 95.0
#: What the floor is (recorded in ``slices.json``).
FLOOR_METHOD = "cross-fitted: held-out scores, errors permuted within each class"


@dataclass(frozen=True)
class DiscoverSettings:
    """How slices are searched (every field is recorded in ``slices.json``)."""

    n_slices: int = 8
    n_components: int = 32
    weight: float = 1.0  # lambda: weight of label and error beside the features
    permutations: int = 20
    seed: int = 0
    n_typical: int = 10
    reg_covar: float = 1e-3
    n_init: int = 1

    def __post_init__(self) -> None:
        for name in ("n_slices", "n_components", "n_typical", "n_init"):
            if getattr(self, name) < 1:
                raise PatchwiseError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.permutations < 0 or not np.isfinite(self.weight) or self.weight < 0:
            raise PatchwiseError("permutations and weight must be non-negative")


@dataclass
class Slice:
    """One discovered slice (hard assignment: the patches whose most likely slice it is)."""

    id: int
    rank: int
    size: int
    accuracy: float
    error_rate: float
    gap: float  # overall accuracy - slice accuracy
    score: float  # excess errors, on the patches the mixture was fitted to
    held_out_score: float  # the same, cross-fitted (held_out_scores); ranks the slices
    above_noise: bool
    tumor_share: float
    attributes: list[dict[str, float | str]] = field(default_factory=list)
    typical: list[int] = field(default_factory=list)  # row indices, highest responsibility


@dataclass
class Discovery:
    """What :func:`discover_slices` found."""

    assignment: np.ndarray  # (N,) slice id of each patch
    responsibility: np.ndarray  # (N,) its responsibility for that slice
    slices: list[Slice]  # ranked, best first
    noise_floor: float
    permuted_top: list[float]
    overall_accuracy: float
    settings: DiscoverSettings

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (``slices.json``)."""
        return {
            "n_patches": int(self.assignment.size),
            "overall_accuracy": self.overall_accuracy,
            # JSON has no NaN: no permutations, no floor
            "noise_floor": None if np.isnan(self.noise_floor) else self.noise_floor,
            "noise_floor_percentile": FLOOR_PERCENTILE,
            "noise_floor_method": FLOOR_METHOD,
            "permuted_top_scores": self.permuted_top,
            "settings": asdict(self.settings),
            "slices": [asdict(s) for s in self.slices],
        }


def reduce_features(features: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """PCA of ``features``, scaled so that the mean component variance is 1."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float64)
    k = max(1, min(n_components, x.shape[1], x.shape[0] - 1))
    z = PCA(n_components=k, random_state=seed).fit_transform(x)
    scale = np.sqrt(np.mean(np.var(z, axis=0)))
    return z / (scale if scale > 0 else 1.0)


def fit_mixture(
    z: np.ndarray, labels: np.ndarray, errors: np.ndarray, settings: DiscoverSettings
) -> Any:
    """The error-aware mixture (a fitted ``sklearn`` ``GaussianMixture``) on
    ``[z, lambda * label, lambda * error]``."""
    from sklearn.mixture import GaussianMixture

    lam = settings.weight
    x = np.column_stack([z, lam * labels.astype(float), lam * errors.astype(float)])
    return GaussianMixture(
        n_components=min(settings.n_slices, len(z)),
        covariance_type="diag",
        reg_covar=settings.reg_covar,
        n_init=settings.n_init,
        random_state=settings.seed,
    ).fit(x)


def assign_by_features(gmm: Any, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(assignment, responsibility)`` of ``z`` from the feature dimensions alone."""
    d = z.shape[1]
    # The marginal over the feature dimensions: a slice is a region of feature space.
    mean, var = gmm.means_[:, :d], gmm.covariances_[:, :d]
    log_p = (
        -0.5
        * (
            np.sum(np.log(2 * np.pi * var), axis=1)[None, :]
            + (((z[:, None, :] - mean[None]) ** 2) / var[None]).sum(axis=2)
        )
        + np.log(np.maximum(gmm.weights_, 1e-300))[None, :]
    )
    log_p -= log_p.max(axis=1, keepdims=True)
    resp = np.exp(log_p)
    resp /= resp.sum(axis=1, keepdims=True)
    assignment = resp.argmax(axis=1)
    return assignment, resp[np.arange(len(z)), assignment]


def fit_slices(
    z: np.ndarray, labels: np.ndarray, errors: np.ndarray, settings: DiscoverSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the error-aware mixture; ``(assignment, responsibility)`` from the features."""
    return assign_by_features(fit_mixture(z, labels, errors, settings), z)


def halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """A random half of each class: ``True`` for the patches of the first fold."""
    rng = np.random.default_rng([seed, 11])
    first = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        first[idx[: len(idx) // 2]] = True
    return first


def held_out_scores(
    z: np.ndarray,
    labels: np.ndarray,
    errors: np.ndarray,
    assignment: np.ndarray,
    settings: DiscoverSettings,
) -> np.ndarray:
    """Each slice's excess errors on patches whose errors did not shape it (cross-fitting).

    Two folds (half of each class): the mixture is fitted on one fold; each slice of
    ``assignment`` (the fit on all patches) is matched to the fold mixture's component
    that overlaps it most (IoU, on the fitting fold), and that component's excess errors
    on the *other* fold are counted, weighted by that IoU (a slice the fold's fit does not
    re-find gets little). The sum over both folds, over all patches, is on the scale of
    :func:`slice_scores`: a slice where errors really gather keeps its score, a slice
    that only fits the noise of these errors loses it.
    """
    k = int(assignment.max()) + 1
    n = max(len(errors), 1)
    out = np.zeros(k)
    first = halves(labels, settings.seed)
    for fit in (first, ~first):
        held = ~fit
        if fit.sum() < 2 or not held.any():
            continue
        gmm = fit_mixture(z[fit], labels[fit], errors[fit], settings)
        on_fit, _ = assign_by_features(gmm, z[fit])
        on_held, _ = assign_by_features(gmm, z[held])
        rate = errors[held].mean()
        for sid in range(k):
            members = assignment[fit] == sid
            if not members.any():
                continue
            comps = np.arange(gmm.n_components)
            inter = np.array([(members & (on_fit == c)).sum() for c in comps])
            union = np.array([(members | (on_fit == c)).sum() for c in comps])
            iou = inter / np.maximum(union, 1)
            match = on_held == int(np.argmax(iou))
            # weighted by the overlap: a slice the fold's fit does not re-find gets little
            out[sid] += iou.max() * (errors[held][match].sum() - match.sum() * rate) / n
    return out


def slice_scores(assignment: np.ndarray, errors: np.ndarray, n_slices: int) -> np.ndarray:
    """Excess errors of each slice as a share of all patches (see the module docstring)."""
    n = max(len(errors), 1)
    size = np.bincount(assignment, minlength=n_slices).astype(float)
    wrong = np.bincount(assignment, weights=errors.astype(float), minlength=n_slices)
    return (wrong - size * errors.mean()) / n


def permuted_errors(labels: np.ndarray, errors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``errors`` shuffled within each class: each class keeps its error rate."""
    out = errors.copy()
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        out[idx] = errors[rng.permutation(idx)]
    return out


def discover_slices(
    features: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    *,
    attributes: pd.DataFrame | None = None,
    settings: DiscoverSettings | None = None,
) -> Discovery:
    """Find slices where the model errs, ranked, beside their noise floor.

    Parameters
    ----------
    features : array (N, D)
        One vector per patch.
    labels, preds : arrays (N,)
        True labels and the model's decisions (0/1).
    attributes : DataFrame, optional
        Known numeric per-patch columns (N rows): each slice lists the three that
        correlate most with belonging to it.
    settings : DiscoverSettings, optional

    Returns
    -------
    Discovery
    """
    settings = settings or DiscoverSettings()
    labels = np.asarray(labels).astype(np.int64)
    errors = np.asarray(preds).astype(np.int64) != labels
    if len(features) != len(labels) or len(labels) != len(errors) or len(labels) < 2:
        raise PatchwiseError(
            f"{len(features)} feature vectors for {len(labels)} patches",
            hint="give one vector, label and prediction per patch (at least 2)",
        )
    z = reduce_features(features, settings.n_components, settings.seed)
    assignment, resp = fit_slices(z, labels, errors, settings)
    k = min(settings.n_slices, len(z))
    scores = slice_scores(assignment, errors, k)
    held = _padded(held_out_scores(z, labels, errors, assignment, settings), k)
    rng = np.random.default_rng([settings.seed, 7])
    permuted_top = []
    for _ in range(settings.permutations):
        fake = permuted_errors(labels, errors, rng)
        fake_assignment, _ = fit_slices(z, labels, fake, settings)
        permuted_top.append(
            float(held_out_scores(z, labels, fake, fake_assignment, settings).max())
        )
    floor = float(np.percentile(permuted_top, FLOOR_PERCENTILE)) if permuted_top else np.nan
    slices = _describe(
        assignment, resp, labels, errors, (scores, held), floor, attributes, settings
    )
    return Discovery(assignment, resp, slices, floor, permuted_top, 1 - errors.mean(), settings)


def _padded(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` with zeros up to length ``k`` (slices no patch is in)."""
    return np.concatenate([values, np.zeros(max(k - len(values), 0))])[:k]


def _describe(assignment, resp, labels, errors, scores, floor, attributes, settings):
    """The non-empty slices, best held-out score first."""
    scores, held = scores
    overall = 1 - errors.mean()
    out = []
    for rank, sid in enumerate(
        s for s in np.argsort(-held, kind="stable") if np.any(assignment == s)
    ):
        members = assignment == sid
        idx = np.flatnonzero(members)
        acc = float(1 - errors[idx].mean())
        top = idx[np.argsort(-resp[idx], kind="stable")[: settings.n_typical]]
        out.append(
            Slice(
                id=int(sid),
                rank=rank,
                size=int(idx.size),
                accuracy=acc,
                error_rate=1 - acc,
                gap=float(overall - acc),
                score=float(scores[sid]),
                held_out_score=float(held[sid]),
                above_noise=bool(np.isfinite(floor) and held[sid] > floor),
                tumor_share=float(labels[idx].mean()),
                attributes=correlated_attributes(members, attributes),
                typical=[int(i) for i in top],
            )
        )
    return out


def correlated_attributes(
    members: np.ndarray, attributes: pd.DataFrame | None, most: int = 3
) -> list[dict[str, float | str]]:
    """The ``most`` numeric columns most correlated (Pearson) with slice membership."""
    if attributes is None or members.all() or not members.any():
        return []
    found = []
    m = members.astype(float)
    for column in attributes.columns:
        values = pd.to_numeric(attributes[column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values)
        if ok.sum() < 3 or np.std(values[ok]) == 0 or np.std(m[ok]) == 0:
            continue
        r = float(np.corrcoef(m[ok], values[ok])[0, 1])
        found.append({"column": str(column), "correlation": r})
    found.sort(key=lambda a: -abs(float(a["correlation"])))
    return found[:most]


def slice_positions(table: pd.DataFrame, per_patch: pd.DataFrame, slice_id: int) -> np.ndarray:
    """Positions in a slide's patch ``table`` of the patches ``per_patch`` puts in a slice.

    ``per_patch`` is ``patchwise discover``'s output (``slide, row, col, slice``), the
    table a slide's patch table (``row, col``, and ``slide`` when it has one): patches
    match on ``slide, row, col`` (on ``row, col`` when either lacks ``slide``).
    """
    keys = ["slide", "row", "col"]
    if "slide" not in table.columns or "slide" not in per_patch.columns:
        keys = ["row", "col"]
    members = per_patch.loc[per_patch["slice"].to_numpy() == slice_id, keys].copy()
    left = table[keys].copy()
    if "slide" in keys:
        left["slide"] = left["slide"].astype(str)
        members["slide"] = members["slide"].astype(str)
    left["_position"] = np.arange(len(left))
    hits = left.merge(members.drop_duplicates(), on=keys, how="inner")
    return np.sort(hits["_position"].to_numpy(dtype=np.int64))


# -- selection on discovered slices (patchwise train --select val_worst_slice) -------------
def read_slice_table(path: Any) -> pd.DataFrame:
    """``patchwise discover``'s per-patch table (``slide, row, col, slice``) at ``path``.

    Raises
    ------
    PatchwiseError
        Not a readable parquet with these columns.
    """
    try:
        table = pd.read_parquet(path, columns=["slide", "row", "col", "slice"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PatchwiseError(
            f"not the output of patchwise discover ({type(exc).__name__})",
            path=path,
            hint="give the --out of patchwise discover run on the validation split",
        ) from None
    table["slide"] = table["slide"].astype(str)
    return table.drop_duplicates(["slide", "row", "col"])


def slice_of_patches(keys: pd.DataFrame, slices: pd.DataFrame) -> np.ndarray:
    """Each patch of ``keys`` (``slide, row, col``, in order): its slice id, -1 for none."""
    left = keys[["slide", "row", "col"]].copy()
    left["slide"] = left["slide"].astype(str)
    joined = left.merge(slices, on=["slide", "row", "col"], how="left")
    return joined["slice"].fillna(-1).to_numpy(dtype=np.int64)


def worst_slice_accuracy(slice_ids: np.ndarray, correct: np.ndarray) -> float:
    """The lowest accuracy over the slices (ids >= 0) of the patches; NaN when none is in one.

    The selection metric for cohorts without known groups: like the worst-group accuracy,
    with the slices ``patchwise discover`` found on the validation split as the groups.
    """
    slice_ids = np.asarray(slice_ids)
    correct = np.asarray(correct, dtype=float)
    ids = np.unique(slice_ids[slice_ids >= 0])
    if ids.size == 0:
        return float("nan")
    return float(min(correct[slice_ids == i].mean() for i in ids))
