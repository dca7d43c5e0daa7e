"""Groups from tau: ids, names, counts and within-class shares, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import (
    GROUP_NAMES,
    alpha_from_counts,
    alphas,
    counts_from_totals,
    counts_of_groups,
    group_counts,
    group_ids,
    group_index,
    group_name,
)

LABEL = np.array([0, 0, 0, 1, 1, 1, 1, 0])
RATIO = np.array([0.0, 0.09, 0.1, 0.02, 0.1, 0.5, 1.0, 0.95])


def test_group_names_order():
    assert GROUP_NAMES == ("non-tumor/small", "non-tumor/large", "tumor/small", "tumor/large")
    assert group_name(2) == "tumor/small"
    with pytest.raises(PatchwiseError):
        group_name(4)


def test_group_ids_by_hand_with_tau_inclusive():
    # ratio >= tau is "large": 0.1 at tau 0.1 is large.
    ids = group_ids(LABEL, RATIO, 0.1)
    assert ids.dtype == np.int8
    assert ids.tolist() == [0, 0, 1, 2, 3, 3, 3, 1]
    assert group_ids(LABEL.astype(bool), RATIO, 0.03).tolist() == [0, 1, 1, 2, 3, 3, 3, 1]


def test_group_counts_by_hand():
    counts = group_counts(LABEL, RATIO, 0.1)
    assert counts.dtype == np.int64
    assert counts.tolist() == [2, 2, 1, 3]
    assert group_counts(LABEL, RATIO, 0.0).tolist() == [0, 4, 0, 4]
    assert group_counts(LABEL, RATIO, 1.0).tolist() == [4, 0, 3, 1]
    assert group_counts([], [], 0.1).tolist() == [0, 0, 0, 0]


def test_alphas_by_hand_and_empty_class():
    alpha = alphas(LABEL, RATIO, 0.1)
    np.testing.assert_allclose(alpha, [[2 / 4, 2 / 4], [1 / 4, 3 / 4]])
    only_negatives = alphas([0, 0, 0], [0.0, 0.5, 0.6], 0.1)
    np.testing.assert_allclose(only_negatives[0], [1 / 3, 2 / 3])
    assert np.isnan(only_negatives[1]).all()


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(PatchwiseError, match=r"found \[2\]"):
        group_ids([0, 2], [0.1, 0.2], 0.1)
    with pytest.raises(PatchwiseError, match="not a finite number"):
        group_ids([0, 1], [0.1, 0.2], float("nan"))
    with pytest.raises(PatchwiseError, match="different lengths"):
        group_counts([0, 1, 1], [0.1, 0.2], 0.1)


# -- one home for the group layout: every other module counts groups with these ----------
def test_group_index_is_the_one_formula_for_scalars_and_arrays():
    assert [group_index(y, a) for y in (0, 1) for a in (False, True)] == [0, 1, 2, 3]
    ids = group_index(np.array([0, 1, 1, 0], np.int8), np.array([True, False, True, False]))
    assert ids.dtype == np.int8 and ids.tolist() == [1, 2, 3, 0]
    assert [GROUP_NAMES[group_index(y, a)] for y, a in ((1, False), (0, True))] == [
        "tumor/small",
        "non-tumor/large",
    ]


def test_counts_from_totals_and_counts_of_groups_agree_with_group_counts():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 1000)
    ratio = rng.random(1000)
    for tau in (0.0, 0.3, 0.9, 1.0):
        large = ratio >= tau
        expected = group_counts(label, ratio, tau)
        totals = (1000, label.sum(), large.sum(), (label.astype(bool) & large).sum())
        assert counts_from_totals(*totals).tolist() == expected.tolist()
        assert counts_of_groups(group_ids(label, ratio, tau)).tolist() == expected.tolist()
    assert counts_from_totals(10, 4, 5, 3).tolist() == [4, 2, 1, 3]
    assert counts_of_groups([]).tolist() == [0, 0, 0, 0]


def test_alpha_has_one_definition_nan_for_an_empty_class():
    # groups.alphas said NaN for a class without patches and TrainingGroups.alpha said 0:
    # both are now alpha_from_counts (NaN: "no patches", as metrics' empty accuracies)
    from napari_patchwise.training.methods import TrainingGroups
    from napari_patchwise.training.methods.gerne import beta_max

    label, ratio = np.array([0, 0, 0, 0]), np.array([0.0, 0.5, 0.6, 0.7])
    alpha = alpha_from_counts([1, 3, 0, 0])
    np.testing.assert_array_equal(alpha[0], [0.25, 0.75])
    assert np.isnan(alpha[1]).all()
    np.testing.assert_array_equal(alphas(label, ratio, 0.1), alpha)
    np.testing.assert_array_equal(TrainingGroups.from_table(label, ratio, 0.1).alpha, alpha)
    # GERNE's bound ignores the empty class: it is the bound of the other class alone
    assert beta_max(alpha, 0.5) == 0.75 / (0.5 * (0.75 - 0.5)) - 1 == 5.0
    assert beta_max(np.full((2, 2), np.nan), 0.5) == np.inf
