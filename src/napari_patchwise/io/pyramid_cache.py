"""Build a display pyramid for a big single-level image once, and reuse it.

A lazily coarsened level still reads all of level 0 to be shown, so for images larger
than :data:`CACHE_MIN_SIDE` the coarser levels are written once as a pyramidal OME-TIFF
(through :func:`napari_patchwise.io.write.write_ome_tiff`, atomically) and read from
there afterwards. The file name carries the image's :func:`~.fingerprint.fingerprint`
(path, inode, size, modification and status-change times), in the cache folder and
beside the image alike, so an image edited in any way gets a new pyramid; an unreadable
or mismatched cache file is rewritten. Level 0 always comes from the image itself.
See ``docs/caches.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import dask.array as da

from .._progress import ProgressCallback
from ..errors import PatchwiseError
from ._loaded import LoadedImage, default_channel_names
from .fingerprint import fingerprint
from .pyramid import build_pyramid, downsample
from .tiff import read_tiff
from .write import staged_arrays, write_ome_tiff

#: Single-level images with a side above this get a cached pyramid.
CACHE_MIN_SIDE = 4096

#: Environment variable overriding the default cache folder.
CACHE_ENV = "PATCHWISE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$PATCHWISE_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-patchwise/pyramids``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-patchwise" / "pyramids"


def cache_file(image: Path, cache: str | os.PathLike | bool | None, method: str = "mean") -> Path:
    """Where the pyramid of ``image`` lives for the ``cache`` option of ``open_slide``.

    The name holds a digest of the image's fingerprint, also beside the image: a fixed
    name there would serve the pyramid of an earlier version of the file.
    """
    kind = "" if method == "mean" else f".{method}"
    digest = hashlib.sha256(fingerprint(image).encode()).hexdigest()[:16]
    if cache == "beside":
        return image.with_name(f"{image.name}.pyramid{kind}-{digest}.ome.tif")
    folder = default_cache_dir() if cache is None or cache is True else Path(cache)
    return folder / f"{image.name}-{digest}{kind}.ome.tif"


def _remove_stale_beside(image: Path, current: Path, method: str) -> None:
    """Delete pyramids of earlier versions of ``image`` written beside it.

    Only files named exactly as :func:`cache_file` names them (``<image>.pyramid-<16
    hex>.ome.tif``, or the unkeyed ``<image>.pyramid.ome.tif`` of earlier versions) are
    touched: they are this cache's own, now unreachable, entries.
    """
    kind = "" if method == "mean" else re.escape(f".{method}")
    name = re.escape(image.name)
    pattern = re.compile(rf"{name}\.pyramid{kind}(-[0-9a-f]{{16}})?\.ome\.tif")
    for sibling in image.parent.iterdir():
        if sibling != current and pattern.fullmatch(sibling.name) and sibling.is_file():
            with contextlib.suppress(OSError):
                sibling.unlink()


def pyramid_for(
    image: Path,
    level0: da.Array,
    loaded: LoadedImage,
    *,
    cache: str | os.PathLike | bool | None = None,
    method: str = "mean",
    progress: ProgressCallback | None = None,
) -> list[da.Array]:
    """Display pyramid ``[level0, ...]`` for a single-level image.

    Small images (and ``cache=False``) get the lazy :func:`build_pyramid`; big ones the
    cached pyramid, written first if it is missing or unreadable. ``method`` is
    ``"mean"`` for images and ``"nearest"`` for label images.
    """
    if cache is False or max(level0.shape[-2:]) <= CACHE_MIN_SIDE:
        return build_pyramid(level0, method=method)
    target = cache_file(image, cache, method)
    levels = _read_cached(target, level0)
    if levels is None:
        names = loaded.channel_names or default_channel_names(int(level0.shape[0]))
        pixel = None if loaded.pixel_size is None else tuple(2 * s for s in loaded.pixel_size)
        try:
            write_pyramid(
                target,
                level0,
                channel_names=names,
                pixel_size=pixel,
                method=method,
                progress=progress,
            )
        except OSError as exc:
            raise PatchwiseError(
                f"cannot write the display pyramid to {target} ({exc.strerror or exc})",
                path=image,
                hint=f"pass another pyramid cache folder or set {CACHE_ENV}",
            ) from None
        if cache == "beside":
            _remove_stale_beside(image, target, method)
        levels = _read_cached(target, level0)
        if levels is None:  # pragma: no cover - the writer just produced it
            raise PatchwiseError(f"the pyramid written to {target} is unreadable", path=image)
    return [level0, *levels]


def _read_cached(target: Path, level0: da.Array) -> list[da.Array] | None:
    """The cached levels 1.. if ``target`` holds a pyramid that fits ``level0``."""
    if not target.is_file():
        return None

    try:
        levels = read_tiff(target).levels
    except PatchwiseError:
        return None
    c, y, x = level0.shape
    first = levels[0].shape
    if first != (c, y // 2, x // 2) or levels[0].dtype != level0.dtype:
        return None
    return levels


def write_pyramid(
    target: Path,
    level0: da.Array,
    *,
    channel_names: list[str],
    pixel_size: tuple[float, float] | None,
    method: str = "mean",
    progress: ProgressCallback | None = None,
) -> None:
    """Write levels 1.. of ``level0``'s pyramid to ``target`` as a pyramidal OME-TIFF."""

    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_pyramid(level0, workdir=target.parent, method=method, progress=progress) as levels:
        write_ome_tiff(
            target,
            levels[1:],
            channel_names=list(channel_names),
            pixel_size=pixel_size,
            progress=progress,
        )


@contextlib.contextmanager
def staged_pyramid(
    level0: da.Array,
    *,
    workdir: str | os.PathLike | None = None,
    min_size: int = 256,
    method: str = "mean",
    progress: ProgressCallback | None = None,
) -> Iterator[list[da.Array]]:
    """Pyramid of ``level0`` whose coarser levels are each computed once.

    :func:`build_pyramid` chains lazy downsamplings, so writing level ``k`` re-reads
    level 0 and re-computes levels ``1..k-1``; writing a whole pyramid that way reads
    level 0 once per level. Here each level is computed from the previous *stored*
    level into a scratch store (:func:`~napari_patchwise.io.write.staged_arrays`,
    removed on exit), so level 0 is read once and each coarser level once more.

    Yields
    ------
    list of dask.array.Array
        ``[level0, level1, ...]``, levels 1.. backed by the scratch stores.
    """

    n_levels = len(build_pyramid(level0, min_size=min_size, method=method))
    with contextlib.ExitStack() as stack:
        levels = [level0]
        for _ in range(1, n_levels):
            small = downsample(levels[-1], method=method)
            scratch = staged_arrays([small], workdir=workdir, progress=progress)
            levels += stack.enter_context(scratch)
        yield levels
