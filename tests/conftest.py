"""Shared test setup.

torch (and triton) are imported before Qt: some torch and Qt builds crash when Qt's
libraries load first (docs/architecture.md, "Decisions").
"""

from __future__ import annotations

import contextlib
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
