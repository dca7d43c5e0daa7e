"""What a format reader hands back to :func:`napari_patchwise.io.open_slide`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

# OME length units (OME-XML symbols and OME-Zarr names) -> micrometres.
UNIT_TO_UM = {
    "pm": 1e-6,
    "nm": 1e-3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "picometer": 1e-6,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}


@dataclass
class LoadedImage:
    """Lazy levels ``(C, Y, X)`` (level 0 first) and whatever metadata the file had.

    ``None`` metadata means the file did not say; ``open_slide`` fills in options or
    defaults.
    """

    levels: list[da.Array]
    channel_names: list[str] | None = None
    pixel_size: tuple[float, float] | None = None
    contrast_limits: tuple[tuple[float, float], ...] | None = None
    #: ``"bright"`` for brightfield slides (vendor WSI readers); ``None``: not known.
    background: str | None = None
    objective_power: float | None = None
    #: Associated images (``label``, ``macro``, ``thumbnail``): name -> RGB reader.
    associated: dict[str, Callable[[], np.ndarray]] = field(default_factory=dict)
    #: The scanner format as the reading library names it (``aperio``, ``dicom`` ...).
    vendor: str | None = None


def default_channel_names(n: int) -> list[str]:
    """``channel_0``, ``channel_1``, ... for files without channel names."""
    return [f"channel_{i}" for i in range(n)]
