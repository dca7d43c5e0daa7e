"""GroupDRO (Sagawa et al., ICLR 2020): an online worst-group objective."""

from __future__ import annotations

from ...errors import PatchwiseError
from ...groups import N_GROUPS
from .base import Method


class GroupDRO(Method):
    """Keep group weights ``q``; each step ``q[g] *= exp(eta * mean_loss_g)`` (detached)
    for the groups present in the batch, normalise, and minimise ``sum_g q[g] mean_loss_g``.

    ``q`` starts uniform, lives on the model's device and is checkpointed, so a resumed
    run continues with the same weights.
    """

    name = "groupdro"
    hyperparameters = ("eta",)

    @classmethod
    def check_options(cls, config) -> None:
        eta = float(config.eta)
        if not eta > 0:
            raise PatchwiseError(f"GroupDRO needs eta > 0, got {eta}", hint="e.g. --eta 0.01")

    def validate(self):
        self.q = None

    def _ensure_q(self, device):
        import torch

        if self.q is None:
            self.q = torch.full((N_GROUPS,), 1.0 / N_GROUPS, dtype=torch.float32, device=device)
        elif self.q.device != torch.device(device):
            self.q = self.q.to(device)

    def to(self, device):
        self._ensure_q(device)
        return self

    def loss(self, model, batches):
        import torch
        import torch.nn.functional as F

        x, y, g = batches[0]
        self._ensure_q(x.device)
        n_groups = self.q.numel()
        ce = F.cross_entropy(model(x).float(), y, reduction="none")
        sums = torch.zeros(n_groups, device=ce.device, dtype=ce.dtype).index_add(0, g, ce)
        counts = torch.bincount(g, minlength=n_groups).to(ce.dtype)
        present = counts > 0
        group_loss = sums / counts.clamp(min=1)
        with torch.no_grad():
            step = torch.where(present, float(self.config.eta) * group_loss, 0.0)
            q = self.q * torch.exp(step)
            self.q = q / q.sum()
        loss = (self.q * group_loss).sum()  # absent groups have group_loss 0
        logs = {"loss": float(loss.detach()), "ce": float(ce.detach().mean())}
        logs.update({f"q{i}": float(v) for i, v in enumerate(self.q.tolist())})
        return loss, logs

    def state_dict(self):
        return {} if self.q is None else {"q": self.q.detach().cpu().clone()}

    def load_state_dict(self, state):
        if "q" in state:
            self.q = state["q"].clone()
