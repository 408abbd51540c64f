"""The optimiser: Adam over three parameter groups, its learning-rate schedule, and carrying its
state over to a grown model.

    group 0  the networks (transforms, LISTA)                    --lr
    group 1  per-level gains and steps, thresholds, entropy       --fast-lr
    group 2  the synthesis' residual blocks, if the model has any  --blocks-lr (default --lr)

    lr(step) = base_lr · warm-up (linear over --warmup steps, where Adam's statistics are new)
                       · (1/10 over the last --final-decay fraction of the run)
"""
from __future__ import annotations

import torch

from sccodec.model.scvae import SCVAE
from sccodec.train.config import TrainConfig

BLOCKS_GROUP = 2  # index of the synthesis blocks' parameter group, when the model has blocks
FAST_PREFIXES = ("log_gain", "log_inv_gain", "log_step", "threshold_logit", "entropy.")


def grouped_names(model: SCVAE) -> list[list[str]]:
    """Parameter names per optimizer group: networks, per-level and entropy parameters, then the
    synthesis' residual blocks if any (their own group: their own --blocks-lr and warm-up)."""
    fast, slow, blocks = [], [], []
    for name, _ in model.named_parameters():
        (blocks if name.startswith("g_s.refine.") else fast if name.startswith(FAST_PREFIXES) else slow).append(name)
    return [slow, fast] + ([blocks] if blocks else [])


def param_groups(model: SCVAE, cfg: TrainConfig) -> list[dict]:
    params = dict(model.named_parameters())
    rates = (cfg.lr, cfg.fast_lr, cfg.blocks_lr or cfg.lr)
    return [{"params": [params[n] for n in names], "lr": lr, "base_lr": lr}
            for names, lr in zip(grouped_names(model), rates)]


def make_optimizer(model: SCVAE, cfg: TrainConfig, saved: dict | None, saved_keys: set[str]) -> torch.optim.Adam:
    """Adam over ``param_groups``, with the saved state (of the model whose state dict had
    ``saved_keys``) if any.

    Adam's state is keyed by position; it is carried over by parameter name, so a grown model
    keeps the statistics of every parameter it had (blocks already trained included) and only
    its new blocks start afresh. Growing only adds parameters, so the saved model's positions
    are the current ones without the new names.
    """
    opt = torch.optim.Adam(param_groups(model, cfg))
    if saved is None:
        return opt
    names = [n for group in grouped_names(model) for n in group]
    old = {name: i for i, name in enumerate(n for n in names if n in saved_keys)}
    current = opt.state_dict()
    current["state"] = {i: saved["state"][old[name]] for i, name in enumerate(names)
                        if name in old and old[name] in saved["state"]}
    for i, group in enumerate(saved["param_groups"][: len(current["param_groups"])]):
        current["param_groups"][i] = group | {"params": current["param_groups"][i]["params"],
                                              "base_lr": current["param_groups"][i]["base_lr"]}
    opt.load_state_dict(current)  # base_lr: this run's --lr/--fast-lr/--blocks-lr, not the saved ones
    return opt


def set_learning_rates(opt: torch.optim.Optimizer, warm: float, warmed: list[int], decay: float) -> None:
    """Each group at base_lr · decay, times ``warm`` for the groups still warming up."""
    for i, group in enumerate(opt.param_groups):
        group["lr"] = group["base_lr"] * (warm if i in warmed else 1.0) * decay
