"""The :class:`Slide`: a lazy multiscale multimodal image with its optional mask.

Every reader in :mod:`napari_patchwise.io` returns a ``Slide``. Nothing here ever
computes a full-resolution level: levels are dask arrays read chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import dask.array as da
import numpy as np

# Pixel classes of a mapped mask (see ``io.mask``).
BACKGROUND, HEALTHY, TUMOR = 0, 1, 2
CLASS_NAMES = {BACKGROUND: "background", HEALTHY: "healthy", TUMOR: "tumor"}


@dataclass(frozen=True)
class Slide:
    """A multiscale multimodal image.

    Attributes
    ----------
    levels : tuple of dask.array.Array
        Pyramid, level 0 (full resolution) first; each level is ``(C, Y, X)``.
        Every level's size is level 0's divided (rounding down or up) by an integer factor.
    channel_names : tuple of str
        One name per channel (modality), e.g. ``("CARS", "TPEF", "SHG")``.
    pixel_size : tuple of float or None
        Physical ``(y, x)`` size of a level-0 pixel in micrometres, if known.
    name : str
        Slide identifier (the file stem by default); the ``slide`` column of patch tables.
    path : pathlib.Path or None
        The file or store the slide was read from.
    mask : dask.array.Array or None
        Class mask ``(Y / f, X / f)`` with values ``BACKGROUND``, ``HEALTHY``, ``TUMOR``
        already mapped from the file's values (see ``io.mask.MaskMap``); ``None`` if absent.
    mask_factor : int
        ``f`` above: how many level-0 pixels one mask pixel covers along each axis.
    mask_kind : str
        ``"3class"`` (tissue known from the mask) or ``"binary"`` (only tumor / non-tumor
        known: healthy tissue must come from intensity; non-tumor pixels are ``BACKGROUND``).
    mask_path : pathlib.Path or None
        Where the mask was read from.
    contrast_limits : tuple of (float, float) or None
        Display range per channel (from metadata or a low-resolution level).
    background : {"dark", "bright"}
        The image background intensity tissue is told from by default: ``"bright"``
        for brightfield whole-slide images (OpenSlide / DICOM readers), else ``"dark"``.
    objective_power : float or None
        Scanning objective magnification from the file's metadata (e.g. ``40``).
    associated : mapping of str to callable
        The file's associated images (``label``, ``macro``, ``thumbnail``): each
        callable reads that image as an ``(Y, X, 3)`` RGB array.
    vendor : str or None
        Scanner format as its reading library names it (``aperio``, ``dicom``, ...).
    """

    levels: tuple[da.Array, ...]
    channel_names: tuple[str, ...]
    pixel_size: tuple[float, float] | None = None
    name: str = "slide"
    path: Path | None = None
    mask: da.Array | None = None
    mask_factor: int = 1
    mask_kind: str = "3class"
    mask_path: Path | None = None
    contrast_limits: tuple[tuple[float, float], ...] | None = field(default=None)
    background: str = "dark"
    objective_power: float | None = None
    associated: Mapping[str, Callable[[], np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False
    )
    vendor: str | None = None

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a Slide needs at least one level")
        for level in self.levels:
            if level.ndim != 3:
                raise ValueError(f"levels must be (C, Y, X); got shape {level.shape}")
        if len(self.channel_names) != self.levels[0].shape[0]:
            raise ValueError(
                f"{len(self.channel_names)} channel names for {self.levels[0].shape[0]} channels"
            )

    # -- geometry ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, Y, X)`` of level 0."""
        return tuple(int(s) for s in self.levels[0].shape)  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    @property
    def downsamples(self) -> tuple[int, ...]:
        """Integer downsampling factor of each level relative to level 0."""
        y0 = self.levels[0].shape[1]
        return tuple(max(1, round(y0 / lvl.shape[1])) for lvl in self.levels)

    def with_mask(
        self,
        mask: da.Array,
        *,
        factor: int = 1,
        kind: str = "3class",
        path: Path | None = None,
    ) -> Slide:
        """Return a copy of this slide carrying ``mask`` (already mapped to classes)."""
        return replace(self, mask=mask, mask_factor=factor, mask_kind=kind, mask_path=path)

    def display_contrast_limits(self) -> tuple[tuple[float, float], ...]:
        """Per-channel display range: from metadata, else percentiles of the smallest level.

        Reads only the smallest pyramid level (napari would otherwise guess from the
        first tile it loads, which for dask data is often wrong).
        """
        if self.contrast_limits is not None:
            return self.contrast_limits
        small = np.asarray(self.levels[-1].compute())
        limits = []
        for c in range(small.shape[0]):
            values = small[c].ravel()
            lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.8]))
            if hi <= lo:
                hi = lo + 1.0
            limits.append((lo, hi))
        return tuple(limits)
