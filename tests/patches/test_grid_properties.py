"""Property tests: patch_stats equals a brute-force numpy reference on random inputs."""

from __future__ import annotations

import dask.array as da
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwise.patches.grid import PatchGrid, patch_stats
from napari_patchwise.slide import Slide


def reference(level0_code, grid):
    """One explicit numpy slice per patch of the level-0 class codes."""
    h, w = level0_code.shape
    ys, xs = grid.positions(h, w)
    rows = []
    for y in ys:
        for x in xs:
            patch = level0_code[y : y + grid.patch_size, x : x + grid.patch_size]
            rows.append((patch.size, int((patch == 2).sum()), int((patch == 1).sum())))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


@st.composite
def cases(draw):
    f = draw(st.sampled_from([1, 1, 2, 3]))
    h = draw(st.integers(1, 19))
    w = draw(st.integers(1, 19))
    mh = draw(st.sampled_from(sorted({h // f, -(-h // f)} - {0})))
    mw = draw(st.sampled_from(sorted({w // f, -(-w // f)} - {0})))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mask = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=(mh, mw), p=[0.5, 0.3, 0.2])
    image = rng.integers(0, 256, size=(2, h, w), dtype=np.uint8)
    grid = PatchGrid(
        draw(st.integers(1, 7)),
        stride=draw(st.one_of(st.none(), st.integers(1, 8))),
        origin=(draw(st.integers(0, 3)), draw(st.integers(0, 3))),
        keep_edges=draw(st.booleans()),
    )
    chunks = draw(st.integers(1, 8))
    mode = draw(st.sampled_from(["mask", "intensity"]))
    background = draw(st.sampled_from(["dark", "bright"]))
    return f, mask, image, grid, chunks, mode, background


def level0_codes(mask, f, image, mode, background, threshold):
    _, h, w = image.shape
    up = np.repeat(np.repeat(mask, f, 0), f, 1)[:h, :w]
    code = np.zeros((h, w), dtype=np.uint8)
    code[: up.shape[0], : up.shape[1]] = up
    if mode == "intensity":
        brightness = image.astype(np.float64).mean(axis=0)
        tissue = brightness < threshold if background == "bright" else brightness > threshold
        code = np.where(code == 2, 2, tissue.astype(np.uint8))
    return code


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_reference_and_invariants(case):
    f, mask, image, grid, chunks, mode, background = case
    threshold = 127.75  # never equal to a mean of two uint8 values
    slide = Slide(
        levels=(da.from_array(image, chunks=(2, chunks * f, chunks * f)),),
        channel_names=("a", "b"),
    ).with_mask(da.from_array(mask, chunks=chunks), factor=f, kind="3class")
    table = patch_stats(slide, grid, tissue=mode, tissue_threshold=threshold, background=background)
    code = level0_codes(mask, f, image, mode, background, threshold)
    expected = reference(code, grid)
    assert len(table) == expected.shape[0] == np.prod(grid.grid_shape(*code.shape))
    np.testing.assert_array_equal(table[["n_pixels", "n_tumor", "n_healthy"]].to_numpy(), expected)
    # Invariants of the patch table (docs/numbers.md).
    assert (table["n_tissue"] == table["n_tumor"] + table["n_healthy"]).all()
    assert (table["n_tissue"] <= table["n_pixels"]).all()
    assert (table["label"] == (table["n_tumor"] > 0)).all()
    for col in ("tumor_ratio", "tissue_ratio"):
        assert table[col].between(0, 1).all()
    ttr = table["tumor_tissue_ratio"]
    assert (ttr.isna() == (table["n_tissue"] == 0)).all()
    assert ttr.dropna().between(0, 1).all()
    assert (table["height"] * table["width"] == table["n_pixels"]).all()
    # Non-overlapping grids: totals equal the class totals over the covered region.
    if grid.step == grid.patch_size and len(table):
        ys, xs = grid.positions(*code.shape)
        covered = code[ys[0] : ys[-1] + grid.patch_size, xs[0] : xs[-1] + grid.patch_size]
        assert table["n_tumor"].sum() == (covered == 2).sum()
        assert table["n_healthy"].sum() == (covered == 1).sum()
