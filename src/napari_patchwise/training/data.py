"""Patch data for training: the cohort's patch tables, an on-disk patch cache, datasets.

Pipeline
--------
manifest (:mod:`.cohort`) -> per slide: the patch table (:func:`grid.patch_stats`) and a
patch cache -> :class:`PatchDataset` per split, returning ``(patch, label, group)``.

The patch cache
---------------
Reading patches at random positions from a compressed, tiled slide is slow. So each
slide's patches are copied ONCE, a row-band of patches at a time (memory bounded by one
band), into a ``.npy`` file ``(N, M, h, w)`` in the slide's own dtype, next to its
(tau-independent) patch table. Both are keyed by the fingerprints of the slide and mask
files (:func:`~napari_patchwise.io.fingerprint.fingerprint`: inode, size, modification and
status-change times of the file or of every file of a zarr store), the slide id and every
patch setting (grid, tissue, mask map), so they are reused across runs and rebuilt when
anything they depend on changes, even a file edited in place with its modification time
set back. File names are the slide id reduced to safe characters plus the key. An entry
that cannot be read back (truncated, foreign) is rebuilt. Details and costs:
``docs/caches.md``. Epochs then read memory-mapped patches at disk speed.

Groups depend on the attribute and its threshold (``tissue_ratio`` and ``tau`` by
default) and are computed when the dataset is built, never cached. An attribute that is
not a ``patch_stats`` column (``mean_<channel>``, ``border_fraction``... from
:mod:`.attributes`) is computed once per slide and cached beside its table.

torch is imported inside functions only: the datasets are plain map-style objects that
``torch.utils.data.DataLoader`` accepts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path, user_os_error
from .._progress import ProgressCallback
from ..cohort.manifest import CohortEntry, read_manifest
from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE, attribute_values, group_ids
from ..io import open_slide
from ..io.fingerprint import fingerprint
from ..io.mask import MaskMap, as_mask_map
from ..patches.attributes import attribute_columns, column_kind, patch_attributes
from ..patches.table import (
    PatchTable,
    build_patch_table,
    read_table_metadata,
    resolved_settings,
    settings_grid,
    write_patch_table,
)
from ..schema import TABLE_COLUMNS
from ..settings import PatchSettings
from ..slide import Slide
from .samplers import (  # noqa: F401  (re-exported: the samplers are part of the data API)
    BatchSampler,
    ClassBalancedSampler,
    GerneSampler,
    GroupWeightedSampler,
    UniformSampler,
)

log = logging.getLogger(__name__)

# Bump whenever the meaning of a cached table or patch changes (reader, mask semantics,
# patch statistics): every entry of an older version is then rebuilt.
CACHE_VERSION = 3
# Widest region (level-0 pixels) read at once when copying a band of patches.
BAND_MAX_WIDTH = 8192


@dataclass
class SlidePatches:
    """One slide's patch table and the path of its patch cache."""

    entry: CohortEntry
    table: pd.DataFrame
    cache: Path
    channels: int
    dtype: str


@dataclass
class Cohort:
    """The slides of each split, ready to become datasets."""

    splits: dict[str, list[SlidePatches]] = field(default_factory=dict)

    def table(self, split: str) -> pd.DataFrame:
        """Concatenated patch table of a split (empty if the split has no slides)."""
        parts = [s.table for s in self.splits.get(split, [])]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    @property
    def channels(self) -> int:
        return next(s.channels for slides in self.splits.values() for s in slides)


# -- reading patches from a slide -----------------------------------------------------------
def iter_patch_bands(
    slide: Slide, table: pd.DataFrame, *, patch_size: int, max_width: int = BAND_MAX_WIDTH
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read a table's patches from level 0, one row-band (and column block) at a time.

    Parameters
    ----------
    slide : Slide
        The slide the table describes.
    table : DataFrame
        Patch table with ``y``, ``x``, ``height``, ``width`` (level-0 pixels).
    patch_size : int
        Side of the returned patches; edge patches smaller than that are zero-padded.
    max_width : int
        Widest region read at once; memory is bounded by ``M * patch_size * max_width``.

    Yields
    ------
    positions : int array (n,)
        Row positions (0-based) in ``table`` of the patches of this block.
    patches : array (n, M, patch_size, patch_size)
        Their pixels, in the slide's dtype.
    """
    level0 = slide.levels[0]
    n_channels = level0.shape[0]
    ys = table["y"].to_numpy(np.int64)
    xs = table["x"].to_numpy(np.int64)
    hs = table["height"].to_numpy(np.int64)
    ws = table["width"].to_numpy(np.int64)
    order = np.lexsort((xs, ys))
    band_starts = np.flatnonzero(np.r_[True, np.diff(ys[order]) != 0])
    band_ends = np.r_[band_starts[1:], len(order)]
    for b0, b1 in zip(band_starts, band_ends, strict=True):
        band = order[b0:b1]
        block_start = 0
        while block_start < len(band):
            x0 = xs[band[block_start]]
            block_end = block_start
            while block_end < len(band) and xs[band[block_end]] + ws[band[block_end]] - x0 <= max(
                max_width, patch_size
            ):
                block_end += 1
            members = band[block_start:block_end]
            y0 = int(ys[members[0]])
            x1 = int((xs[members] + ws[members]).max())
            y1 = int((ys[members] + hs[members]).max())
            region = np.asarray(level0[:, y0:y1, int(x0) : x1].compute())
            out = np.zeros((len(members), n_channels, patch_size, patch_size), dtype=region.dtype)
            for k, i in enumerate(members):
                dy, dx = int(ys[i] - y0), int(xs[i] - x0)
                out[k, :, : hs[i], : ws[i]] = region[:, dy : dy + hs[i], dx : dx + ws[i]]
            yield members, out
            block_start = block_end


def _cache_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "ui" and dtype.itemsize <= 2 else np.dtype(np.float32)


def build_patch_cache(
    slide: Slide,
    table: pd.DataFrame,
    target: str | os.PathLike,
    *,
    patch_size: int,
    progress: ProgressCallback | None = None,
) -> Path:
    """Copy every patch of ``table`` into a ``.npy`` file ``(N, M, h, w)``, band by band.

    Written atomically: an interrupted build leaves no cache behind.
    """
    target = Path(target)
    n = len(table)
    shape = (n, slide.n_channels, patch_size, patch_size)
    dtype = _cache_dtype(slide.dtype)
    total_bands = int(table["y"].nunique()) if n else 0
    with atomic_path(target, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        done_rows: set[int] = set()
        for positions, patches in iter_patch_bands(slide, table, patch_size=patch_size):
            out[positions] = patches.astype(dtype, copy=False)
            if progress is not None:
                done_rows.add(int(table["y"].iat[int(positions[0])]))
                progress(len(done_rows), total_bands)
        out.flush()
        del out
    return target


def _file_key(path: Path) -> list:
    return [str(path.resolve()), fingerprint(path)]


def cache_key(entry: CohortEntry, settings: PatchSettings) -> str:
    """Hash of everything the cached table and patches depend on.

    The image and mask fingerprints, the slide id (it is the table's ``slide`` column)
    and every field of ``settings`` (grid, tissue source, mask map).
    """
    payload = {
        "version": CACHE_VERSION,
        "image": _file_key(entry.image),
        "mask": _file_key(entry.mask),
        "slide": entry.slide,
        "settings": {**asdict(settings), "mask_map": _canonical_map(settings.mask_map)},
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _canonical_map(mask_map: str | None) -> str:
    """One spelling per map (``None``, ``"default"`` and the spec are the same map)."""

    return str(as_mask_map(mask_map) or MaskMap.default())


# Characters kept from a slide id in a cache file name; anything else becomes "_".
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_MAX = 64  # characters kept from the id: names stay far below file-system limits


def cache_stem(slide: str, key: str) -> str:
    """File-name stem ``<safe id>-<key>`` of a slide's cache entries.

    The slide id is free text (a manifest column); only letters, digits, ``_``, ``.``
    and ``-`` are kept, never a leading dot (no hidden file, no ``..``), at most
    :data:`_NAME_MAX` characters. ``key`` hashes the original id, so two ids that reduce
    to the same text still get different names.
    """
    safe = _UNSAFE_NAME.sub("_", slide)[:_NAME_MAX].lstrip(".") or "slide"
    return f"{safe}-{key}"


def _cached_table(path: Path, n_patches: int, slide: str) -> PatchTable | None:
    """The patch table stored at ``path`` with its recorded grid and settings, or None if
    it is missing, not a whole table or records none (then it is rebuilt)."""

    if not path.is_file():
        return None
    try:
        frame, recorded = pd.read_parquet(path), read_table_metadata(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        log.warning("rebuilding the unreadable patch table %s (%s)", path, exc)
        return None
    if (
        len(frame) != n_patches
        or not set(TABLE_COLUMNS) <= set(frame.columns)
        or recorded is None
        or recorded[1] is None
    ):
        log.warning("rebuilding the patch table %s: it does not match the slide", path)
        return None
    return PatchTable(frame, recorded[0], recorded[1], slide)


def _cached_patches_ok(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``path`` is a readable ``.npy`` of the expected shape and dtype."""
    if not path.is_file():
        return False
    try:
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated, empty or not an .npy
        log.warning("rebuilding the unreadable patch cache %s (%s)", path, exc)
        return False
    ok = stored.shape == shape and stored.dtype == dtype
    del stored  # close the memory map before the file may be replaced
    if not ok:
        log.warning("rebuilding the patch cache %s: it does not match the table", path)
    return ok


def cached_patch_table(
    entry: CohortEntry,
    settings: PatchSettings,
    cache_dir: str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    store_optional: bool = False,
) -> tuple[Slide, PatchTable, bool]:
    """One slide's (tau-independent) patch table, from the cache or computed and cached.

    The table part of :func:`slide_patches`, shared with the viewer's cohort browser, so
    a table counted there is the one training reuses and vice versa: the key is made of
    the settings with ``background=None`` resolved to the slide's own
    (:func:`~napari_patchwise.patches.table.resolved_settings`), so an explicit background
    equal to the slide's and ``None`` share one entry. ``progress`` follows
    :func:`~napari_patchwise.patches.table.build_patch_table` when the table is computed.
    With ``store_optional`` a cache folder that cannot be written (a read-only share) is
    logged and the computed table returned; training needs the cache and raises.

    Returns
    -------
    slide : Slide
        Level 0 only (no display pyramid), named by the slide id.
    table : PatchTable
        Its patch table, as read back from the cache file, with its grid and (resolved)
        settings.
    fresh : bool
        Whether the table was computed now (not reused).
    """

    # Level 0 only (no display pyramid is built or written); the mask's values are
    # checked in the pass that counts them.
    slide = open_slide(
        entry.image,
        mask=entry.mask,
        mask_map=settings.mask_map,
        pyramid=False,
        check_mask_values=False,
    )
    slide = replace(slide, name=entry.slide)
    settings = resolved_settings(settings, slide)
    table_path = Path(cache_dir) / f"{cache_stem(entry.slide, cache_key(entry, settings))}.parquet"
    grid = settings_grid(settings)
    # A slide with no patch (smaller than one) is refused, not silently left out.
    n_rows, n_cols = grid.check_fits(*slide.levels[0].shape[-2:], path=entry.image)
    table = _cached_table(table_path, n_rows * n_cols, slide.name)
    if table is not None:
        return slide, table, False
    table = build_patch_table(slide, settings, progress=progress)
    try:
        write_patch_table(table, table_path)  # atomically
    except OSError as exc:
        if not store_optional:
            raise
        log.warning("patch table of %s not cached in %s (%s)", entry.slide, cache_dir, exc)
        return slide, table, True
    # the same dtypes as when it is reused
    return slide, _cached_table(table_path, n_rows * n_cols, slide.name), True


def slide_patches(
    entry: CohortEntry,
    settings: PatchSettings,
    cache_dir: str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    attribute: str = DEFAULT_ATTRIBUTE,
    slide_index: int = 0,
) -> SlidePatches:
    """:func:`_slide_patches`, with a cache folder that cannot be written (a file, a
    read-only share, a full disk) one :class:`PatchwiseError` that says to pass
    ``--cache-dir``."""
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():  # before any work
        raise _cache_error(FileExistsError(17, "File exists", str(cache_dir)), cache_dir)
    try:
        return _slide_patches(
            entry,
            settings,
            cache_dir,
            progress=progress,
            attribute=attribute,
            slide_index=slide_index,
        )
    except OSError as exc:
        raise _cache_error(exc, cache_dir) from exc


def _cache_error(exc: OSError, cache_dir: Path) -> OSError | PatchwiseError:
    """The patch cache's own problem as one line with what to do; other errors as they are."""

    exc = user_os_error(exc, [])
    if exc.filename is None:
        return exc
    name, folder = Path(exc.filename).absolute(), cache_dir.absolute()
    if not (name == folder or folder in name.parents or name in folder.parents):
        return exc  # not the cache's (e.g. an unreadable slide)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) or not (name.is_dir() or not name.exists()):
        return PatchwiseError(
            f"{exc.filename} is a file, not a folder: the patch cache cannot go there",
            path=cache_dir,
            hint="give --cache-dir a folder",
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what, hint = "no space left for the patch cache", "free some, or pass --cache-dir DIR"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"cannot write the patch cache ({exc.strerror})"
        hint = "pass --cache-dir DIR, a folder you can write to (e.g. on a local disk)"
    else:
        return exc
    return PatchwiseError(
        what,
        path=cache_dir,
        hint=f"{hint} (by default the cache is .patchwise-cache beside the manifest or image)",
    )


def _slide_patches(
    entry: CohortEntry,
    settings: PatchSettings,
    cache_dir: str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    attribute: str = DEFAULT_ATTRIBUTE,
    slide_index: int = 0,
) -> SlidePatches:
    """The patch table and patch cache of one slide, computed once and then reused.

    Entries that are missing, unreadable or of the wrong size are (re)built; each file
    is written atomically, so an interrupt leaves either the old entry or none. An
    ``attribute`` that ``patch_stats`` does not write is added to the table
    (:func:`_with_attribute`); ``slide_index`` is the slide's position in the manifest.
    """
    cache_dir = Path(cache_dir)
    slide, patch_table, fresh_table = cached_patch_table(entry, settings, cache_dir)
    key = cache_key(entry, patch_table.settings)
    stem = cache_stem(entry.slide, key)
    patches_path = cache_dir / f"{stem}.npy"
    table_path = cache_dir / f"{stem}.parquet"
    table = _with_attribute(patch_table, slide, attribute, slide_index, table_path)
    dtype = _cache_dtype(slide.dtype)
    shape = (len(table), slide.n_channels, settings.patch_size, settings.patch_size)
    # A new table means the old patches (if any) were not cut from it: rebuild them too.
    if fresh_table or not _cached_patches_ok(patches_path, shape, dtype):
        build_patch_cache(
            slide, table, patches_path, patch_size=settings.patch_size, progress=progress
        )
    return SlidePatches(entry, table, patches_path, slide.n_channels, str(dtype))


def _with_attribute(table, slide, attribute, slide_index, table_path) -> pd.DataFrame:
    """``table``'s frame with the extra ``attribute`` column (docs/attributes.md), cached
    per kind.

    Intensity and border attributes cost a pass over level 0, so they are written once
    beside the slide's cached table (same key) as ``<stem>.<kind>.parquet``; training
    uses the default border margin. They lie on the table's own grid, with its settings.
    """

    frame = table.frame
    kind = column_kind(attribute, slide.channel_names)
    if kind is None:
        return frame
    if kind == "slide":
        attrs = patch_attributes(slide, table.grid, [kind], slide_index=slide_index)
    else:
        path = table_path.with_name(table_path.name.replace(".parquet", f".{kind}.parquet"))
        attrs = _cached_attributes(path, attribute_columns([kind], slide.channel_names), len(frame))
        if attrs is None:
            settings = table.settings
            attrs = patch_attributes(
                slide,
                table.grid,
                [kind],
                tissue=settings.tissue,
                tissue_threshold=settings.tissue_threshold,
                background=settings.background,
            )
            with atomic_path(path) as tmp:
                attrs.to_parquet(tmp, index=False)
    return pd.concat([frame.reset_index(drop=True), attrs.reset_index(drop=True)], axis=1)


def _cached_attributes(path: Path, columns, n_patches: int) -> pd.DataFrame | None:
    """Attribute columns stored at ``path``, or None if missing, unreadable or not whole."""
    if not path.is_file():
        return None
    try:
        attrs = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        log.warning("rebuilding the unreadable attribute table %s (%s)", path, exc)
        return None
    if len(attrs) != n_patches or list(attrs.columns) != list(columns):
        log.warning("rebuilding the attribute table %s: it does not match the slide", path)
        return None
    return attrs


def load_cohort(
    manifest: str | os.PathLike,
    settings: PatchSettings,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    attribute: str = DEFAULT_ATTRIBUTE,
) -> Cohort:
    """Read a manifest and prepare every slide's patch table and cache.

    ``cache_dir`` defaults to ``.patchwise-cache`` beside the manifest. ``progress`` is
    called with ``(slides done, slides)`` and, while a cache is built, fractions of a slide
    are reported as the patch bands are copied. ``attribute`` (the spurious attribute of
    the groups) is added to the tables when ``patch_stats`` does not write it; the
    ``slide_index`` of a slide is its 0-based row in the manifest.
    """
    entries = read_manifest(manifest)
    cache_dir = Path(manifest).parent / ".patchwise-cache" if cache_dir is None else Path(cache_dir)
    cohort = Cohort()
    scale = 1000  # progress units per slide, so band progress shows within a slide
    total = scale * len(entries)
    for i, entry in enumerate(entries):

        def slide_progress(done: int, n: int, _i: int = i) -> None:
            if progress is not None and n:
                progress(_i * scale + (scale * done) // n, total)

        patches = slide_patches(
            entry,
            settings,
            cache_dir,
            progress=slide_progress,
            attribute=attribute,
            slide_index=i,
        )
        cohort.splits.setdefault(entry.split, []).append(patches)
        if progress is not None:
            progress((i + 1) * scale, total)
    channels = {s.channels for slides in cohort.splits.values() for s in slides}
    if len(channels) > 1:
        raise PatchwiseError(
            f"slides have different numbers of channels {sorted(channels)}",
            path=manifest,
            hint="a model takes one fixed set of modalities",
        )
    _check_training_tumor(cohort, settings, manifest)
    return cohort


def _check_training_tumor(cohort: Cohort, settings: PatchSettings, manifest) -> None:
    """Refuse a training split without one tumor patch: usually the wrong mask map."""

    train = cohort.splits.get("train", [])
    if train and not any(int(s.table["label"].sum()) for s in train):
        spec = as_mask_map(settings.mask_map) or MaskMap.default()
        raise PatchwiseError(
            f"no tumor patch in any training slide under the mask map {spec}",
            path=manifest,
            hint="if your masks mark tumor with 1 (or 255), pass --mask-map binary "
            "(or binary255); see docs/numbers.md",
        )


# -- normalisation -----------------------------------------------------------------------
def channel_stats(
    caches: Sequence[str | os.PathLike], chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the patches of the given caches.

    Streams through the memory-mapped caches ``chunk`` patches at a time (float64 sums).
    """
    total = s1 = s2 = None
    for path in caches:
        arr = np.load(path, mmap_mode="r")
        for start in range(0, len(arr), chunk):
            block = np.asarray(arr[start : start + chunk], dtype=np.float64)
            if s1 is None:
                s1 = np.zeros(block.shape[1])
                s2 = np.zeros(block.shape[1])
                total = 0
            s1 += block.sum(axis=(0, 2, 3))
            s2 += np.square(block).sum(axis=(0, 2, 3))
            total += block.shape[0] * block.shape[2] * block.shape[3]
    if not total:
        raise PatchwiseError("no training patches to compute the normalisation from")
    mean = s1 / total
    std = np.sqrt(np.maximum(s2 / total - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


# -- datasets --------------------------------------------------------------------------
def augment(patches: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rotate each patch ``code % 4`` quarter turns, then flip left-right if ``code >= 4``.

    The 8 codes are the dihedral group of the square: the orientations a patch of tissue
    may have. ``patches`` is ``(n, M, h, w)`` with ``h == w``.
    """
    out = patches.copy()
    for code in np.unique(codes):
        sel = codes == code
        block = np.rot90(patches[sel], k=int(code) % 4, axes=(2, 3))
        if code >= 4:
            block = block[..., ::-1]
        out[sel] = block
    return out


class PatchDataset:
    """Map-style dataset over the cached patches of some slides.

    ``dataset[i]`` is ``(patch float tensor (M, h, w), label, group)``.
    ``dataset.__getitems__(request)`` reads a whole batch at once (what the DataLoader
    calls): ``request`` is a list of indices or an ``(n, 2)`` array of (index,
    augmentation code) as produced by :meth:`BatchSampler.requests`; it returns
    ``(x (n, M, h, w) float32, y int64, group int64)`` tensors.

    Parameters
    ----------
    caches : sequence of path-like
        One ``.npy`` patch cache per slide, in the order of ``table``'s rows.
    table : DataFrame
        Concatenated patch tables (``label`` and the ``attribute`` column).
    threshold : float
        Threshold of the attribute for the groups (tau for ``tissue_ratio``).
    mean, std : arrays (M,)
        Per-channel normalisation.
    attribute : str
        The spurious attribute's column (default ``tissue_ratio``).
    """

    def __init__(
        self,
        caches,
        table: pd.DataFrame,
        threshold: float,
        mean,
        std,
        attribute: str = DEFAULT_ATTRIBUTE,
    ):
        self.caches = [str(p) for p in caches]
        self._set_groups(table, threshold, attribute)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self._arrays = None
        lengths = [int(np.load(p, mmap_mode="r").shape[0]) for p in self.caches]
        if sum(lengths) != len(self.labels):
            raise PatchwiseError(
                f"patch caches hold {sum(lengths)} patches but the tables {len(self.labels)}",
                hint="delete the .patchwise-cache folder to rebuild it",
            )
        self.offsets = np.cumsum([0, *lengths])

    def _set_groups(
        self, table: pd.DataFrame, threshold: float, attribute: str = DEFAULT_ATTRIBUTE
    ) -> None:
        """Labels and groups of the rows: the grouping every training dataset uses
        (:class:`~napari_patchwise.training.head.FeatureDataset` too), that of
        :func:`~napari_patchwise.groups.table_group_ids` from the checked column."""
        self.labels = table["label"].to_numpy(np.int64)
        self.attribute = str(attribute)
        self.attribute_values = attribute_values(table, self.attribute)
        self.groups = group_ids(self.labels, self.attribute_values, threshold).astype(np.int64)
        self.threshold = float(threshold)

    def __getstate__(self):  # worker processes reopen the memory maps themselves
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def _open(self) -> list[np.ndarray]:
        if self._arrays is None:
            self._arrays = [np.load(p, mmap_mode="r") for p in self.caches]
        return self._arrays

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Raw cached patches ``(n, M, h, w)`` of the given global indices."""
        arrays = self._open()
        indices = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        first = arrays[0]
        out = np.empty((len(indices), *first.shape[1:]), dtype=first.dtype)
        for s in np.unique(which):
            sel = which == s
            local = indices[sel] - self.offsets[s]
            # sorted reads are sequential on disk; scatter back to the requested order
            order = np.argsort(local, kind="stable")
            block = arrays[s][local[order]]
            out[np.flatnonzero(sel)[order]] = block
        return out

    def __getitems__(self, request):
        import torch

        request = np.asarray(request, dtype=np.int64)
        if request.ndim == 1:
            request = np.stack([request, np.zeros_like(request)], axis=1)
        indices, codes = request[:, 0], request[:, 1]
        raw = self.read(indices)
        if codes.any():
            raw = augment(raw, codes)
        x = torch.from_numpy(np.ascontiguousarray(raw).astype(np.float32))
        x = (x - torch.from_numpy(self.mean)[:, None, None]) / torch.from_numpy(self.std)[
            :, None, None
        ]
        return (
            x,
            torch.from_numpy(self.labels[indices].copy()),
            torch.from_numpy(self.groups[indices].copy()),
        )

    def __getitem__(self, i: int):
        x, y, g = self.__getitems__([int(i)])
        return x[0], int(y[0]), int(g[0])


def identity_collate(batch):
    """``collate_fn`` for :meth:`PatchDataset.__getitems__`, which already batches."""
    return batch


def sequential_requests(n: int, batch_size: int) -> list[np.ndarray]:
    """Index batches ``0..n-1`` in order (evaluation and prediction)."""
    return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def make_dataset(
    cohort: Cohort,
    split: str,
    threshold: float,
    mean,
    std,
    *,
    attribute: str = DEFAULT_ATTRIBUTE,
) -> PatchDataset:
    """The :class:`PatchDataset` of one split of a prepared cohort (groups by ``attribute``
    at ``threshold``: tau for the default ``tissue_ratio``)."""
    slides = cohort.splits.get(split, [])
    table = cohort.table(split)
    return PatchDataset([s.cache for s in slides], table, threshold, mean, std, attribute)
