"""The method interface shared by the training loop.

A method says two things (as in SubpopBench): how the batches of a step are drawn
(:meth:`Method.make_sampler`) and how the loss is formed from them (:meth:`Method.loss`).
The loop in :mod:`napari_patchwise.training.loop` does everything else: data, optimiser,
evaluation, checkpoints. Adding a method is adding one module with one subclass and
listing it in :mod:`napari_patchwise.training.methods`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...groups import alpha_from_counts, counts_of_groups, group_ids
from ..samplers import BatchSampler, UniformSampler

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class TrainingGroups:
    """What a method knows about the training split: label and group of each patch.

    ``g = y * A + a`` with ``a = tissue_ratio >= tau`` (``docs/methods.md``, notation).
    """

    labels: np.ndarray
    groups: np.ndarray
    tau: float

    @classmethod
    def from_table(cls, label, tissue_ratio, tau: float) -> TrainingGroups:
        """Groups of a patch table's rows at ``tau`` (via :func:`groups.group_ids`)."""
        label = np.asarray(label, dtype=np.int64)
        return cls(label, group_ids(label, tissue_ratio, tau).astype(np.int64), float(tau))

    @property
    def counts(self) -> np.ndarray:
        """``n_g``: training patches per group (length K * A; :func:`groups.counts_of_groups`)."""
        return counts_of_groups(self.groups)

    @property
    def alpha(self) -> np.ndarray:
        """``alpha[y, a] = n_(y,a) / n_y``; a row of NaN for an empty class
        (:func:`groups.alpha_from_counts`, the same shares as :func:`groups.alphas`)."""
        return alpha_from_counts(self.counts)


Batch = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]  # (x, y, group)

#: The options of the SGD steps: unused by a method that is not trained by steps (DFR).
SGD_OPTIONS: tuple[str, ...] = (
    "steps", "batch_size", "lr", "weight_decay", "momentum", "eval_every"
)  # fmt: skip


class Method:
    """Base class: uniform batches, mean cross entropy (i.e. ERM).

    Parameters
    ----------
    data : TrainingGroups
        Labels and groups of the training patches.
    config : object
        The run's :class:`~napari_patchwise.training.loop.TrainConfig` (methods read their own
        hyperparameters from it: ``beta``, ``c``, ``eta``, ``class_balanced``...).
    """

    name: ClassVar[str] = "base"
    #: The :class:`~napari_patchwise.training.loop.TrainConfig` options this method reads, its
    #: hyperparameters. Another method's hyperparameter has no effect here: a flag or a
    #: sweep axis naming one is refused (``train_config.unused_options``).
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: Trained by SGD steps; False: fitted otherwise, :data:`SGD_OPTIONS` have no effect.
    sgd: ClassVar[bool] = True

    def __init__(self, data: TrainingGroups, config: Any):
        self.data = data
        self.config = config
        self.check_options(config)
        self.validate()

    # -- what subclasses override --------------------------------------------------
    @classmethod
    def check_options(cls, config: Any) -> None:
        """Refuse hyperparameter values no data can make work (PatchwiseError).

        Needs only ``config``, so :meth:`TrainConfig.validate
        <napari_patchwise.training.loop.TrainConfig.validate>` runs it before any slide is read;
        the checks that need the training groups are :meth:`validate`'s.
        """

    def validate(self) -> None:
        """Refuse hyperparameters or data the method cannot work with (PatchwiseError)."""

    def prepare(self, stage: Any) -> None:
        """Work before the first step, e.g. a first-stage model (JTT, inferred groups).

        ``stage`` is the loop's :class:`~napari_patchwise.training.loop.FirstStage`: it trains an
        ERM model of the same data into a subfolder of the run and gives its
        probabilities of the training patches. Called after a resume restored
        :meth:`load_state_dict`, so a method whose state holds the result skips it.
        """

    def make_sampler(self, batch_size: int, seed: int) -> BatchSampler:
        return UniformSampler(self.data.labels, self.data.groups, batch_size, seed)

    def loss(self, model: torch.nn.Module, batches: list[Batch]) -> tuple[torch.Tensor, dict]:
        """The scalar loss to back-propagate, and floats to log (``loss`` at least)."""
        import torch.nn.functional as F

        (x, y, _g) = batches[0]
        loss = F.cross_entropy(model(x).float(), y)
        return loss, {"loss": float(loss.detach())}

    def to(self, device: torch.device | str) -> Method:  # noqa: ARG002 - no state here
        """Move tensor state (e.g. GroupDRO's q) to the model's device."""
        return self

    def state_dict(self) -> dict:
        """Tensor or plain-Python state to checkpoint (loadable with weights_only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
