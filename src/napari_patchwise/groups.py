"""Tissue-size groups: the spurious attribute binarised with ``tau``.

A patch's group combines its label ``y`` (0 non-tumor, 1 tumor) with its tissue size
``a = tissue_ratio >= tau`` (0 small, 1 large): ``group = 2 * y + a``, so

====  =================
id    name
====  =================
0     non-tumor/small
1     non-tumor/large
2     tumor/small
3     tumor/large
====  =================

Groups are never stored in a patch table: they are a function of ``tau``, recomputed in a
few milliseconds for a million patches whenever ``tau`` changes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .errors import PatchwiseError

GROUP_NAMES: tuple[str, ...] = (
    "non-tumor/small",
    "non-tumor/large",
    "tumor/small",
    "tumor/large",
)
N_GROUPS = len(GROUP_NAMES)
N_ATTRIBUTES = 2  # small / large tissue


def is_large(tissue_ratio: ArrayLike, tau: float) -> np.ndarray:
    """Binarised spurious attribute: ``True`` where ``tissue_ratio >= tau`` (large tissue).

    NaN ratios (which a valid patch table never holds) count as small.
    """
    _check_tau(tau)
    return np.asarray(tissue_ratio) >= tau


def group_ids(label: ArrayLike, tissue_ratio: ArrayLike, tau: float) -> np.ndarray:
    """Group id of every patch: ``2 * label + (tissue_ratio >= tau)``.

    Parameters
    ----------
    label : array_like of {0, 1} or bool, shape (N,)
        Patch label (1 = holds at least one tumor pixel).
    tissue_ratio : array_like of float, shape (N,)
        Fraction of the patch's pixels that are tissue.
    tau : float
        Tissue-size threshold in [0, 1].

    Returns
    -------
    ids : ndarray of int8, shape (N,)
        Values in ``0..3``; see :data:`GROUP_NAMES`.
    """
    label = _as_label(label)
    large = is_large(tissue_ratio, tau)
    _check_same_length(label, large)
    ids = label.view(np.int8) * np.int8(2)
    ids += large
    return ids


def group_counts(label: ArrayLike, tissue_ratio: ArrayLike, tau: float) -> np.ndarray:
    """Number of patches in each of the four groups.

    Returns
    -------
    counts : ndarray of int64, shape (4,)
        Indexed by group id; empty groups count 0.
    """
    return np.bincount(group_ids(label, tissue_ratio, tau), minlength=N_GROUPS).astype(np.int64)


def alphas(label: ArrayLike, tissue_ratio: ArrayLike, tau: float) -> np.ndarray:
    """Within-class attribute shares ``alpha[y, a] = n_(y,a) / n_y`` (docs/methods.md).

    GERNE draws its biased batch with these shares; they must come from the training split.

    Returns
    -------
    alpha : ndarray of float64, shape (2, 2)
        Rows are classes (non-tumor, tumor), columns attributes (small, large); each
        non-empty row sums to 1. A class with no patches has a row of NaN.
    """
    counts = group_counts(label, tissue_ratio, tau).reshape(2, N_ATTRIBUTES).astype(np.float64)
    per_class = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(per_class > 0, counts / per_class, np.nan)


def group_name(group_id: int) -> str:
    """Name of one group id (``0..3``)."""
    if not 0 <= int(group_id) < N_GROUPS:
        raise PatchwiseError(f"group id {group_id} is not one of 0..3")
    return GROUP_NAMES[int(group_id)]


# -- validation ------------------------------------------------------------------------
def _as_label(label: ArrayLike) -> np.ndarray:
    """Labels as a bool array, rejecting anything but 0/1 (cheap: one min/max pass)."""
    label = np.asarray(label)
    if label.ndim != 1:
        label = label.reshape(-1)
    if label.dtype == np.bool_:
        return label
    if label.size and (label.min() < 0 or label.max() > 1):
        found = np.unique(label[(label != 0) & (label != 1)])[:5].tolist()
        raise PatchwiseError(
            f"labels must be 0 (non-tumor) or 1 (tumor); found {found}",
            hint="check the table's 'label' column",
        )
    if np.issubdtype(label.dtype, np.floating) and np.any(label != np.round(label)):
        raise PatchwiseError("labels must be 0 or 1; found fractional values")
    return label != 0


def _check_tau(tau: float) -> None:
    if not (0.0 <= float(tau) <= 1.0):
        raise PatchwiseError(f"tau={tau} is outside [0, 1]", hint="tau is a tissue-ratio threshold")


def _check_same_length(*arrays: np.ndarray) -> None:
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) > 1:
        raise PatchwiseError(f"per-patch arrays have different lengths {sorted(sizes)}")
