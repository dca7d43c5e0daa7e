"""Groups: the label crossed with a spurious attribute binarised at a threshold.

A patch's group combines its label ``y`` (0 non-tumor, 1 tumor) with a binarised per-patch
attribute ``a = attribute >= threshold``: ``group = 2 * y + a``. The paper's attribute,
and the default everywhere, is tissue size: ``a = tissue_ratio >= tau`` (0 small,
1 large), so

====  =================
id    name
====  =================
0     non-tumor/small
1     non-tumor/large
2     tumor/small
3     tumor/large
====  =================

Any other numeric column of a patch table can be the attribute (``docs/attributes.md``:
mean channel intensity, distance to the tissue border, slide...); :func:`attribute_values`
reads and checks it, :func:`table_group_ids` is the grouping of a table's rows that
training, metrics and the viewer share, and :func:`group_names` names the groups
("small"/"large" for tissue size, "low"/"high" for any other attribute).

Groups are never stored in a patch table: they are a function of the threshold,
recomputed in a few milliseconds for a million patches whenever it changes.

This module is the one home of the group layout: :func:`group_index` is the formula,
:func:`counts_of_groups` and :func:`counts_from_totals` the two ways of counting groups
(by id, or from four totals), :func:`alpha_from_counts` the within-class shares. The
metrics, the samplers, the training methods and the viewer use these instead of
re-deriving them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import PatchwiseError
from .schema import NOT_ATTRIBUTES, PREDICTION_COLUMNS

GROUP_NAMES: tuple[str, ...] = (
    "non-tumor/small",
    "non-tumor/large",
    "tumor/small",
    "tumor/large",
)
N_GROUPS = len(GROUP_NAMES)
N_CLASSES = 2  # non-tumor / tumor
N_ATTRIBUTES = 2  # small / large tissue (below / at or above the threshold)
#: The paper's spurious attribute, the default of every ``--attribute``.
DEFAULT_ATTRIBUTE = "tissue_ratio"
#: The default tau (tissue-ratio threshold) of the commands.
DEFAULT_TAU = 0.1


def group_index(label: Any, large: Any) -> Any:
    """Group id of a label and a tissue size: ``N_ATTRIBUTES * label + large``.

    Works on scalars (``group_index(1, True) == 3``) and element-wise on integer or
    bool arrays (the dtype follows ``label``: int8 labels give int8 ids).
    """
    return N_ATTRIBUTES * label + large


def is_large(values: ArrayLike, threshold: float) -> np.ndarray:
    """Binarised attribute: ``True`` where ``values >= threshold`` (large tissue, high value).

    NaN values (a patch without tissue has no border fraction) count as below.
    """
    check_threshold_value(threshold)
    return np.asarray(values) >= threshold


def group_ids(label: ArrayLike, values: ArrayLike, threshold: float) -> np.ndarray:
    """Group id of every patch: ``2 * label + (values >= threshold)``.

    Parameters
    ----------
    label : array_like of {0, 1} or bool, shape (N,)
        Patch label (1 = holds at least one tumor pixel).
    values : array_like of float, shape (N,)
        The spurious attribute of each patch: ``tissue_ratio`` (the paper's, then
        ``threshold`` is tau in [0, 1]) or any numeric per-patch attribute.
    threshold : float
        Finite threshold; values at or above it are the "large" (high) side.

    Returns
    -------
    ids : ndarray of int8, shape (N,)
        Values in ``0..3``; see :data:`GROUP_NAMES` and :func:`group_names`.
    """
    label = as_label(label)
    large = is_large(values, threshold)
    check_same_length(label, large)
    return group_index(label.view(np.int8), large)


def attribute_values(
    table: Any, attribute: str = DEFAULT_ATTRIBUTE, *, path: Any = None
) -> np.ndarray:
    """The numeric attribute column of a patch table as float64, checked.

    Parameters
    ----------
    table : pandas.DataFrame
        A patch table (``patchwise stats``, with ``--attributes`` for the extra columns).
    attribute : str
        Column name, e.g. ``"tissue_ratio"``, ``"mean_CARS"``, ``"border_fraction"``.
    path : path-like, optional
        The table's file, named in the error.

    Raises
    ------
    PatchwiseError
        The column is missing, or holds something other than numbers (text, booleans
        are fine as 0/1). NaN is allowed (it counts as below every threshold).
    """
    _check_attribute_name(attribute)
    if attribute not in getattr(table, "columns", ()):
        numeric = ", ".join(numeric_attribute_columns(table)) or "none"
        raise PatchwiseError(
            f"table has no attribute column {attribute!r}",
            path=path,
            hint=f"numeric columns: {numeric}; extra attributes come from "
            "'patchwise stats --attributes intensity,border,slide'",
        )
    column = table[attribute]
    kind = getattr(column.dtype, "kind", "O")
    if kind not in "biuf":
        raise PatchwiseError(
            f"attribute column {attribute!r} is not numeric (dtype {column.dtype})",
            path=path,
            hint="choose a numeric column as the attribute",
        )
    return np.asarray(column, dtype=np.float64)


def _check_attribute_name(attribute: str) -> None:
    """Refuse a column that cannot be the spurious attribute: the label (or what it is
    made of), a prediction, a position or pixel count (:data:`schema.NOT_ATTRIBUTES`)."""

    if attribute not in NOT_ATTRIBUTES:
        return
    if attribute in ("label", "tumor_ratio", "tumor_tissue_ratio", "n_tumor", "n_healthy"):
        why = "it is the label (or what the label is made of): each group would be one class"
    elif attribute in PREDICTION_COLUMNS:
        why = "it is the model's prediction: grouping by it says nothing about the patches"
    else:
        why = "it is a patch position or pixel count, not a property of the patch's content"
    raise PatchwiseError(
        f"{attribute!r} cannot be the spurious attribute: {why}",
        hint="choose e.g. tissue_ratio, border_fraction or mean_<channel> "
        "('patchwise metrics TABLE --rank-attributes' lists the candidates)",
    )


def table_group_ids(
    table: Any, attribute: str = DEFAULT_ATTRIBUTE, threshold: float = 0.1, *, path: Any = None
) -> np.ndarray:
    """Group ids of a patch table's rows: ``2 * label + (table[attribute] >= threshold)``.

    The one grouping of a table that training (full and head-only), ``metrics`` and the
    viewer use: :func:`attribute_values` (checked column) then :func:`group_ids`.
    """
    values = attribute_values(table, attribute, path=path)
    return group_ids(np.asarray(table["label"]), values, threshold)


def attribute_threshold(attribute: str, threshold: float | None, tau: float | None = None) -> float:
    """The grouping threshold of ``attribute``: tau for ``tissue_ratio``, else ``threshold``.

    The one rule behind ``--attribute COLUMN --attribute-threshold T`` (train, metrics,
    report, the dock). For ``tissue_ratio`` the threshold is tau (``--tau``, default
    :data:`DEFAULT_TAU`); an ``--attribute-threshold`` then may only repeat it. Any other
    attribute needs its threshold: there is no meaningful default for an arbitrary column.

    Raises
    ------
    PatchwiseError
        A tissue-ratio threshold outside [0, 1] or disagreeing with tau, a missing or
        non-finite threshold of another attribute.
    """
    if attribute == DEFAULT_ATTRIBUTE:
        if threshold is not None and tau is not None and float(threshold) != float(tau):
            raise PatchwiseError(
                f"the threshold of tissue_ratio is tau: --attribute-threshold {threshold:g} "
                f"disagrees with --tau {tau:g}",
                hint="give only one of them",
            )
        value = threshold if threshold is not None else (DEFAULT_TAU if tau is None else tau)
        _check_tau(value)
        return float(value)
    if threshold is None:
        raise PatchwiseError(
            f"--attribute {attribute} needs --attribute-threshold T",
            hint="patches with the attribute >= T form the high groups; "
            "'patchwise metrics TABLE --rank-attributes' suggests thresholds",
        )
    check_threshold_value(threshold)
    return float(threshold)


def numeric_attribute_columns(table: Any) -> list[str]:
    """Columns of a table that can be the attribute: numeric, and not a label, position,
    count or prediction (those are not properties of a patch's content)."""

    names = []
    for name in getattr(table, "columns", ()):
        if name in NOT_ATTRIBUTES:
            continue
        if getattr(table[name].dtype, "kind", "O") in "biuf":
            names.append(str(name))
    return names


def group_names(attribute: str = DEFAULT_ATTRIBUTE) -> tuple[str, ...]:
    """Names of the four groups: :data:`GROUP_NAMES` for tissue size, else low/high."""
    if attribute == DEFAULT_ATTRIBUTE:
        return GROUP_NAMES
    return tuple(f"{cls}/{side}" for cls in ("non-tumor", "tumor") for side in ("low", "high"))


def group_counts(label: ArrayLike, values: ArrayLike, threshold: float) -> np.ndarray:
    """Number of patches in each of the four groups (``values``: the attribute).

    Returns
    -------
    counts : ndarray of int64, shape (4,)
        Indexed by group id; empty groups count 0.
    """
    return counts_of_groups(group_ids(label, values, threshold))


def counts_of_groups(groups: ArrayLike) -> np.ndarray:
    """Number of patches with each group id (ids ``0..3``, e.g. from :func:`group_ids`).

    Returns
    -------
    counts : ndarray of int64, shape (4,)
    """
    ids = np.asarray(groups, dtype=np.intp).reshape(-1)
    return np.bincount(ids, minlength=N_GROUPS).astype(np.int64)


def counts_from_totals(n: int, n_tumor: int, n_large: int, n_tumor_large: int) -> np.ndarray:
    """Group sizes from four totals, by inclusion-exclusion.

    Counting ``tumor``, ``large`` and ``tumor & large`` over boolean masks is several times
    cheaper than a bincount over group ids; this turns such totals into the four groups.
    The same formula gives per-group *correct* counts from totals over the correct patches.

    Parameters
    ----------
    n, n_tumor, n_large, n_tumor_large : int
        Patches in all, tumor patches, large-tissue patches, large-tissue tumor patches.

    Returns
    -------
    counts : ndarray of int64, shape (4,)
        Indexed by group id.

    Examples
    --------
    >>> counts_from_totals(10, 4, 5, 3).tolist()
    [4, 2, 1, 3]
    """
    return np.array(
        [
            n - n_tumor - n_large + n_tumor_large,
            n_large - n_tumor_large,
            n_tumor - n_tumor_large,
            n_tumor_large,
        ],
        dtype=np.int64,
    )


def alpha_from_counts(counts: ArrayLike) -> np.ndarray:
    """Within-class attribute shares ``alpha[y, a] = n_(y,a) / n_y`` of four group counts.

    A class with no patches has no shares: its row is NaN (as an empty group's accuracy
    is NaN in :mod:`.metrics`), never a row of zeros that would read as "no large and no
    small tissue". Callers that take a maximum over ``alpha`` ignore such a row (GERNE's
    bound, :func:`napari_patchwise.training.methods.gerne.beta_max`).

    Returns
    -------
    alpha : ndarray of float64, shape (2, 2)
        Rows are classes (non-tumor, tumor), columns attributes (small, large); each
        non-empty row sums to 1.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(N_CLASSES, N_ATTRIBUTES)
    per_class = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(per_class > 0, counts / per_class, np.nan)


def alphas(label: ArrayLike, values: ArrayLike, threshold: float) -> np.ndarray:
    """Within-class attribute shares of a table's patches (docs/methods.md).

    GERNE draws its biased batch with these shares; they must come from the training split.
    See :func:`alpha_from_counts` (a class with no patches has a row of NaN).
    """
    return alpha_from_counts(group_counts(label, values, threshold))


def group_name(group_id: int) -> str:
    """Name of one group id (``0..3``)."""
    if not 0 <= int(group_id) < N_GROUPS:
        raise PatchwiseError(f"group id {group_id} is not one of 0..3")
    return GROUP_NAMES[int(group_id)]


# -- validation ------------------------------------------------------------------------
def as_label(label: ArrayLike) -> np.ndarray:
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


def check_threshold_value(threshold: float) -> None:
    """Any finite number (tau's [0, 1] range is checked where tau is given)."""
    if not np.isfinite(float(threshold)):
        raise PatchwiseError(f"attribute threshold {threshold} is not a finite number")


def check_same_length(*arrays: np.ndarray) -> None:
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) > 1:
        raise PatchwiseError(f"per-patch arrays have different lengths {sorted(sizes)}")
