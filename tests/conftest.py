"""Shared test setup.

torch (and triton) are imported before Qt: some torch and Qt builds crash when Qt's
libraries load first (docs/architecture.md, "Decisions").
"""

from __future__ import annotations

import contextlib
import gc
import os

# Keep BLAS/torch from oversubscribing the 2-core CI machine (before torch reads it).
os.environ.setdefault("OMP_NUM_THREADS", "2")

with contextlib.suppress(ImportError):
    import torch  # noqa: F401
with contextlib.suppress(ImportError):
    # torch.optim loads triton lazily; triton's bundled LLVM segfaults when it loads after
    # Mesa's llvmpipe (which a napari viewer under Xvfb brings in), so load it first.
    import triton  # noqa: F401

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _live_objects_frozen():
    """Every object alive when a test starts is frozen out of the garbage collector's scans.

    napari's viewer fixture runs a full ``gc.collect()`` at each teardown; over this
    process's heap (torch, napari, pandas, vispy: millions of objects that live as long as
    the session) each full collection cost seconds, most of a GUI test's teardown. Frozen
    objects are never scanned again (``gc.freeze``), so a collection only walks what the
    tests made since. Garbage is collected first: only what is alive is frozen, and what a
    test creates (its viewer included) stays collectable. Tests that time the event loop
    freeze and unfreeze themselves; the next test freezes again.
    """
    gc.collect()
    gc.freeze()
    yield
