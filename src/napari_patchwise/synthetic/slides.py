"""Synthetic multimodal slides with a 3-class mask and a planted spurious correlation.

The slides imitate label-free nonlinear microscopy: ``CARS`` (a broad lipid/protein
signal), ``TPEF`` (cellular autofluorescence: cytoplasm and nuclei) and ``SHG`` (fibrous
collagen). Tissue fragments of varied size lie on a black background; tumor regions
inside the tissue differ in texture from healthy tissue (larger, denser, brighter nuclei
in TPEF, little collagen in SHG, a lower and more granular CARS signal) -- the causal
signal a small CNN can learn at patch sizes of 32 to 64 pixels.

The spurious signal is tissue *density*: large fragments are dense (solid tissue), small
fragments and the rims of large ones are sparse (scattered cells). ``spurious`` in
``[0, 1]`` decides how much the tumor prefers dense tissue: at 0 tumor regions are placed
regardless of density; at 1 tumor fills most of the dense interiors and almost none of
the sparse tissue, so tumor patches mostly contain much tissue and non-tumor patches
little, with a minority of the opposite kind (the paper's minority groups).

Generation is chunk by chunk: a low-resolution *layout* (tissue depth, density, tumor
coverage, ... at 1/``layout_scale`` of the slide) is computed once; every chunk is a
pure function of the seed, its position and the layout. Noise that spans chunks is value
noise on a global lattice hashed from ``(seed, lattice point)``, so chunks join without
seams and any chunk can be made alone, in any order, by any worker.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from .._atomic import FILE, atomic_paths, check_output
from .._progress import ProgressCallback
from ..errors import PatchwiseError
from ..io.formats import slide_name
from ..io.pyramid_cache import staged_pyramid
from ..io.write import OME_ZARR, staged_arrays, write_ome_tiff, write_ome_zarr
from ..slide import BACKGROUND, HEALTHY, TUMOR
from .artefacts import (
    Artefact,
    apply_artefacts,
    artefacts_path,
    patch_classes,
    plan_artefacts,
    plan_table,
)

CHANNEL_NAMES = ("CARS", "TPEF", "SHG")

# Salts separate the independent noise fields drawn from one seed.
_EDGE, _PORE, _NUCLEI, _FIBRE_A, _FIBRE_B, _TUMOR, _WAVE, _MIX, _CARS, _FRAG = range(1, 11)


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic slide.

    Attributes
    ----------
    size : (int, int)
        ``(height, width)`` of level 0 in pixels.
    seed : int
        Everything is a deterministic function of the seed.
    chunk : int
        Side of the generated dask chunks (pixels).
    spurious : float
        In ``[0, 1]``: how strongly tumor goes with dense (large) tissue.
    tumor_fraction : float
        Share of the tissue footprint that is tumor when ``spurious`` is 0.
    n_large, n_small : int or None
        Number of large dense fragments and small sparse fragments (default: from the
        slide's area).
    fragment_radius : (float, float) or None
        ``(smallest, largest)`` fragment radius in pixels (default: 1.5% and 22% of the
        shorter side).
    pixel_size : float
        Level-0 pixel size in micrometres (written into the OME metadata).
    layout_scale : int
        Pixels per cell of the low-resolution layout.
    channel_names : tuple of str
        Names of the three channels.
    """

    size: tuple[int, int] = (4096, 4096)
    seed: int = 0
    chunk: int = 1024
    spurious: float = 1.0
    tumor_fraction: float = 0.35
    n_large: int | None = None
    n_small: int | None = None
    fragment_radius: tuple[float, float] | None = None
    pixel_size: float = 0.5
    layout_scale: int = 32
    channel_names: tuple[str, ...] = field(default=CHANNEL_NAMES)

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.size)
        if h < 16 or w < 16:
            raise PatchwiseError(
                f"slide size {h} x {w} is too small", hint="use at least 16 x 16 pixels"
            )
        if not 0.0 <= self.spurious <= 1.0:
            raise PatchwiseError(
                f"spurious strength {self.spurious} is outside [0, 1]",
                hint="0 = no link between tissue size and label, 1 = strongest",
            )
        if not 0.0 <= self.tumor_fraction <= 1.0:
            raise PatchwiseError(f"tumor fraction {self.tumor_fraction} is outside [0, 1]")
        if self.chunk < 16 or self.layout_scale < 2:
            raise PatchwiseError("chunk must be >= 16 and layout_scale >= 2 pixels")
        if len(self.channel_names) != 3:
            raise PatchwiseError("a synthetic slide has exactly three channel names")
        if not (math.isfinite(self.pixel_size) and self.pixel_size > 0):
            raise PatchwiseError(
                f"pixel size {self.pixel_size} is not a positive number",
                hint="give micrometres per pixel, e.g. 0.5",
            )
        object.__setattr__(self, "size", (h, w))


# -- noise -------------------------------------------------------------------------------


def _hash_uniform(iy: np.ndarray, ix: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Uniform ``[0, 1)`` float32 values, a fixed function of integer lattice points."""
    with np.errstate(over="ignore"):
        key = np.uint64((seed * 1_000_003 + salt * 7_919) & 0xFFFFFFFFFFFFFFFF)
        iy, ix = np.broadcast_arrays(iy.astype(np.uint64), ix.astype(np.uint64))
        h = iy * np.uint64(0x9E3779B97F4A7C15)
        h ^= ix * np.uint64(0xC2B2AE3D27D4EB4F) + key
        # splitmix64 finaliser: good avalanche, vectorised.
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


@functools.lru_cache(maxsize=256)
def _interp_matrix(spacing: int, skip: int, n: int, smooth: bool) -> np.ndarray:
    """``(n, m)`` weights that interpolate ``m`` lattice values to ``n`` pixels.

    Pixel ``i`` lies ``(skip + i) / spacing`` lattice steps after the first lattice
    point; ``smooth`` uses smoothstep weights (value noise), else linear ones. Upsampling
    is then two small matrix products (BLAS), with no per-pixel gathers.
    """
    pos = (skip + np.arange(n)) / spacing
    k = np.floor(pos).astype(np.intp)
    t = pos - k
    if smooth:
        t = t * t * (3 - 2 * t)
    m = int(k[-1]) + 2
    weights = np.zeros((n, m), dtype=np.float32)
    weights[np.arange(n), k] = 1 - t
    weights[np.arange(n), k + 1] = t
    weights.setflags(write=False)
    return weights


def _upsample(grid: np.ndarray, spacing: int, y0: int, x0: int, h: int, w: int, smooth: bool):
    """(Bi)linear interpolation of lattice values ``grid`` (``[..., gy, gx]``) to pixels.

    ``grid[..., 0, 0]`` is the lattice point at pixel ``((y0 // spacing) * spacing,
    (x0 // spacing) * spacing)``; the result covers pixels ``[y0, y0+h) x [x0, x0+w)``.
    """
    wy = _interp_matrix(spacing, y0 % spacing, h, smooth)
    wx = _interp_matrix(spacing, x0 % spacing, w, smooth)
    grid = grid[..., : wy.shape[1], : wx.shape[1]]
    return wy @ grid @ wx.T


def _lattice_span(start: int, n: int, spacing: int) -> np.ndarray:
    """Lattice indices needed to interpolate pixels ``start .. start+n-1``."""
    return np.arange(start // spacing, (start + n - 1) // spacing + 2)


def _value_noise(y0: int, x0: int, h: int, w: int, spacing: int, seed: int, salt: int):
    """Smooth value noise in ``[0, 1]`` with features about ``spacing`` pixels wide."""
    gy = _lattice_span(y0, h, spacing)
    gx = _lattice_span(x0, w, spacing)
    lattice = _hash_uniform(gy[:, None], gx[None, :], seed, salt)
    return _upsample(lattice, spacing, y0, x0, h, w, smooth=True)


def _fibres(
    y0: int, x0: int, h: int, w: int, shear: float, wave: np.ndarray, seed: int, salt: int
) -> np.ndarray:
    """Streaks along x, sheared by ``shear`` and bent by the ``wave`` displacement.

    Anisotropic value noise, 2 px across and 24 px along (in the pixels of this call;
    the caller renders it at half resolution). The across coordinate of pixel ``(y, x)``
    is ``y + shear * x + wave``, which draws straight or wavy fibres at any angle within
    about 40 degrees of the x axis without seams between tiles.
    """
    across, along = 2.0, 24
    ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
    xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
    pos = (ys + np.float32(shear) * xs + wave) * np.float32(1.0 / across)
    lo = int(np.floor(pos.min()))
    hi = int(np.floor(pos.max())) + 2
    gx = _lattice_span(x0, w, along)
    lattice = _hash_uniform(np.arange(lo, hi)[:, None], gx[None, :], seed, salt)
    # Interpolate along the fibre (x) first: one row per lattice row.
    along_x = lattice[:, : _interp_matrix(along, x0 % along, w, True).shape[1]]
    along_x = along_x @ _interp_matrix(along, x0 % along, w, True).T
    i = np.floor(pos).astype(np.intp)
    t = pos - i
    t = t * t * (3 - 2 * t)
    i -= lo
    a = np.take_along_axis(along_x, i, axis=0)
    b = np.take_along_axis(along_x, i + 1, axis=0)
    return a + (b - a) * t


@functools.cache
def _noise_quantiles() -> np.ndarray:
    """Quantiles ``0, 1/256, ..., 1`` of :func:`_value_noise` values.

    Value noise is not uniform (interpolation pulls values to the middle); thresholds
    at these quantiles give exact area fractions (e.g. a tissue density).
    """
    sample = _value_noise(0, 0, 512, 512, 8, seed=12345, salt=0)
    return np.quantile(sample, np.linspace(0, 1, 257)).astype(np.float32)


def _threshold_for_fraction(fraction: np.ndarray | float) -> np.ndarray:
    """Noise threshold above which a ``fraction`` of value-noise pixels lies."""
    q = _noise_quantiles()
    return np.interp(1.0 - np.asarray(fraction), np.linspace(0, 1, 257), q).astype(np.float32)


# -- layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Low-resolution fields that make the slide's large-scale structure.

    ``fields[k]`` has one value per layout cell; cell ``(i, j)`` sits at pixel
    ``(i * scale, j * scale)`` and values in between are interpolated bilinearly.
    """

    scale: int
    #: (depth, pore threshold, tumor margin, fibre mix, wave, CARS level)
    fields: np.ndarray


_DEPTH, _PORE_T, _TUMOR_M, _MIX_F, _WAVE_F, _CARS_F = range(6)


def _fragments(config: SynthConfig, rng: np.random.Generator):
    """Centres, radii and density of the tissue fragments (large ones first)."""
    h, w = config.size
    short = min(h, w)
    rmin, rmax = config.fragment_radius or (0.015 * short, 0.22 * short)
    area_scale = h * w / float(short * short)
    n_large = config.n_large if config.n_large is not None else max(1, round(3 * area_scale))
    n_small = config.n_small if config.n_small is not None else max(1, round(24 * area_scale))
    radii = np.concatenate(
        [
            rng.uniform(0.55, 1.0, n_large) * rmax,
            np.exp(rng.uniform(np.log(max(rmin, 1.0)), np.log(0.35 * rmax), n_small)),
        ]
    )
    centres = np.zeros((len(radii), 2))
    for k, r in enumerate(radii):
        margin = np.minimum(r * 0.6, [h / 2, w / 2])
        best, best_gap = None, -np.inf
        for _ in range(30):  # keep large fragments apart where the slide allows it
            c = rng.uniform(margin, [h - margin[0], w - margin[1]])
            gap = min(
                (np.hypot(*(c - centres[j])) - r - radii[j] for j in range(k)), default=np.inf
            )
            if gap > best_gap:
                best, best_gap = c, gap
            if gap > 0:
                break
        centres[k] = best
    density = np.concatenate([rng.uniform(0.9, 1.0, n_large), rng.uniform(0.03, 0.12, n_small)])
    return centres, radii, density, n_large


def make_layout(config: SynthConfig) -> Layout:
    """The low-resolution layout of a slide (computed once, a few MB even at 50k)."""
    rng = np.random.default_rng([config.seed, _FRAG])
    s = config.layout_scale
    h, w = config.size
    # Sub-blocks are rendered whole (aligned to BLOCK), so the layout covers their extent.
    gh = -(-h // BLOCK) * BLOCK // s + 3
    gw = -(-w // BLOCK) * BLOCK // s + 3
    centres, radii, density, n_large = _fragments(config, rng)

    depth = np.full((gh, gw), -1e6, dtype=np.float32)  # pixels inside the nearest fragment
    owner = np.full((gh, gw), -1, dtype=np.int64)
    gy = np.arange(gh, dtype=np.float32) * s
    gx = np.arange(gw, dtype=np.float32) * s
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True)):
        # Lobed outline: a few random harmonics of the polar angle.
        harmonics = rng.normal(0, 1, (5, 2)) / np.arange(2, 7)[:, None]
        reach = 1.35 * r
        y_sl = slice(max(0, int((cy - reach) // s)), min(gh, int((cy + reach) // s) + 2))
        x_sl = slice(max(0, int((cx - reach) // s)), min(gw, int((cx + reach) // s) + 2))
        dy = gy[y_sl, None] - cy
        dx = gx[None, x_sl] - cx
        theta = np.arctan2(dy, dx)
        wobble = sum(
            a * np.cos((n + 2) * theta) + b * np.sin((n + 2) * theta)
            for n, (a, b) in enumerate(harmonics)
        )
        d = r * (1 + 0.25 * wobble) - np.hypot(dy, dx)
        better = d > depth[y_sl, x_sl]
        depth[y_sl, x_sl] = np.where(better, d, depth[y_sl, x_sl])
        owner[y_sl, x_sl] = np.where(better, k, owner[y_sl, x_sl])
    owner = np.where(owner < 0, 0, owner)
    fragment_density = density[owner]
    fragment_radius = radii[owner]

    # Sparse rims: density ramps up over the outer 15% of every fragment.
    rim = np.clip(depth / (0.15 * fragment_radius), 0, 1).astype(np.float32)
    rim_density = 0.04
    dens = rim_density + (fragment_density - rim_density) * rim

    # Tumor coverage: at spurious=1 dense interiors are mostly tumor, sparse tissue not.
    sp, f = config.spurious, config.tumor_fraction
    large = owner < n_large
    coverage = np.where(large, (1 - sp) * f + sp * 0.85, (1 - sp) * f + sp * 0.03)
    coverage = coverage * ((1 - sp) + sp * rim)
    # Blobs of tumor: rank-uniformised smooth noise below the local coverage.
    blobs = _value_noise(0, 0, gh, gw, 10, config.seed, _TUMOR)
    u = np.empty(blobs.size, dtype=np.float32)
    u[np.argsort(blobs, axis=None, kind="stable")] = np.linspace(0, 1, blobs.size)
    tumor_margin = coverage - u.reshape(blobs.shape)

    fields = np.stack(
        [
            depth,
            _threshold_for_fraction(np.clip(dens, 0, 1)),
            tumor_margin,
            _value_noise(0, 0, gh, gw, 24, config.seed, _MIX),  # fibre family mix
            (_value_noise(0, 0, gh, gw, 6, config.seed, _WAVE) - 0.5) * 60.0,
            _value_noise(0, 0, gh, gw, 4, config.seed, _CARS),
        ]
    ).astype(np.float32)
    return Layout(scale=s, fields=fields)


# -- tiles -------------------------------------------------------------------------------


def _shears(seed: int) -> tuple[float, float]:
    rng = np.random.default_rng([seed, _FIBRE_A])
    return tuple(float(v) for v in rng.uniform(-0.8, 0.8, 2))  # type: ignore[return-value]


#: Side of the sub-blocks a tile is rendered in, aligned to a global grid: empty ones are
#: skipped, and the pixel noise is seeded per sub-block, so the image does not depend on
#: the chunk size.
BLOCK = 256
_EDGE_AMP = 30.0  # pixels by which the ragged tissue edge strays from the layout outline


def render_tile(
    layout: Layout, config: SynthConfig, y0: int, x0: int, h: int, w: int
) -> np.ndarray:
    """Render pixels ``[y0:y0+h, x0:x0+w]``: ``(4, h, w)`` uint8, the 3 channels + mask.

    A pure function of its arguments: the same pixels are identical wherever, whenever
    and in whatever chunks they are made.
    """
    out = np.empty((4, h, w), dtype=np.uint8)
    with _single_threaded_blas():
        _render_into(out, layout, config, y0, x0, h, w)
    return out


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread while any tile renders in this process.

    Tiles are upsampled with small matrix products on every dask thread; a threaded
    BLAS on top of that oversubscribes the cores (measured 3-5x slower on 2 busy
    cores). BLAS limits are process-wide, so concurrent renderers share one limit:
    the first to start sets it, the last to finish restores the original.
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _render_into(
    out: np.ndarray, layout: Layout, config: SynthConfig, y0: int, x0: int, h: int, w: int
) -> None:
    for by in range((y0 // BLOCK) * BLOCK, y0 + h, BLOCK):
        for bx in range((x0 // BLOCK) * BLOCK, x0 + w, BLOCK):
            ya, yb = max(by, y0), min(by + BLOCK, y0 + h)
            xa, xb = max(bx, x0), min(bx + BLOCK, x0 + w)
            block = _render_block_pixels(layout, config, by, bx)
            out[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = block[
                :, ya - by : yb - by, xa - bx : xb - bx
            ]


def _render_block_pixels(layout: Layout, config: SynthConfig, y0: int, x0: int) -> np.ndarray:
    """One ``BLOCK x BLOCK`` sub-block at a multiple of ``BLOCK``: ``(4, B, B)`` uint8."""
    n = BLOCK
    seed = config.seed
    s = layout.scale
    rng = np.random.default_rng([seed, y0 // n, x0 // n])
    grain = rng.random((3, n, n), dtype=np.float32)
    out = np.empty((4, n, n), dtype=np.uint8)
    # Background: black with a faint detector noise (0-3).
    np.multiply(grain, 4.0, out=out[:3], casting="unsafe")
    out[3] = BACKGROUND

    gy = slice(y0 // s, (y0 + n - 1) // s + 2)
    gx = slice(x0 // s, (x0 + n - 1) // s + 2)
    cells = layout.fields[:, gy, gx]
    if cells[_DEPTH].max() <= -_EDGE_AMP:
        return out  # no tissue can reach this block
    depth, pore_t, tumor_m, mix, wave, cars_level = _upsample(cells, s, y0, x0, n, n, False)

    edge = _value_noise(y0, x0, n, n, 24, seed, _EDGE)
    pores = _value_noise(y0, x0, n, n, 8, seed, _PORE)
    tissue = (depth + (edge - 0.5) * (2 * _EDGE_AMP) > 0) & (pores > pore_t)
    if not tissue.any():
        return out
    tumor = tissue & (tumor_m + (edge - 0.5) * 0.25 > 0)

    # TPEF: nuclei are bright blobs; tumor nuclei are larger and denser.
    nuclei_noise = _value_noise(y0, x0, n, n, 6, seed, _NUCLEI)
    q_healthy, q_tumor = _threshold_for_fraction(np.array([0.08, 0.24]))
    thr = np.where(tumor, q_tumor, q_healthy)
    nuclei = np.clip((nuclei_noise - thr) * np.float32(12.0), 0, 1)

    # SHG: two families of wavy collagen fibres mixed smoothly, rendered at half
    # resolution (fibres are 4 px wide); little collagen in tumor.
    shear_a, shear_b = _shears(seed)
    m = n // 2
    half_wave = wave[::2, ::2] * np.float32(0.5)
    fib_a = _fibres(y0 // 2, x0 // 2, m + 1, m + 1, shear_a, _pad1(half_wave), seed, _FIBRE_A)
    fib_b = _fibres(x0 // 2, y0 // 2, m + 1, m + 1, shear_b, _pad1(half_wave).T, seed, _FIBRE_B)
    mix_half = _pad1(mix[::2, ::2])
    fibres_half = mix_half * fib_a + (1 - mix_half) * fib_b.T
    fibres = _upsample(fibres_half, 2, y0, x0, n, n, smooth=False)
    fibres = np.clip((fibres - 0.55) * np.float32(3.0), 0, 1)
    collagen = np.where(tumor, np.float32(0.12), np.float32(0.9))

    grain -= np.float32(0.5)
    f32 = np.float32
    cars = np.where(tumor, f32(0.40), f32(0.56))
    cars += 0.16 * (cars_level - 0.5) + 0.14 * (edge - 0.5) - 0.14 * nuclei
    tpef = np.where(tumor, f32(0.62), f32(0.48)) * nuclei
    tpef += 0.16 + 0.08 * cars_level
    shg = collagen * fibres
    shg += 0.03
    for c, (signal, floor) in enumerate(((cars, 0.12), (tpef, 0.06), (shg, 0.0))):
        signal += 0.10 * grain[c]
        np.maximum(signal, floor, out=signal)
        signal *= 255.0
        np.clip(signal, 0, 255, out=signal)
        np.copyto(out[c], signal, where=tissue, casting="unsafe")
    out[3][tissue] = HEALTHY
    out[3][tumor] = TUMOR
    return out


def _pad1(a: np.ndarray) -> np.ndarray:
    """``a`` with one more row and column (edge values): the half-resolution margin."""
    return np.pad(a, ((0, 1), (0, 1)), mode="edge")


def _render_block(layout: Layout, config: SynthConfig, block_info=None) -> np.ndarray:
    (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return render_tile(layout, config, y0, x0, y1 - y0, x1 - x0)


def synth_slide(config: SynthConfig | None = None) -> tuple[da.Array, da.Array]:
    """A synthetic slide as lazy dask arrays.

    Parameters
    ----------
    config : SynthConfig, optional
        Size, seed, spurious strength, ...

    Returns
    -------
    image : dask.array.Array
        ``(3, Y, X)`` uint8, channels ``config.channel_names``.
    mask : dask.array.Array
        ``(Y, X)`` uint8: 0 background, 1 healthy, 2 tumor.

    Both come from the same blocks: computing them together renders each chunk once.
    """
    config = config or SynthConfig()
    layout = make_layout(config)
    h, w = config.size
    chunks = ((4,), _chunks(h, config.chunk), _chunks(w, config.chunk))
    both = da.map_blocks(
        _render_block,
        layout,
        config,
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"synth-{tokenize(config)}",
    )
    return both[:3], both[3]


def _chunks(n: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(n, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


# -- writing -----------------------------------------------------------------------------


def default_mask_path(out: str | os.PathLike) -> Path:
    """``<stem>_mask.tif`` beside a TIFF slide, ``<stem>_mask.ome.zarr`` beside a zarr."""
    out = Path(out)
    name = out.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            ext = ".ome.zarr" if "zarr" in suffix else ".tif"
            return out.with_name(f"{stem}_mask{ext}")
    raise PatchwiseError(
        "unknown output type", path=out, hint="name the slide *.ome.tif or *.ome.zarr"
    )


def _phases(progress: ProgressCallback | None, weights: list[float], total: int = 1000):
    """One ``progress`` bar over several phases: phase ``i`` gets ``weights[i]`` of it."""
    bounds = np.concatenate([[0], np.cumsum(weights) / np.sum(weights)])
    shown = [0]

    def phase(i: int) -> ProgressCallback | None:
        if progress is None:
            return None

        def report(done: int, n: int) -> None:
            frac = bounds[i] + (bounds[i + 1] - bounds[i]) * min(1.0, done / max(n, 1))
            # A phase may run several dask computations, each counting from zero.
            value = round(frac * total)
            if value > shown[0] or (value == 0 and shown[0] == 0):
                shown[0] = value
                progress(value, total)

        return report

    return phase


def write_synthetic_slide(
    out: str | os.PathLike,
    mask_out: str | os.PathLike | None = None,
    config: SynthConfig | None = None,
    *,
    tile: int = 512,
    compression_level: int | None = 1,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    artefacts: Sequence[Artefact] = (),
    artefact_patch: int = 64,
) -> tuple[Path, Path]:
    """Write a synthetic slide and its mask as pyramidal OME-TIFF or OME-Zarr.

    The format follows the extension of ``out`` (``.ome.tif``/``.tif`` or ``.ome.zarr``).
    Every chunk is rendered once into a scratch store beside ``out`` (removed at the
    end); the pyramid levels are each computed from the stored level above them, and
    the files are written tile by tile. Memory stays bounded by a few chunks. Slide and
    mask are written to temporaries and renamed into place together at the end, so an
    interrupted run never leaves a new slide beside an old mask.

    Parameters
    ----------
    out : path-like
        The slide.
    mask_out : path-like, optional
        The mask (default :func:`default_mask_path`).
    config : SynthConfig, optional
        What to generate.
    tile : int
        TIFF tile / zarr chunk side.
    compression_level : int, optional
        zlib level of the TIFF tiles: 1 (default) is 2.5x faster than zlib's default 6
        and the files only ~5% larger on these slides; None for zlib's default.
    overwrite : bool
        Replace existing OME-Zarr images (without it an existing store is an error; a
        folder that is not an OME-Zarr image is never replaced). Existing TIFF files are
        always replaced.
    progress : callable, optional
        ``progress(done, total)`` over the whole job.
    artefacts : sequence of Artefact
        Planted artefacts (:mod:`.synth_artefacts`) on a grid of ``artefact_patch``
        squares; their side table ``<slide>.artefacts.parquet`` is written with the slide.
    artefact_patch : int

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The slide and the mask.
    """

    config = config or SynthConfig()
    out = Path(out)
    mask_out = _checked_outputs(out, mask_out, overwrite)
    phase = _phases(progress, [0.55, 0.12 if artefacts else 0.0, 0.12, 0.28, 0.05])
    out.parent.mkdir(parents=True, exist_ok=True)
    targets = [out, mask_out, *([Path(artefacts_path(out))] if artefacts else [])]
    with contextlib.ExitStack() as stack:
        # One BLAS thread for the whole job, set once from this thread: the per-tile
        # limit alone was measured to let BLAS threads spin now and then (10x the CPU).
        stack.enter_context(_single_threaded_blas())
        levels, mask, table = _staged_levels(stack, config, out, phase, artefacts, artefact_patch)
        # All written before any replaces anything: slide, mask and table stay together.
        tmps = stack.enter_context(atomic_paths(targets, replace=OME_ZARR if overwrite else None))
        mask_levels = _mask_levels(mask, levels, config.size[1])
        write = functools.partial(
            _write_pyramid,
            pixel_size=config.pixel_size,
            tile=tile,
            compression_level=compression_level,
        )
        write(tmps[0], levels, list(config.channel_names), progress=phase(3))
        write(tmps[1], mask_levels, None, progress=phase(4))
        if table is not None:
            table.to_parquet(tmps[2], index=False)
    return out, mask_out


def _staged_levels(stack, config, out, phase, artefacts, patch):
    """Render once into scratch stores: the image pyramid, the mask, the artefact table.

    With artefacts, the patch labels come from the stored mask and the artefacts are
    drawn on the stored image, chunk by chunk, into one more scratch store.
    """

    image, mask = synth_slide(config)
    workdir = out.parent
    # Scratch chunks as large as the rendered ones: no rechunking, few zarr chunks.
    stored = stack.enter_context(
        staged_arrays([image, mask], workdir=workdir, chunk=config.chunk, progress=phase(0))
    )
    level0, table = stored[0], None
    if artefacts:
        has_tissue, tumor = patch_classes(stored[1], patch)
        plan = plan_artefacts(artefacts, has_tissue, tumor, config.seed)
        table = plan_table(slide_name(out), plan, has_tissue, tumor)
        drawn = apply_artefacts(stored[0], plan, patch, config.seed)
        (level0,) = stack.enter_context(
            staged_arrays([drawn], workdir=workdir, chunk=config.chunk, progress=phase(1))
        )
    levels = stack.enter_context(staged_pyramid(level0, workdir=workdir, progress=phase(2)))
    return levels, stored[1], table


def synth_with_artefacts(
    config: SynthConfig, artefacts: Sequence[Artefact], patch: int = 64, slide: str = "synth"
):
    """Lazy image, mask and artefact side table of a synthetic slide, in memory.

    The counterpart of ``patchwise synth --artefact`` for tests and notebooks: the mask
    is computed once here for the plan (the writer reads the mask it stored instead).

    Returns
    -------
    image : dask.array.Array
    mask : dask.array.Array
    table : pandas.DataFrame
        ``synth_artefacts.TABLE_COLUMNS``.
    """
    image, mask = synth_slide(config)
    has_tissue, tumor = patch_classes(mask, patch)
    plan = plan_artefacts(artefacts, has_tissue, tumor, config.seed)
    table = plan_table(slide, plan, has_tissue, tumor)
    return apply_artefacts(image, plan, patch, config.seed), mask, table


def _checked_outputs(out: Path, mask_out: str | os.PathLike | None, overwrite: bool) -> Path:
    """Refuse bad output names or existing outputs before any work; return the mask path."""

    mask_out = Path(mask_out) if mask_out is not None else default_mask_path(out)
    for path in (out, mask_out):
        default_mask_path(path)  # validates the extension before any work
    check_output(out, kind=OME_ZARR if _is_zarr(out) else FILE, overwrite=overwrite)
    check_output(
        mask_out,
        inputs=[out],
        kind=OME_ZARR if _is_zarr(mask_out) else FILE,
        overwrite=overwrite,
        role="the slide",
        flag="--mask-out",
    )
    return mask_out


def _mask_levels(mask: da.Array, levels: list[da.Array], width: int) -> list[da.Array]:
    """The mask at every level of the image pyramid ``levels`` (nearest neighbour).

    Every ``f``-th pixel of the stored level-0 mask, cropped to the level's size: labels
    must not be averaged, and slicing the stored mask keeps each level cheap to read.
    """
    out = [mask]
    for level in levels[1:]:
        f = round(width / level.shape[-1])
        out.append(mask[::f, ::f][: level.shape[-2], : level.shape[-1]])
    return out


def _write_pyramid(
    path: Path,
    levels: list[da.Array],
    names: list[str] | None,
    *,
    pixel_size: float,
    tile: int,
    compression_level: int | None,
    progress: ProgressCallback | None,
) -> None:
    """Write ``levels`` as OME-Zarr or OME-TIFF, by ``path``'s extension (mask: no names)."""

    if _is_zarr(path):
        write_ome_zarr(
            path,
            levels,
            channel_names=names,
            pixel_size=pixel_size,
            chunk=tile,
            contrast_limits=None if names is None else [(0, 255)] * 3,
            progress=progress,
        )
    else:
        write_ome_tiff(
            path,
            levels,
            channel_names=names,
            pixel_size=pixel_size,
            tile=tile,
            compression_level=compression_level,
            progress=progress,
        )


def _is_zarr(path: Path) -> bool:
    return path.name.lower().endswith(".zarr")
