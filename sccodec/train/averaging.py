"""The mean of the weights over a run's annealed tail (stochastic weight averaging, SWA).

    lr/10 tail:  step k ─▶ weights w_k ─▶ mean_k = mean_(k-1) + (w_k − mean_(k-1)) / k
    checkpoint:  "model" = w_last (what Adam's state belongs to; a resumed run goes on from it)
                 "tail_average" = {mean, count, first_step} (what ``sccodec export`` ships)

Why: at lr/10 the weights still wander around the minimum they settle in; their mean sits
nearer its centre. On held-out photos the mean of the tail validates at least as well as the
last step's weights, and keeping it costs one copy of the weights, so it is on by default.
Only floating-point entries are averaged; integer buffers are taken from the last step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.optim.swa_utils import get_swa_multi_avg_fn

_AVERAGE_STEP = get_swa_multi_avg_fn()  # torch's in-place (foreach) running-mean update


@dataclass
class TailAverage:
    """Running mean of a model's floating-point state since ``first_step``."""

    first_step: int
    count: int = 0
    mean: dict[str, torch.Tensor] = field(default_factory=dict)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        current = {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point()}
        if not self.mean:
            self.mean = {k: v.float().clone() for k, v in current.items()}
        else:
            names = list(self.mean)
            _AVERAGE_STEP([self.mean[k] for k in names],
                          [current[k].float() for k in names], self.count)
        self.count += 1

    def weights(self, last: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A full state dict: the mean where there is one (in each entry's own dtype), else ``last``."""
        return {k: self.mean[k].to(v.device, v.dtype) if k in self.mean else v for k, v in last.items()}

    def to_dict(self) -> dict:
        return {"first_step": self.first_step, "count": self.count,
                "mean": {k: v.cpu() for k, v in self.mean.items()}}

    @classmethod
    def from_dict(cls, saved: dict) -> TailAverage:
        return cls(first_step=saved["first_step"], count=saved["count"], mean=saved["mean"])
