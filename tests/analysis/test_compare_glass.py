"""The comparison layer leaves empty glass transparent and still counts it."""

from __future__ import annotations

import numpy as np

from napari_patchwise.analysis.compare import ClassGrid


def test_hidden_cells_read_zero_and_still_count_through_threshold_moves():
    rng = np.random.default_rng(5)
    shape = (40, 50)
    label = rng.integers(0, 2, shape).astype(np.int8)
    label[0, :5] = -1  # no patch
    pa, pb = rng.uniform(0, 1, shape), rng.uniform(0, 1, shape)
    shown = rng.uniform(0, 1, shape) > 0.3  # 30 % empty glass
    plain = ClassGrid(label, pa, pb, 0.5)
    glass = ClassGrid(label, pa, pb, 0.5, shown=shown)
    for threshold in (0.5, 0.52, 0.1, 0.9, 0.49, 0.5):
        moved = [grid.move_to(threshold) for grid in (plain, glass)]
        assert moved[0] == moved[1]
        np.testing.assert_array_equal(glass.counts, plain.counts)
        np.testing.assert_array_equal(glass.values[shown], plain.values[shown])
        assert not glass.values[~shown].any()
        # the counts are the classes of every patch, hidden ones included (by hand)
        expected = np.bincount(plain.values.reshape(-1), minlength=5)[1:]
        np.testing.assert_array_equal(glass.counts, expected)
