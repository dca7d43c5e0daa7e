"""Feature stores: one feature vector per patch, with the patch table, in a zarr folder.

``patchwise embed`` writes them (:mod:`.embed`); ``patchwise train --features`` reads
them (:mod:`.head`). Layout of ``FEATURES.zarr`` (``docs/features.md``)::

    zarr.json           zarr v3 group; attributes["patchwise_features"] = the spec
    vectors/<i>         float16 array (n_i, D) of slide i (manifest order),
                        chunks (chunk_rows, D): one chunk per patch range
    done/<i>            uint8 array (n_chunks_i,), one chunk per flag: 1 once that patch
                        range's vectors are written (what a resumed embed skips)
    tables/<i>.parquet  slide i's patch table; row r is the patch of vectors/<i>[r]
    model.pt            the model the vectors came from (a ``best.pt``-style checkpoint:
                        ``model`` state dict + meta); its head is what ``train --features``
                        replaces

The spec records everything the vectors depend on (source checkpoint fingerprint, layer,
patch settings, each slide's cache key and patch count, chunk rows): a resumed embed must
find the same spec, and ``train --features`` checks the cohort's slides against it.
While it is written the store is ``FEATURES.zarr.partial``; it is renamed to its name
once every chunk of every slide is done.

torch is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._atomic import OutputKind, atomic_path, exclusive_lock, held_by_another, zarr_attributes
from ..errors import PatchwiseError

ATTRS_KEY = "patchwise_features"
LOCK_SUFFIX = ".patchwise-embed.lock"
#: Keys of the spec's ``source`` a resumed embed does not compare: where the checkpoint
#: or weights were read from. Its ``fingerprint`` is the file's SHA-256, so a restored or
#: copied identical file is the same source.
SOURCE_PATHS = frozenset({"checkpoint", "weights"})
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
PARTIAL_SUFFIX = ".partial"
LAYERS: tuple[str, ...] = ("penultimate",)
#: Patch ranges of about 4 MiB of float16 vectors (the project's chunk size): 4096
#: patches of a 512-wide ResNet-18 vector, 1024 of ResNet-50's 2048.
TARGET_CHUNK_BYTES = 4 << 20


def default_chunk_rows(dim: int) -> int:
    """Patches per chunk: about :data:`TARGET_CHUNK_BYTES` of float16 vectors, at least 256."""
    return max(256, TARGET_CHUNK_BYTES // (2 * max(int(dim), 1)))


def _is_store(folder: Path) -> bool:
    return ATTRS_KEY in zarr_attributes(folder)


#: What ``patchwise embed`` writes: a ``*.zarr`` folder recognised by its spec, holding
#: only the store's own entries (``--overwrite`` replaces nothing else).
FEATURE_STORE = OutputKind(
    "a feature store",
    suffixes=(".zarr",),
    folder=True,
    recognise=_is_store,
    owns=lambda _folder, name: name in {"zarr.json", "vectors", "done", "tables", MODEL_FILE},
)


def partial_path(out: str | os.PathLike) -> Path:
    """Where an unfinished store lives (``FEATURES.zarr.partial``)."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of an embed into ``out`` (hidden, beside the store)."""
    out = Path(out)
    return out.with_name("." + out.name + LOCK_SUFFIX)


@contextlib.contextmanager
def store_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the feature store ``out`` (and its ``.partial``) for one ``patchwise embed``.

    :func:`._atomic.exclusive_lock` on :func:`lock_path`: a second embed into the same
    store is refused with one line naming the store and the holder's pid; a file left by
    a killed embed holds no lock and is taken over.
    """

    out = Path(out)
    busy = held_by_another("embed", "is writing this feature store", out)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock_path(out), busy):
        yield


# -- the head of a model ----------------------------------------------------------------------
def head_prefix(model_name: str) -> str:
    """State-dict prefix of a model's final linear layer (what head training replaces)."""
    # SmallCNN is Sequential(4 blocks, 3 pools, pool, flatten, linear): the linear is 9.
    return "9." if model_name == "smallcnn" else "fc."


def split_head(model, model_name: str):
    """``(backbone, head)``: the model with its final linear replaced by an identity
    (outputs the penultimate features) and that linear layer itself."""

    import torch

    backbone = copy.deepcopy(model)
    if model_name == "smallcnn":
        head = backbone[-1]
        backbone[-1] = torch.nn.Identity()
    else:
        head = backbone.fc
        backbone.fc = torch.nn.Identity()
    if not isinstance(head, torch.nn.Linear):  # pragma: no cover - a new architecture
        raise PatchwiseError(f"{model_name}: the last layer is not linear; cannot embed")
    return backbone, head


# -- the store ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSet:
    """A whole feature store read into memory.

    Attributes
    ----------
    vectors : float16 array (N, D)
        Every patch's vector, slides in store order.
    table : DataFrame
        The patch tables of the slides, concatenated; row ``r`` is ``vectors[r]``.
    spec : dict
        The store's spec (source, layer, slides...).
    path : Path
        The store.
    """

    vectors: np.ndarray
    table: pd.DataFrame
    spec: dict[str, Any]
    path: Path

    def slide_rows(self) -> dict[str, np.ndarray]:
        """Row indices of each slide id."""
        return {s: np.flatnonzero(self.table["slide"].to_numpy() == s) for s in self.slide_ids}

    @property
    def slide_ids(self) -> list[str]:
        return [s["slide"] for s in self.spec["slides"]]


def _open_group(path: Path, mode: str):
    import zarr

    return zarr.open_group(str(path), mode=mode, zarr_format=3)


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The spec of a feature store (one-line error for anything that is not one)."""
    path = Path(path)
    if not path.exists():
        raise PatchwiseError(
            "feature store not found", path=path, hint="write it with `patchwise embed`"
        )
    try:
        spec = dict(_open_group(path, "r").attrs.get(ATTRS_KEY) or {})
    except Exception:  # noqa: BLE001 - zarr raises several types for a folder that is not a store
        spec = {}
    if spec.get("format") != "patchwise-features":
        raise PatchwiseError(
            "not a patchwise feature store", path=path, hint="write it with `patchwise embed`"
        )
    if spec.get("version") != FORMAT_VERSION:
        raise PatchwiseError(
            f"feature store version {spec.get('version')} (this patchwise reads {FORMAT_VERSION})",
            path=path,
            hint="embed again with this version",
        )
    return spec


def read_features(path: str | os.PathLike) -> FeatureSet:
    """Read a finished feature store: vectors and patch tables, rows aligned.

    Raises
    ------
    PatchwiseError
        Missing, not a store, unfinished (a ``.partial``), or damaged.
    """
    path = Path(path)
    spec = read_spec(path)
    if not spec.get("complete"):
        raise PatchwiseError(
            "the feature store is unfinished", path=path, hint="rerun `patchwise embed` to finish"
        )
    from .zarr import read_checked

    group = _open_group(path, "r")
    vectors, tables = [], []
    try:
        for i, slide in enumerate(spec["slides"]):
            _check_done(path, i)
            # Every chunk must be in the store: zarr would read a lost one as zeros.
            block = read_checked(group[f"vectors/{i}"], path)
            table = pd.read_parquet(path / "tables" / f"{i}.parquet")
            if len(table) != len(block) or len(block) != slide["n_patches"]:
                raise ValueError(f"slide {slide['slide']}: {len(table)} rows, {len(block)} vectors")
            vectors.append(block)
            tables.append(table)
    except PatchwiseError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise PatchwiseError(
            f"damaged feature store ({exc})", path=path, hint="embed again"
        ) from None
    dim = int(spec["dim"])
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float16)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return FeatureSet(stacked, table, spec, path)


def _check_done(path: Path, index: int) -> None:
    """Refuse a finished store whose slide ``index`` has a patch range not flagged done."""
    flags = done_chunks(path, index)
    if not flags.all():
        chunk = int(np.flatnonzero(~flags)[0])
        raise PatchwiseError(
            f"damaged feature store: patch range {chunk} of slide {index} is not written "
            f"(done/{index}/c/{chunk} is missing or unreadable)",
            path=path,
            hint="embed again",
        )


def create_store(path: Path, spec: dict[str, Any], tables: list[pd.DataFrame], model_ckpt) -> None:
    """Create an empty store (arrays, flags, tables, model) for ``spec`` at ``path``."""
    import torch

    group = _open_group(path, "w")
    rows, dim = int(spec["chunk_rows"]), int(spec["dim"])
    for i, slide in enumerate(spec["slides"]):
        n = int(slide["n_patches"])
        group.create_array(
            f"vectors/{i}", shape=(n, dim), chunks=(rows, dim), dtype="float16", fill_value=0
        )
        n_chunks = -(-n // rows)
        group.create_array(
            f"done/{i}",
            shape=(n_chunks,),
            chunks=(1,),
            dtype="uint8",
            fill_value=0,
            compressors=None,
        )
    (path / "tables").mkdir()
    for i, table in enumerate(tables):
        with atomic_path(path / "tables" / f"{i}.parquet") as tmp:
            table.to_parquet(tmp, index=False)
    with atomic_path(path / MODEL_FILE) as tmp:
        torch.save(model_ckpt, tmp)
    group.attrs[ATTRS_KEY] = {**spec, "complete": False}


def finish_store(path: Path) -> None:
    """Mark a store whose every chunk is done as complete."""
    group = _open_group(path, "r+")
    spec = dict(group.attrs[ATTRS_KEY])
    group.attrs[ATTRS_KEY] = {**spec, "complete": True}


def done_chunks(path: Path, index: int) -> np.ndarray:
    """Flags of slide ``index``'s patch ranges: True where the vectors are written.

    A flag that cannot be read (torn by a kill) counts as not done.
    """
    import zarr

    array = zarr.open_array(str(path / "done" / str(index)), mode="r")
    flags = np.zeros(array.shape[0], dtype=bool)
    for k in range(len(flags)):
        try:
            flags[k] = bool(array[k])
        except Exception:  # noqa: BLE001 - a torn flag chunk: redo that range
            flags[k] = False
    return flags


def write_chunk(path: Path, index: int, chunk: int, vectors: np.ndarray) -> None:
    """Write one patch range's vectors, then its done flag (so a kill redoes it)."""
    import zarr

    array = zarr.open_array(str(path / "vectors" / str(index)), mode="r+")
    # An all-zero range is written too: a reader refuses a missing chunk (read_checked).
    array = array.with_config({"write_empty_chunks": True})
    rows = array.chunks[0]
    array[chunk * rows : chunk * rows + len(vectors)] = vectors.astype(np.float16, copy=False)
    flags = zarr.open_array(str(path / "done" / str(index)), mode="r+")
    flags[chunk] = 1


def spec_changes(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the spec entries that differ (``complete`` and the source's paths aside)."""
    keys = (set(stored) | set(new)) - {"complete"}
    canon = json.loads  # attrs round-trip through JSON: compare both that way

    def norm(value):
        if isinstance(value, dict) and "kind" in value:  # the source: by content
            value = {k: v for k, v in value.items() if k not in SOURCE_PATHS}
        return canon(json.dumps(value, sort_keys=True))

    return sorted(k for k in keys if norm(stored.get(k)) != norm(new.get(k)))


def check_matches_cohort(spec: dict[str, Any], keys: dict[str, str], path: Path, manifest) -> None:
    """Refuse a store whose slides are not the manifest's (by slide id and cache key).

    ``keys`` maps each manifest slide id to its :func:`data.cache_key` under the store's
    patch settings: a different key means another file or a changed one.
    """
    stored = {s["slide"]: s["key"] for s in spec["slides"]}
    missing = sorted(set(keys) - set(stored))
    extra = sorted(set(stored) - set(keys))
    changed = sorted(s for s in set(keys) & set(stored) if keys[s] != stored[s])
    if missing or extra or changed:
        parts = []
        for what, names in (("not in it", missing), ("not in the manifest", extra)):
            if names:
                parts.append(f"slides {what}: {', '.join(names[:3])}")
        if changed:
            parts.append(f"slides changed since the embed: {', '.join(changed[:3])}")
        raise PatchwiseError(
            f"features are not of this cohort ({'; '.join(parts)})",
            path=path,
            hint=f"embed {Path(manifest).name} again with `patchwise embed`",
        )
