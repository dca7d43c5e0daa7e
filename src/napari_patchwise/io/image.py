"""PNG and JPEG: small images read whole (they fit in memory by nature)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np

from ..errors import PatchwiseError
from ._loaded import LoadedImage

#: Refuse decoding more pixels than this (a PNG/JPEG this big should be converted).
MAX_PIXELS = 20_000 * 20_000


def read_image(path: str | Path, *, labels: bool = False) -> LoadedImage:
    """Read a PNG or JPEG as one ``(C, Y, X)`` level.

    Gray images have one channel; RGB(A) images are named ``R, G, B`` and lose alpha.
    A palette image shows its colours, or with ``labels=True`` (a mask) its indices:
    masks drawn in a paint program are often palette PNGs whose indices are the classes.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise PatchwiseError(
                    f"{im.width} x {im.height} is too large for a PNG/JPEG reader",
                    path=path,
                    hint="convert it to a tiled pyramidal OME-TIFF",
                )
            mode = im.mode
            keep_indices = labels and mode == "P"  # a mask's palette indices are its labels
            if mode in ("P", "PA") and not keep_indices:  # palette: map to real colours
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            elif mode in ("LA",):
                im = im.convert("L")
            elif mode in ("CMYK", "YCbCr", "HSV", "LAB", "RGBX"):
                im = im.convert("RGB")
            pixels = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PatchwiseError(
            f"not a readable PNG/JPEG ({' '.join(str(exc).split())})",
            path=path,
            hint="the file may be truncated or corrupt; re-export it",
        ) from None
    if pixels.ndim == 2:
        cyx, names = pixels[None], None
    else:
        cyx = np.moveaxis(pixels[..., :3], -1, 0)  # drop alpha
        names = ["R", "G", "B"]
    level = da.from_array(np.ascontiguousarray(cyx), chunks=(cyx.shape[0], 1024, 1024))
    return LoadedImage(levels=[level], channel_names=names)
