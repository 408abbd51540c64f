"""Add quality levels below the lowest one of a checkpoint (one-off model surgery).

    python bench/extend_levels.py SRC.pt DST.pt --lambda 0.0009 --lambda 0.00045

Why: issue #2 asks for a lowest level at or under 0.15 bpp on Kodak; the first model's lowest
(λ = 0.0018) gave 0.19 bpp. Each new level gets the per-level parameters of the ladder
extrapolated one rung down in log space (gain, inverse gain, quantiser steps: 2·row₀ − row₁)
and copies of the lowest level's thresholds and entropy parameters, which training then adapts.
Levels stay ordered low to high, so the new ones take the lowest quality numbers. The optimiser
state is dropped (its shapes change); training restarts Adam with a warm-up.
"""
from __future__ import annotations

import click
import torch

from sccodec.model.scvae import SCVAE, ModelConfig

LADDER = ("log_gain", "log_inv_gain", "log_step")  # extrapolated
COPIED = ("threshold_logit", "entropy.zero_logit", "entropy.log_scale")  # copied from the lowest level


@click.command()
@click.argument("src", type=click.Path(dir_okay=False, exists=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--lambda", "lambdas", type=float, multiple=True, required=True,
              help="λ of a new level (below the current lowest); repeat for more.")
def main(src: str, dst: str, lambdas: tuple[float, ...]) -> None:
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    config = ModelConfig.from_dict(ckpt["model_config"])
    new = sorted(lambdas, reverse=True)  # nearest rung first
    if new[0] >= config.lambdas[0]:
        raise click.UsageError(f"new levels must lie below the lowest λ {config.lambdas[0]}")
    state = ckpt["model"]
    for lam in new:
        for name in LADDER:
            rows = state[name]
            state[name] = torch.cat([2 * rows[:1] - rows[1:2], rows])
        for name in COPIED:
            state[name] = torch.cat([state[name][:1], state[name]])
    config = ModelConfig.from_dict(config.to_dict() | {"lambdas": tuple(sorted(new)) + config.lambdas})
    model = SCVAE(config)
    model.load_state_dict(state)  # strict: shapes must match the new level count
    ckpt.pop("optimizer", None)
    ckpt["model"], ckpt["model_config"] = model.state_dict(), config.to_dict()
    ckpt.setdefault("runs", []).append({"repair": "bench/extend_levels.py", "at_step": ckpt["step"],
                                        "new_lambdas": sorted(new)})
    torch.save(ckpt, dst)
    click.echo(f"{config.qualities} levels, λ = {config.lambdas}; wrote {dst}")


if __name__ == "__main__":
    main()
