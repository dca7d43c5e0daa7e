"""``patchwise embed``: one feature vector per patch, written to a feature store.

The patches come from the same per-slide patch cache training uses
(:func:`data.slide_patches`; a single image without a mask is read lazily band by band,
:func:`data.iter_patch_bands`), normalised with the model's statistics and passed through
the model up to its penultimate layer (the input of its final linear layer), in batches,
under autocast on CUDA. Vectors are stored as float16 (:mod:`.features`), one patch range
(chunk) at a time; a chunk's done flag is written after its vectors, so an interrupted
embed continues where it stopped when run again with the same inputs.

The model is a trained run's (``--checkpoint RUN_DIR``) or a torchvision backbone
(``--backbone resnet18 --weights PATH``; randomly initialised, with a warning, without
weights). Over many slides the slides can be sent to a ``dask.distributed`` cluster
(one task per slide; the store must be on a file system the workers share).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._atomic import check_output, folder_problem, private_dir
from .._progress import ProgressCallback
from ..cohort.manifest import CohortEntry, read_manifest
from ..errors import PatchwiseError
from ..io import open_slide
from ..io.feature_store import (
    FEATURE_STORE,
    FORMAT_VERSION,
    MODEL_FILE,
    create_store,
    default_chunk_rows,
    done_chunks,
    finish_store,
    head_prefix,
    partial_path,
    read_spec,
    spec_changes,
    split_head,
    store_lock,
    write_chunk,
)
from ..io.fingerprint import fingerprint
from ..io.formats import slide_name
from ..patches.table import build_patch_table
from ..settings import DEFAULT_PATCH_SIZE, PatchSettings
from .data import cache_key, channel_stats, iter_patch_bands, slide_patches
from .encoders import encoder_spec, is_encoder_name, physical_patch_size
from .inference import DEFAULT_BATCH_SIZE, Forward
from .loop import resolve_device
from .models import build_model
from .runs import file_sha256, load_checkpoint, load_model, resolve_checkpoint, run_patch_settings


@dataclass(frozen=True)
class EmbedSource:
    """Which model embeds: a run's checkpoint, or a backbone (with optional weights)."""

    checkpoint: str | None = None
    backbone: str | None = None
    weights: str | None = None
    layer: str = "penultimate"
    channels: str | None = None  # a timm encoder's RGB from the slide's channels
    input_size: int | None = None  # a timm: encoder's input side
    fit_scale: bool = False  # a preset: patch side from the slides' pixel size


@dataclass
class SlideJob:
    """One slide to embed: its id, split, cache key, table and where its patches are."""

    slide: str
    split: str
    key: str
    table: pd.DataFrame
    cache: str | None = None  # the .npy patch cache, or None: read lazily from the image
    image: str | None = None
    mask_map: str | None = None
    patch_size: int = DEFAULT_PATCH_SIZE
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return {"slide": self.slide, "split": self.split, "key": self.key, "n_patches": len(self)}

    def __len__(self) -> int:
        return len(self.table)


# -- reading the patches of a job ------------------------------------------------------------
def read_rows(job: SlideJob, start: int, stop: int) -> np.ndarray:
    """Raw patches ``(n, M, p, p)`` of table rows ``start:stop`` of a slide."""
    if job.cache is not None:
        return np.asarray(np.load(job.cache, mmap_mode="r")[start:stop])

    slide = open_slide(job.image, pyramid=False)
    part = job.table.iloc[start:stop]
    out = None
    for positions, patches in iter_patch_bands(slide, part, patch_size=job.patch_size):
        if out is None:
            out = np.zeros((stop - start, *patches.shape[1:]), dtype=patches.dtype)
        out[positions] = patches
    return out


# -- the model -------------------------------------------------------------------------------
def _run_checkpoint(path: str) -> tuple[dict, dict, dict]:
    """``(store checkpoint, meta, source spec)`` of a trained run's checkpoint.

    The checkpoint is known by its content (SHA-256): a restored or copied identical
    file is the same source, whatever its path and times.
    """

    resolved = resolve_checkpoint(path)
    ckpt, meta = load_checkpoint(resolved)
    keys = ("model_name", "in_channels", "mean", "std", "patch_size", "threshold", "tau")
    keys += ("encoder",)
    meta = {k: meta[k] for k in keys if k in meta}
    source = {
        "kind": "run",
        "checkpoint": str(resolved.resolve()),
        "fingerprint": file_sha256(resolved),
    }
    return {"model": ckpt["model"], **meta}, meta, source


def _backbone_checkpoint(
    source: EmbedSource, channels: int, mean, std, patch_size: int, encoder: dict | None = None
):
    """``(store checkpoint, meta, source spec)`` of a torchvision backbone or timm encoder.

    An encoder normalises inside the model (:mod:`.encoders`): its meta mean/std are the
    identity and its spec travels in the meta.
    """
    import torch

    with torch.random.fork_rng():  # a random backbone: the same one on every call
        torch.manual_seed(0)
        model = build_model(source.backbone, channels, weights=source.weights, encoder=encoder)
    if encoder is not None:
        mean, std = np.zeros(channels), np.ones(channels)
    meta = {
        "model_name": source.backbone,
        "in_channels": int(channels),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "patch_size": int(patch_size),
        "threshold": 0.5,
    }
    if encoder is not None:
        meta["encoder"] = encoder
    spec = {
        "kind": "backbone",
        "backbone": source.backbone,
        "weights": None if source.weights is None else str(Path(source.weights).resolve()),
        "fingerprint": None if source.weights is None else file_sha256(source.weights),
    }
    if encoder is not None:
        spec["encoder"] = encoder
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"model": state, **meta}, meta, spec


def load_backbone(store_model: str | os.PathLike, device):
    """The store's model up to its penultimate layer, in eval mode, and its meta."""

    model, meta = load_model(store_model, device)
    backbone, _ = split_head(model, meta["model_name"])
    return backbone.eval(), meta


class _Embedder:
    """Raw patches -> float16 penultimate vectors (normalised, batched, AMP on CUDA)."""

    def __init__(self, store: Path, device: str, batch_size: int):
        self.device = resolve_device(device)
        backbone, meta = load_backbone(store / MODEL_FILE, self.device)
        self.batch_size = int(batch_size)
        self.forward = Forward(backbone, self.device, mean=meta["mean"], std=meta["std"])

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        out = []
        for b in range(0, len(patches), self.batch_size):
            vectors = self.forward(np.asarray(patches[b : b + self.batch_size], np.float32))
            out.append(vectors.cpu().numpy().astype(np.float16))
        return np.concatenate(out)


def embed_slide(
    store: str | os.PathLike,
    index: int,
    job: SlideJob,
    *,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    embedder: _Embedder | None = None,
) -> int:
    """Embed every patch range of slide ``index`` not done yet; returns how many it did.

    A top-level function of picklable arguments: it runs as a ``dask.distributed`` task.
    ``progress(1)`` is called after each range is written; ``embedder`` reuses a loaded
    model (one per process, not per slide).
    """
    store = Path(store)
    todo = np.flatnonzero(~done_chunks(store, index))
    if not len(todo):
        return 0
    embedder = embedder or _Embedder(store, device, batch_size)
    rows = int(read_spec(store)["chunk_rows"])
    for chunk in todo:
        start, stop = int(chunk) * rows, min((int(chunk) + 1) * rows, len(job))
        write_chunk(store, index, int(chunk), embedder(read_rows(job, start, stop)))
        if progress is not None:
            progress(1)
    return len(todo)


# -- the whole embed ------------------------------------------------------------------------
def build_spec(
    source_spec: dict, meta: dict, settings, jobs: list[SlideJob], inputs: dict, dim: int, **kw
) -> dict[str, Any]:
    """The store spec: everything the vectors depend on (see :mod:`.features`)."""
    return {
        "format": "patchwise-features",
        "version": FORMAT_VERSION,
        "layer": kw.get("layer", "penultimate"),
        "dim": int(dim),
        "dtype": "float16",
        "chunk_rows": int(kw.get("chunk_rows") or default_chunk_rows(dim)),
        "source": source_spec,
        "model_name": meta["model_name"],
        "patch": asdict(settings),
        "input": inputs,
        "slides": [job.spec() for job in jobs],
    }


def prepare_store(
    out: Path, spec: dict, jobs: list[SlideJob], ckpt: dict, *, overwrite: bool = False
) -> Path:
    """The partial store for ``spec``: created, or an interrupted one with the same spec.

    With ``overwrite`` an interrupted embed of other inputs is removed and started over
    (only if it is recognisably one: :func:`check_partial`).

    Raises
    ------
    PatchwiseError
        An interrupted embed of other inputs (changed checkpoint, slides, settings...).
    """
    partial = partial_path(out)
    if partial.exists():
        check_partial(partial)
        try:
            stored = read_spec(partial)
        except PatchwiseError:
            stored = None
        changes = ["store"] if stored is None else spec_changes(stored, spec)
        if changes and overwrite:
            shutil.rmtree(partial)  # an unfinished store of this command: --overwrite
        elif changes:
            raise PatchwiseError(
                f"an interrupted embed of other inputs is here (differs in: {', '.join(changes)})",
                path=partial,
                hint="rerun with the same inputs to continue it, or pass --overwrite to start over",
            )
        else:
            return partial
    try:
        create_store(partial, spec, [job.table for job in jobs], ckpt)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # nothing done yet: leave nothing
        raise
    return partial


def run_jobs(
    partial: Path,
    jobs: list[SlideJob],
    *,
    device: str,
    batch_size: int,
    client=None,
    progress: ProgressCallback | None = None,
) -> None:
    """Embed every slide's missing patch ranges, here or as one task per slide on ``client``."""
    rows = int(read_spec(partial)["chunk_rows"])
    total = sum(-(-len(job) // rows) for job in jobs)
    done = [sum(int(done_chunks(partial, i).sum()) for i in range(len(jobs)))]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    tick(0)
    if client is None:
        embedder = _Embedder(partial, device, batch_size) if done[0] < total else None
        for i, job in enumerate(jobs):
            embed_slide(partial, i, job, progress=tick, embedder=embedder)
        return
    from distributed import as_completed

    futures = [
        client.submit(
            embed_slide, str(partial), i, job, device=device, batch_size=batch_size, pure=False
        )
        for i, job in enumerate(jobs)
    ]
    for future in as_completed(futures):
        tick(future.result())


def check_partial(partial: Path) -> None:
    """Refuse a ``FEATURES.zarr.partial`` that is not an unfinished store of ``embed``
    (a file, or a folder holding anything a store does not)."""

    if not partial.is_dir():
        raise PatchwiseError(
            "is in the way of the unfinished store (not a folder); nothing was written",
            path=partial,
            hint="choose another --out",
        )
    owned = all(FEATURE_STORE.owns(partial, e.name) for e in os.scandir(partial))
    if folder_problem(partial, FEATURE_STORE) is not None and not owned:
        raise PatchwiseError(
            "is in the way of the unfinished store (not a feature store); it was left as it "
            "is and nothing was written",
            path=partial,
            hint="choose another --out",
        )


def publish(partial: Path, out: Path, *, overwrite: bool = False) -> Path:
    """Mark the partial store complete and rename it to ``out`` (replacing it if asked:
    only a feature store, :data:`FEATURE_STORE`)."""

    finish_store(partial)
    if out.exists():
        check_output(out, kind=FEATURE_STORE, overwrite=overwrite)  # again, just before
        aside = private_dir(out.parent)
        os.replace(out, aside / out.name)
        os.replace(partial, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, out)
    return out


# -- the slides to embed --------------------------------------------------------------------
def cohort_jobs(
    manifest: str | os.PathLike,
    settings,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
) -> list[SlideJob]:
    """One job per manifest slide, over its patch cache (built once, as training does)."""

    entries = read_manifest(manifest, require_splits=())
    folder = Path(manifest).parent / ".patchwise-cache" if cache_dir is None else Path(cache_dir)
    jobs = []
    for i, entry in enumerate(entries):

        def slide_progress(done: int, n: int, _i: int = i) -> None:
            if progress is not None and n:
                progress(_i * 1000 + (1000 * done) // n, 1000 * len(entries))

        patches = slide_patches(entry, settings, folder, progress=slide_progress)
        key = cache_key(entry, settings)  # as check_matches_cohort computes it
        jobs.append(
            SlideJob(entry.slide, entry.split, key, patches.table, cache=str(patches.cache))
        )
    return jobs


def image_jobs(image: str | os.PathLike, mask, settings, *, cache_dir=None) -> list[SlideJob]:
    """The job of one image: with a mask over its patch cache, without one read lazily."""

    image = Path(image)
    name = slide_name(image)
    if mask is not None:
        entry = CohortEntry(image, Path(mask), "", name, 0)
        folder = image.parent / ".patchwise-cache" if cache_dir is None else Path(cache_dir)

        patches = slide_patches(entry, settings, folder)
        key = cache_key(entry, settings)  # as check_matches_cohort computes it
        return [SlideJob(name, "", key, patches.table, cache=str(patches.cache))]

    slide = replace(open_slide(image, pyramid=False), name=name)
    table = build_patch_table(slide, settings, labels=False).frame
    payload = [str(image.resolve()), fingerprint(image), asdict(settings)]
    key = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    job = SlideJob(name, "", key, table, image=str(image), patch_size=settings.patch_size)
    job.extra["channels"] = slide.n_channels
    return [job]


def job_channels(job: SlideJob) -> int:
    if job.cache is not None:
        return int(np.load(job.cache, mmap_mode="r").shape[1])
    return int(job.extra["channels"])


def job_stats(jobs: list[SlideJob]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std for a backbone: the training split's patches (all
    slides when there is no training split; an image's pixels without a cache)."""

    cached = [j for j in jobs if j.cache is not None]
    if cached:
        train = [j.cache for j in cached if j.split == "train"] or [j.cache for j in cached]
        return channel_stats(train)

    level = open_slide(jobs[0].image, pyramid=False).levels[0].astype(np.float64)
    mean = level.mean(axis=(1, 2)).compute()
    std = level.std(axis=(1, 2)).compute()
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def _slide_facts(target) -> list:
    """The slides of a manifest or the one image, opened lazily (metadata only)."""

    if str(target).lower().endswith(".csv"):
        paths = [e.image for e in read_manifest(target, require_splits=())]
    else:
        paths = [target]
    return [open_slide(p, pyramid=False) for p in paths]


def encoder_setup(target, source: EmbedSource, settings):
    """``(encoder spec, patch settings)`` of a timm encoder over the slides of ``target``.

    The spec takes the first slide's channel names and dtype. With ``source.fit_scale``
    a preset's patch side is chosen so that a patch covers the field of view the encoder
    was trained on (its pixel size x its resize side, e.g. 224 px at 0.5 µm = 112 µm);
    a slide without a pixel size keeps ``settings.patch_size``, with a one-line warning.
    """

    slides = _slide_facts(target)
    first = slides[0]
    spec = encoder_spec(
        source.backbone,
        channel_names=first.channel_names,
        dtype=first.levels[0].dtype,
        channels=source.channels,
        input_size=source.input_size,
    )
    if not source.fit_scale or spec.get("pixel_size") is None:
        return spec, settings
    sizes = [None if s.pixel_size is None else float(np.mean(s.pixel_size)) for s in slides]
    side = physical_patch_size(spec, sizes)
    view = spec["resize_size"] * spec["pixel_size"]
    if side is None:
        unknown = next(s for s, p in zip(slides, sizes, strict=True) if p is None)
        warnings.warn(
            f"{unknown.path or unknown.name}: no pixel size; patches of "
            f"{settings.patch_size} px are not scaled to {spec['name']}'s {view:g} µm field "
            "of view (give --patch-size, or --pixel-size when converting the slide)",
            UserWarning,
            stacklevel=2,
        )
        return spec, settings
    return spec, dataclasses.replace(settings, patch_size=side)


def _model_and_jobs(target, source: EmbedSource, *, mask, settings, cache_dir, progress):
    """``(store checkpoint, meta, source spec, patch settings, slide jobs)`` of an embed."""

    if source.checkpoint is not None:
        ckpt, meta, source_spec = _run_checkpoint(source.checkpoint)
        settings = run_patch_settings(source.checkpoint)
    settings = settings or PatchSettings()
    encoder = None
    if (
        source.checkpoint is None
        and source.backbone is not None
        and is_encoder_name(source.backbone)
    ):
        encoder, settings = encoder_setup(target, source, settings)
    settings.validate()
    if str(target).lower().endswith(".csv"):
        jobs = cohort_jobs(target, settings, cache_dir=cache_dir, progress=progress)
    else:
        jobs = image_jobs(target, mask, settings, cache_dir=cache_dir)
    channels = {job_channels(j) for j in jobs}
    if len(channels) > 1:
        raise PatchwiseError(f"slides have different numbers of channels {sorted(channels)}")
    if source.checkpoint is None:
        mean, std = job_stats(jobs)
        ckpt, meta, source_spec = _backbone_checkpoint(
            source, channels.pop(), mean, std, settings.patch_size, encoder
        )
    elif channels.pop() != int(meta["in_channels"]):
        raise PatchwiseError(
            f"the slides do not have the model's {meta['in_channels']} channels",
            path=target,
            hint="embed slides with the training slides' modalities",
        )
    return ckpt, meta, source_spec, settings, jobs


def embed(
    target: str | os.PathLike,
    out: str | os.PathLike,
    source: EmbedSource,
    *,
    mask: str | os.PathLike | None = None,
    settings=None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_rows: int | None = None,
    client=None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    prepare_progress: ProgressCallback | None = None,
) -> Path:
    """Embed every patch of a cohort manifest (``.csv``) or one image into ``out``.

    Parameters
    ----------
    target : path-like
        A cohort manifest or an image file.
    out : path-like
        The feature store (``FEATURES.zarr``); written as ``out.partial`` first.
    source : EmbedSource
        A run checkpoint, or a backbone name with optional local weights.
    mask : path-like, optional
        The image's mask (labels in the table); not for a manifest.
    settings : PatchSettings, optional
        Patch settings for a backbone (a run's come from its ``config.json``).
    device, batch_size, chunk_rows :
        Where and how many patches per forward pass; patches per stored chunk
        (default about 4 MiB of vectors).
    client : distributed.Client, optional
        Send one task per slide to this cluster.
    progress, prepare_progress : callable, optional
        ``(chunks done, chunks)``; ``(done, total)`` while patch caches are built.

    Returns
    -------
    pathlib.Path
        ``out``.
    """

    out = check_output(out, kind=FEATURE_STORE, overwrite=overwrite)  # before any work
    with store_lock(out):  # a second embed into the same store stops here, at once
        if partial_path(out).exists():
            check_partial(partial_path(out))
        ckpt, meta, source_spec, settings, jobs = _model_and_jobs(
            target,
            source,
            mask=mask,
            settings=settings,
            cache_dir=cache_dir,
            progress=prepare_progress,
        )
        dim = int(ckpt["model"][head_prefix(meta["model_name"]) + "weight"].shape[1])
        inputs = {"target": str(Path(target).resolve()), "mask": mask and str(Path(mask).resolve())}
        spec = build_spec(
            source_spec,
            meta,
            settings,
            jobs,
            inputs,
            dim,
            layer=source.layer,
            chunk_rows=chunk_rows,
        )
        partial = prepare_store(out, spec, jobs, ckpt, overwrite=overwrite)
        run_jobs(
            partial, jobs, device=device, batch_size=batch_size, client=client, progress=progress
        )
        return publish(partial, out, overwrite=overwrite)
