"""Groups from tau: ids, names, counts and within-class shares, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import GROUP_NAMES, alphas, group_counts, group_ids, group_name

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
    with pytest.raises(PatchwiseError, match="tau"):
        group_ids([0, 1], [0.1, 0.2], 1.5)
    with pytest.raises(PatchwiseError, match="different lengths"):
        group_counts([0, 1, 1], [0.1, 0.2], 0.1)
