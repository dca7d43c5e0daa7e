"""Shared test setup.

torch is imported before Qt: some torch and Qt builds crash when Qt's libraries load
first (DESIGN.md, known traps).
"""

from __future__ import annotations

import contextlib
import os

with contextlib.suppress(ImportError):
    import torch  # noqa: F401

import numpy as np
import pytest

# Keep BLAS/torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
