"""patch_stats on a dask.distributed cluster of worker processes equals the threaded result."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise.patches.attributes import patch_attributes
from napari_patchwise.patches.grid import PatchGrid, patch_stats
from napari_patchwise.slide import Slide

distributed = pytest.importorskip("distributed")


def test_process_workers_match_threads():
    rng = np.random.default_rng(3)
    mask = rng.choice(np.array([0, 2], dtype=np.uint8), size=(30, 41), p=[0.8, 0.2])
    image = rng.integers(0, 256, size=(2, 60, 82), dtype=np.uint8)
    slide = Slide(
        levels=(da.from_array(image, chunks=(2, 32, 32)),), channel_names=("a", "b")
    ).with_mask(da.from_array(mask, chunks=16), factor=2, kind="binary")
    grids = [PatchGrid(8), PatchGrid(6, stride=5, keep_edges=True, origin=(1, 3))]
    threaded = [patch_stats(slide, g, tissue_threshold=120.0) for g in grids]
    # the extra attributes too (border: map_overlap over intensity tissue)
    threaded_attrs = [
        patch_attributes(slide, g, tissue_threshold=120.0, border_margin=3) for g in grids
    ]
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        on_cluster = [patch_stats(slide, g, tissue_threshold=120.0) for g in grids]
        attrs = [patch_attributes(slide, g, tissue_threshold=120.0, border_margin=3) for g in grids]
    for a, b in zip(threaded_attrs, attrs, strict=True):
        pd.testing.assert_frame_equal(a, b)
        assert a["std_b"].gt(0).all() and a["border_fraction"].notna().any()
    for a, b in zip(threaded, on_cluster, strict=True):
        pd.testing.assert_frame_equal(a, b)
        assert a["n_healthy"].sum() > 0 and a["n_tumor"].sum() > 0
