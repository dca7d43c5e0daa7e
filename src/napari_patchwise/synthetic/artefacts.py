"""Planted clinical artefacts on synthetic slides: pen marks, a stain shift, blur.

Real cohorts carry shortcuts nobody named: a pathologist's pen circles the tumor, one
scanner stains brighter, tumor slides are re-scanned out of focus. ``patchwise synth
--artefact KIND=STRENGTH`` plants such an artefact on whole patches of a square grid
(side ``patch``, from the slide's top-left corner), correlated with the patch label and
independent of tissue size, and records which patch got which artefact in a side table,
so that benchmarks can score methods that must *discover* the shortcut.

Strength (docs/shortcuts.md): with base rate ``b = BASE_RATE`` and strength ``s`` in
``[-1, 1]``, the share of tumor patches with the artefact is ``s + (1 - s) b`` and the
share of non-tumor patches ``(1 - s) b`` (for ``s >= 0``; a negative strength swaps the
two labels), so ``P(artefact | tumor) - P(artefact | non-tumor) = s`` exactly. The shares
are exact: within each label the ``round(share * n)`` patches with the lowest seeded
uniform draw get the artefact. Only patches with tissue (a full patch inside the slide
with at least one healthy or tumor pixel) are eligible; a patch is tumor when any of its
pixels is (the patch-table rule, ``label = n_tumor > 0``).

The plan needs every patch's label, hence the mask of the whole slide; the writer takes
them from the mask it has already stored, and applies the artefacts to the stored image
chunk by chunk (chunks aligned to the patch grid), so nothing is rendered twice and
memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd

from ..errors import PatchwiseError
from ..io.formats import slide_name
from ..slide import HEALTHY, TUMOR

#: The artefact kinds, in the order they are drawn (pen on top, sharp).
ARTEFACT_KINDS = ("stain", "blur", "pen")
#: Share of patches of either label with the artefact at strength 0.
BASE_RATE = 0.1
#: The side table's columns: one row per tissue patch and artefact kind.
TABLE_COLUMNS = ("slide", "row", "col", "label", "artefact", "present")

_SALT = {"stain": 101, "blur": 102, "pen": 103}
_STAIN_CHANNEL, _STAIN_GAIN = 1, 1.6  # the second channel (TPEF) 60% brighter
_PEN_COLOUR = np.array([40.0, 235.0, 190.0], dtype=np.float32)
_PEN_ALPHA = 0.85


@dataclass(frozen=True)
class Artefact:
    """One planted artefact kind and its strength (see the module docstring)."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in ARTEFACT_KINDS:
            raise PatchwiseError(
                f"unknown artefact kind {self.kind!r}",
                hint=f"use one of {', '.join(ARTEFACT_KINDS)}",
            )
        if not -1.0 <= float(self.strength) <= 1.0:
            raise PatchwiseError(
                f"artefact strength {self.strength} is outside [-1, 1]",
                hint="strength = P(artefact | tumor) - P(artefact | non-tumor)",
            )

    def shares(self) -> tuple[float, float]:
        """``(share of non-tumor patches, share of tumor patches)`` with the artefact."""
        s = abs(float(self.strength))
        high, low = s + (1 - s) * BASE_RATE, (1 - s) * BASE_RATE
        return (low, high) if self.strength >= 0 else (high, low)


def parse_artefact(text: str) -> Artefact:
    """``KIND=STRENGTH`` (e.g. ``pen=0.9``) as an :class:`Artefact`."""
    kind, sep, value = text.partition("=")
    try:
        strength = float(value)
    except ValueError:
        strength = float("nan")
    if not sep or not np.isfinite(strength):
        raise PatchwiseError(
            f"artefact {text!r} is not KIND=STRENGTH",
            hint=f"e.g. pen=0.9; kinds: {', '.join(ARTEFACT_KINDS)}",
        )
    return Artefact(kind.strip().lower(), strength)


def checked_artefacts(artefacts: Sequence[Artefact]) -> tuple[Artefact, ...]:
    """The artefacts, each kind at most once."""
    kinds = [a.kind for a in artefacts]
    twice = sorted({k for k in kinds if kinds.count(k) > 1})
    if twice:
        raise PatchwiseError(f"artefact {twice[0]!r} is given twice", hint="give each kind once")
    return tuple(artefacts)


def artefacts_path(slide_path) -> str:
    """``<slide name>.artefacts.parquet`` beside the slide."""

    slide_path = Path(slide_path)
    return str(slide_path.with_name(f"{slide_name(slide_path)}.artefacts.parquet"))


# -- the plan ----------------------------------------------------------------------------


def patch_classes(mask: da.Array | np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(has_tissue, tumor)`` booleans, shape ``(rows, cols)``, of the full patches."""
    mask = da.asarray(mask)
    rows, cols = mask.shape[0] // patch, mask.shape[1] // patch
    region = mask[: rows * patch, : cols * patch]
    region = region.rechunk(_aligned_chunks(region.shape, region.chunks, patch))
    tissue = da.coarsen(np.max, (region == HEALTHY) | (region == TUMOR), {0: patch, 1: patch})
    tumor = da.coarsen(np.max, region == TUMOR, {0: patch, 1: patch})
    has_tissue, is_tumor = da.compute(tissue, tumor)
    return np.asarray(has_tissue, bool), np.asarray(is_tumor, bool)


def plan_artefacts(
    artefacts: Sequence[Artefact], has_tissue: np.ndarray, tumor: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Which patches get which artefact: kind -> bool ``(rows, cols)``, exact shares."""
    plan = {}
    for artefact in checked_artefacts(artefacts):
        draw = np.random.default_rng([seed, _SALT[artefact.kind]]).random(tumor.shape)
        present = np.zeros(tumor.shape, dtype=bool)
        for label, share in enumerate(artefact.shares()):
            idx = np.flatnonzero(has_tissue & (tumor == bool(label)))
            n = round(share * idx.size)
            # Lowest draws first; ties (impossible in practice) broken by position.
            chosen = idx[np.argsort(draw.ravel()[idx], kind="stable")[:n]]
            present.ravel()[chosen] = True
        plan[artefact.kind] = present
    return plan


def plan_table(
    slide: str, plan: dict[str, np.ndarray], has_tissue: np.ndarray, tumor: np.ndarray
) -> pd.DataFrame:
    """The side table: one row per tissue patch and artefact kind."""
    rows, cols = np.nonzero(has_tissue)
    parts = [
        pd.DataFrame(
            {
                "slide": slide,
                "row": rows.astype(np.int64),
                "col": cols.astype(np.int64),
                "label": tumor[rows, cols].astype(np.int8),
                "artefact": kind,
                "present": present[rows, cols],
            }
        )
        for kind, present in plan.items()
    ]
    if not parts:
        return pd.DataFrame({c: [] for c in TABLE_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(TABLE_COLUMNS)]


# -- drawing -----------------------------------------------------------------------------


def apply_artefacts(
    image: da.Array, plan: dict[str, np.ndarray], patch: int, seed: int
) -> da.Array:
    """``image`` (``(C, Y, X)`` uint8) with the planned artefacts drawn, lazily.

    Rechunked so that chunks hold whole patches: every artefact stays inside its patch
    (blur reflects at the patch border), so each chunk is drawn on its own.
    """
    if not plan or not any(p.any() for p in plan.values()):
        return image
    chunks = ((image.shape[0],), *_aligned_chunks(image.shape[1:], image.chunks[1:], patch))
    image = image.rechunk(chunks)
    return da.map_blocks(
        _draw_block,
        image,
        plan=plan,
        patch=patch,
        seed=seed,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
    )


def _draw_block(block: np.ndarray, plan, patch: int, seed: int, block_info=None) -> np.ndarray:
    (_, _), (y0, y1), (x0, x1) = block_info[0]["array-location"]
    out = None
    for kind in (k for k in ARTEFACT_KINDS if k in plan):
        present = plan[kind]
        r0, c0 = y0 // patch, x0 // patch
        sub = present[r0 : -(-y1 // patch), c0 : -(-x1 // patch)]
        for dr, dc in zip(*np.nonzero(sub), strict=True):
            if out is None:
                out = block.copy()
            ys = slice((r0 + dr) * patch - y0, (r0 + dr + 1) * patch - y0)
            xs = slice((c0 + dc) * patch - x0, (c0 + dc + 1) * patch - x0)
            rng = np.random.default_rng([seed, _SALT[kind], r0 + dr, c0 + dc])
            out[:, ys, xs] = _DRAW[kind](out[:, ys, xs], rng)
    return block if out is None else out


def _stain(region: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    region = region.copy()
    shifted = region[_STAIN_CHANNEL].astype(np.float32) * np.float32(_STAIN_GAIN) + 2.0
    region[_STAIN_CHANNEL] = np.clip(np.rint(shifted), 0, 255).astype(np.uint8)
    return region


def _blur(region: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = max(1.5, region.shape[-1] / 16)
    blurred = gaussian_filter(region.astype(np.float32), sigma=(0, sigma, sigma), mode="reflect")
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _pen(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A straight ink stroke across the patch, from one edge to the opposite one."""
    _, h, w = region.shape
    if rng.random() < 0.5:  # top to bottom
        a, b = (0.0, rng.uniform(0, w)), (h - 1.0, rng.uniform(0, w))
    else:  # left to right
        a, b = (rng.uniform(0, h), 0.0), (rng.uniform(0, h), w - 1.0)
    half_width = max(1.5, min(h, w) / 12)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.subtract(b, a)
    t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / float(d @ d), 0, 1)
    dist = np.hypot(yy - (a[0] + t * d[0]), xx - (a[1] + t * d[1]))
    ink = dist <= half_width
    region = region.copy()
    mixed = _PEN_ALPHA * _PEN_COLOUR[:, None] + (1 - _PEN_ALPHA) * region[:, ink]
    region[:, ink] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return region


_DRAW = {"stain": _stain, "blur": _blur, "pen": _pen}


def _aligned_chunks(shape, chunks, patch: int) -> tuple[tuple[int, ...], ...]:
    """Chunks along each axis that are multiples of ``patch`` (the last one the rest)."""
    out = []
    for extent, axis_chunks in zip(shape, chunks, strict=True):
        size = patch * max(1, round(max(axis_chunks, default=patch) / patch))
        full, rest = divmod(int(extent), size)
        out.append((size,) * full + ((rest,) if rest else ()))
    return tuple(out)
