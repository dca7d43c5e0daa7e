"""Cache keys that change whenever a slide's bytes may have changed.

Caches (the training patch cache, display pyramids) are keyed by :func:`fingerprint`:
for a file its inode, size, modification time *and status-change time* (``st_ctime``);
for a directory store (OME-Zarr) the same for every file in it, by relative name, plus
the bytes of its small metadata files.

Why ``st_ctime``: size and ``st_mtime`` miss a file edited in place whose modification
time was set back (``os.utime``, ``touch -r``, ``cp --preserve``, some sync tools). The
status-change time cannot be set by a program: every write, truncation, ``utime``,
rename onto the file or new inode moves it. Hashing every byte would also catch those
edits, but costs a full read of each slide on every run (measured figures and the
trade-off: ``docs/caches.md``). A spurious change (``chmod``, ``touch``, moving the
cohort) only costs a rebuild, never a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Files of a zarr store whose bytes (not only their stat) enter the key: small, and the
#: ones that say how the chunks are to be read.
METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})


def stat_signature(stat: os.stat_result) -> list[int]:
    """``[inode, size, mtime_ns, ctime_ns]``: what changes when a file's bytes change."""
    return [int(stat.st_ino), int(stat.st_size), int(stat.st_mtime_ns), int(stat.st_ctime_ns)]


def _store_entries(root: Path) -> list:
    """Sorted ``[relative name, signature(, metadata digest)]`` of every file under ``root``."""
    entries = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                stat = path.stat()
            except FileNotFoundError:  # a dangling link: nothing a reader could use
                continue
            entry: list = [path.relative_to(root).as_posix(), stat_signature(stat)]
            if name in METADATA_NAMES:
                entry.append(hashlib.sha256(path.read_bytes()).hexdigest())
            entries.append(entry)
    return entries


def fingerprint(path: str | os.PathLike) -> str:
    """Hex digest that changes when the file, or any file of the store, may have changed.

    Parameters
    ----------
    path : path-like
        An image or mask file, or a directory store (OME-Zarr). Symbolic links are
        followed: the key describes the data a reader would see.

    Returns
    -------
    str
        32 hex digits; equal digests mean the same resolved path and unchanged files.
    """
    path = Path(path).resolve()
    stat = path.stat()
    if path.is_dir():
        payload: list = ["store", str(path), _store_entries(path)]
    else:
        payload = ["file", str(path), stat_signature(stat)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:32]
