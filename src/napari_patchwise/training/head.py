"""Head-only training: the data and model pieces ``train --features`` swaps into the loop.

``patchwise train cohort.csv --features FEATURES.zarr`` runs the shared training loop
(:mod:`.train`) with the cached vectors of a feature store (:mod:`.features`) held in
memory as one tensor, and a linear layer as the model. The loop, the methods and their
samplers, evaluation, selection and the run directory are those of full training. Only
three things differ, and they live here:

* the datasets (:class:`FeatureDataset`): a split's vectors instead of patches; labels
  and groups come from :meth:`data.PatchDataset._set_groups`, the grouping full training
  uses;
* the model: a ``Linear(D, 2)`` (:meth:`HeadSource.new_head`);
* the checkpoints: every ``best*.pt`` holds the *full* model, the store's model with its
  final linear layer replaced by the trained head (:meth:`HeadSource.full_state`), so
  ``patchwise predict`` and the dock use a head run like any other run.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cohort.manifest import read_manifest
from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE
from ..io.feature_store import (
    MODEL_FILE,
    check_matches_cohort,
    head_prefix,
    read_features,
    read_spec,
)
from ..settings import PatchSettings
from .data import PatchDataset, cache_key, load_cohort
from .runs import load_checkpoint


class FeatureDataset(PatchDataset):
    """A split's feature vectors, with the labels and groups of their patch table.

    ``__getitems__(request)`` returns ``(x (n, D) float32, y int64, group int64)`` tensors
    like :class:`~napari_patchwise.training.data.PatchDataset` (augmentation codes are ignored:
    they have no meaning for vectors).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        table: pd.DataFrame,
        threshold: float,
        attribute: str = DEFAULT_ATTRIBUTE,
    ):
        import torch

        self._set_groups(table, threshold, attribute)
        self.table = table.reset_index(drop=True)
        self.caches = []
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, request):
        import torch

        request = np.asarray(request, dtype=np.int64)
        indices = request[:, 0] if request.ndim == 2 else request
        index = torch.from_numpy(indices)
        return (
            self.vectors[index].float(),
            torch.from_numpy(self.labels[indices].copy()),
            torch.from_numpy(self.groups[indices].copy()),
        )


@dataclass(frozen=True)
class HeadSource:
    """The store's model: the head's input size and how to make a full model of a head."""

    state: dict[str, Any]
    meta: dict[str, Any]
    prefix: str
    dim: int

    def new_head(self):
        """A fresh ``Linear(D, 2)`` (torch's default initialisation, under the run's seed)."""
        import torch

        return torch.nn.Linear(self.dim, 2)

    def full_state(self, head) -> dict[str, Any]:
        """The store model's state dict with the final layer's weights taken from ``head``."""
        out = dict(self.state)
        for name, value in head.state_dict().items():
            out[self.prefix + name] = value.detach().to("cpu", copy=True)
        return out

    def head_state(self, model_state: dict[str, Any]) -> dict[str, Any]:
        """The final layer's entries of a full model's state dict, as the head's."""
        return {k: model_state[self.prefix + k] for k in ("weight", "bias")}

    def load_head(self, checkpoint: str | os.PathLike, device="cpu"):
        """The head of a full-model checkpoint written by a head run, in eval mode."""

        ckpt, _ = load_checkpoint(checkpoint)
        head = self.new_head()
        head.load_state_dict(self.head_state(ckpt["model"]))
        return head.to(device).eval()


@dataclass(frozen=True)
class HeadData:
    """What :func:`prepare` gives the loop."""

    train_set: FeatureDataset
    val_set: FeatureDataset
    test_set: FeatureDataset | None
    source: HeadSource


def with_store_settings(config):
    """``config`` with the feature store's model name and patch settings.

    A head run's ``config.json`` then says what its checkpoints are (a ``smallcnn``
    cut at 16 px...) and ``patchwise predict`` cuts slides as the store did.
    """

    spec = read_spec(config.features)
    patch = PatchSettings(**spec["patch"])
    return dataclasses.replace(config, model=spec["model_name"], patch=patch, weights=None)


def with_cohort_attribute(features, config):
    """``features`` with ``config.attribute`` added to its table (an intensity or border
    attribute the store's patch tables lack), computed from the cohort's slides as full
    training does: once per slide, cached beside its patch table (docs/attributes.md).

    The store was checked to be the manifest's cohort (same cache keys), so slide ``i``'s
    rows are its cached table's rows in order.
    """

    cohort = load_cohort(
        config.manifest, config.patch, cache_dir=config.cache_dir, attribute=config.attribute
    )
    by_slide = {
        s.entry.slide: s.table[config.attribute].to_numpy()
        for slides in cohort.splits.values()
        for s in slides
    }
    values = np.concatenate([by_slide[slide] for slide in features.slide_ids])
    if len(values) != len(features.table):  # pragma: no cover - the cohort check prevents it
        raise PatchwiseError("the store's patches are not the cohort's", path=features.path)
    table = features.table.assign(**{config.attribute: values})
    return dataclasses.replace(features, table=table)


def prepare(config) -> HeadData:
    """Read the store, check it is the manifest's cohort, split it by the manifest."""

    store = Path(config.features)
    features = read_features(store)
    entries = read_manifest(config.manifest)
    keys = {e.slide: cache_key(e, config.patch) for e in entries}
    check_matches_cohort(features.spec, keys, store, config.manifest)
    if config.attribute not in features.table:
        features = with_cohort_attribute(features, config)
    split_of = {e.slide: e.split for e in entries}
    splits = features.table["slide"].map(split_of).to_numpy()

    def dataset(split: str) -> FeatureDataset | None:
        rows = np.flatnonzero(splits == split)
        if split == "test" and not len(rows):
            return None
        return FeatureDataset(
            features.vectors[rows],
            features.table.iloc[rows],
            config.group_threshold,
            config.attribute,
        )

    ckpt, meta = load_checkpoint(store / MODEL_FILE)
    keep = ("model_name", "in_channels", "mean", "std", "patch_size", "encoder")
    source = HeadSource(
        state=dict(ckpt["model"]),
        meta={k: meta[k] for k in keep if k in meta},
        prefix=head_prefix(meta["model_name"]),
        dim=int(features.spec["dim"]),
    )
    data = HeadData(dataset("train"), dataset("val"), dataset("test"), source)
    if not len(data.train_set) or not len(data.val_set):
        raise PatchwiseError("the feature store holds no training or validation patch", path=store)
    return data
