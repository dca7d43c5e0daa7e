"""Batched inference over a slide's patch grid with a trained run's selected checkpoint.

Patches are read lazily from the slide, a row-band at a time
(:func:`data.iter_patch_bands`), normalised with the training split's per-channel
statistics saved in the checkpoint, and classified in batches: memory is bounded by one
band plus one batch, whatever the slide's size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from .._progress import ProgressCallback
from ..errors import PatchwiseError
from ..io import open_slide
from ..patches.table import build_patch_table, settings_grid
from ..settings import PatchSettings
from ..slide import Slide
from .data import iter_patch_bands
from .inference import DEFAULT_BATCH_SIZE, Forward
from .loop import resolve_device
from .runs import checkpoint_meta, load_model, resolve_checkpoint, run_patch_settings


def check_options(batch_size: int, threshold: float | None) -> None:
    """Refuse a batch size or decision threshold that cannot give meaningful predictions.

    A batch size below 1 would classify no patch at all (every ``prob`` NaN), and a
    threshold outside [0, 1] makes every prediction the same class.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise PatchwiseError(
            f"batch size must be a positive integer, got {batch_size!r}",
            hint="e.g. --batch-size 256",
        )
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise PatchwiseError(
            f"threshold={threshold} is outside [0, 1]",
            hint="a probability threshold, e.g. --threshold 0.5 (or leave it out for the run's)",
        )


def geometry_table(slide: Slide, patch_size: int, stride: int | None = None) -> pd.DataFrame:
    """Patch positions of a slide without a mask (no labels): the geometry columns only."""

    return build_patch_table(slide, PatchSettings(patch_size, stride), labels=False).frame


def predict_table(
    slide: Slide,
    table: pd.DataFrame,
    run_dir: str | os.PathLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "auto",
    threshold: float | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Add the tumor probability ``prob`` and the prediction ``pred`` to a patch table.

    Parameters
    ----------
    slide : Slide
        The slide the table describes (same number of channels as the training slides).
    table : DataFrame
        Patch table (at least ``y``, ``x``, ``height``, ``width``) of this slide, cut with
        the patch size the model was trained on.
    run_dir : path-like
        A run directory (its ``best.pt``) or a checkpoint file (``best.pt``,
        ``best_val_*.pt``, ``last.pt``; see :mod:`.runs`).
    batch_size : int
        Patches per forward pass (at least 1).
    device : {"auto", "cpu", "cuda"}
        Where the model runs.
    threshold : float, optional
        Decision threshold on ``prob`` in [0, 1] (default: the run's).
    progress : callable, optional
        ``progress(patches done, patches)``.

    Returns
    -------
    DataFrame
        A copy of ``table`` with ``prob`` (float32) and ``pred`` (int8) columns.
    """

    check_options(batch_size, threshold)
    device = resolve_device(device)
    model, meta = load_model(run_dir, device)
    patch_size = int(meta["patch_size"])
    threshold = float(meta.get("threshold", 0.5) if threshold is None else threshold)
    _check_compatible(slide, table, meta)
    classify = _Classifier(model, meta, device)
    prob = np.full(len(table), np.nan, dtype=np.float32)
    done = 0
    bands = iter_patch_bands(slide, table, patch_size=patch_size)
    for positions, patches in rebatch(bands, batch_size):
        prob[positions] = classify(patches)
        done += len(positions)
        if progress is not None:
            progress(done, len(table))
    out = table.copy()
    out["prob"] = prob
    out["pred"] = (prob >= threshold).astype(np.int8)
    return out


def predict_slide(
    image: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    mask_map: str | None = None,
    stride: int | None = None,
    tissue: str | None = None,
    background: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "auto",
    threshold: float | None = None,
    attributes: Sequence[str] = (),
    border_margin: int | None = None,
    stats_progress: ProgressCallback | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Open a slide and predict every patch of its grid (``patchwise predict``).

    With ``mask`` the result is the full patch table (labels, counts, ratios, computed
    with the run's patch settings unless given) plus ``prob`` and ``pred``; without it,
    the patch geometry plus ``prob`` and ``pred``. Level 0 only: nothing is written (no
    display pyramid), and the mask's values are checked in the pass that counts them.

    Parameters
    ----------
    image, checkpoint : path-like
        The slide, and a run directory or checkpoint file (see :mod:`.runs`).
    mask, mask_map : optional
        Label mask (or ``None``) and its value map (default: the run's).
    stride, tissue, background : optional
        Patch-grid and tissue settings (default: the patch size and the run's).
    batch_size, device, threshold, progress
        As for :func:`predict_table`.
    attributes, border_margin : optional
        Extra attribute kinds to add and the border margin (see
        :func:`napari_patchwise.patches.attributes.patch_attributes`), e.g. to rank them.
    stats_progress : callable, optional
        ``progress(done, total)`` of the patch statistics (and attributes).

    Returns
    -------
    DataFrame
    """

    ckpt = resolve_checkpoint(checkpoint)
    patch_size = int(checkpoint_meta(ckpt)["patch_size"])
    settings = run_patch_settings(ckpt)  # defaults for a checkpoint copied out of its run
    slide = open_slide(
        image,
        mask=mask,
        mask_map=mask_map or settings.mask_map,
        pyramid=False,
        check_mask_values=False,
    )
    patch = replace(settings, patch_size=patch_size, stride=stride, keep_edges=False)
    patch = replace(patch, tissue=tissue or patch.tissue, background=background or patch.background)
    settings_grid(patch).check_fits(*slide.shape[1:], path=image)  # never an empty table
    table = build_patch_table(
        slide,
        patch,
        attributes=attributes,
        border_margin=border_margin,
        labels=mask is not None,
        progress=stats_progress,
    ).frame
    return predict_table(
        slide,
        table,
        ckpt,
        batch_size=batch_size,
        device=device,
        threshold=threshold,
        progress=progress,
    )


def _check_compatible(slide: Slide, table: pd.DataFrame, meta: dict) -> None:
    """The slide's channels and the table's patch size must be the model's."""
    patch_size = int(meta["patch_size"])
    if slide.n_channels != int(meta["in_channels"]):
        raise PatchwiseError(
            f"slide has {slide.n_channels} channels but the model was trained on {meta['in_channels']}",
            path=slide.path,
            hint="predict on slides with the training slides' modalities",
        )
    if len(table) and int(max(table["height"].max(), table["width"].max())) > patch_size:
        raise PatchwiseError(
            f"the table's patches are larger than the model's {patch_size} px patches",
            hint=f"cut the slide with --patch-size {patch_size}",
        )


def rebatch(
    bands: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Regroup ``(positions, patches)`` bands into batches of ``batch_size`` (the last smaller).

    Bands follow the slide's rows of tiles, so their lengths vary; the model sees full
    batches whatever the band sizes.
    """
    pending_pos: list[np.ndarray] = []
    pending_x: list[np.ndarray] = []
    buffered = 0
    for positions, patches in bands:
        start = 0
        while start < len(positions):
            take = min(batch_size - buffered, len(positions) - start)
            pending_pos.append(positions[start : start + take])
            pending_x.append(patches[start : start + take])
            buffered += take
            start += take
            if buffered == batch_size:
                yield np.concatenate(pending_pos), np.concatenate(pending_x)
                pending_pos, pending_x, buffered = [], [], 0
    if buffered:
        yield np.concatenate(pending_pos), np.concatenate(pending_x)


class _Classifier:
    """A checkpoint's model as ``patches (N, C, p, p) -> tumor probability (N,)``.

    Normalises with the training statistics, and on CUDA runs channels-last under
    autocast (:class:`.inference.Forward`, as validation and embedding do).
    """

    def __init__(self, model, meta: dict, device) -> None:
        self.forward = Forward(model, device, mean=meta["mean"], std=meta["std"])

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self.forward.probabilities(patches)
