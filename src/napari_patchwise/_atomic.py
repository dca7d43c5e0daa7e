"""Atomic output: write to a temporary sibling, then rename over the target.

An interrupted run never leaves a half-written table, image or checkpoint behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    Works for files and for directories (e.g. a zarr store). On error the temporary
    path is removed and ``target`` is left untouched.

    Parameters
    ----------
    target : path-like
        Final location.
    suffix : str, optional
        Suffix of the temporary name (defaults to the target's own suffixes, so that
        writers that dispatch on the extension still see it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the writer creates it (file or directory)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
