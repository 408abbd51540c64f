"""Revive the dead atoms of a trained model without changing what it decodes (one-off repair).

    python bench/revive_atoms.py SRC DST --data ../shared/data/train [--row-scale 1.0 --preserve]

SRC is a training checkpoint (.pt) or shipped weights (.safetensors, also the older format with
one threshold per atom); DST is a checkpoint to resume from (no optimiser state: training
restarts Adam with a warm-up). The repair is recorded in the checkpoint's run history.

Why: the first shipped model (33k iterations) had driven 222 of its 256 atoms to thresholds of
about 3 quantiser steps. Those atoms never fire, so they get no gradient and never come back:
the "sparse" code had become a dense 34-channel latent, and PSNR saturated near 28-29 dB at
every quality level (unrounded codes gave the same PSNR; finer steps did not help). For each
atom that fires on fewer than 0.1% of positions at the top level (on a few training photos):

- an encoder row (W_e) of the live rows' mean norm, orthogonal to the live rows (it reads the
  part of the latent the live atoms ignore) times ``--row-scale``; a threshold of 0.5 steps;
  its own ISTA block (S = I − W_e·D among revived atoms, no coupling to live ones, so the live
  codes do not change at all); the live atoms' mean quantiser step of each level (the dead
  atoms' steps had drifted to 6-14x larger, so they could only fire as rare, huge spikes);
- with ``--preserve``: a dictionary column orthogonal (after the top level's inverse gain) to
  the live atoms, and the synthesis' first convolution projected onto the live atoms' span, so
  the decoder ignores the revived atoms at first and learns to use them with a first-order
  gradient (a function-preserving expansion, as in Net2Net). Without it: a random column;
- fresh entropy-model parameters (the old ones had learned "always zero");
- a rate phase-in (``sccodec.train.loop.RatePhaseIn``): for ``--hold`` steps the rate term
  does not push on the revived atoms' codes, then its push returns over ``--ramp`` steps.

With ``--keep-rows`` (for training with the dead-zone gradient, ``sccodec train
--dead-zone-grad``): only the thresholds, steps and entropy parameters of the dead atoms are
reset; their rows, columns and the Adam state of a ``.pt`` source are kept, and there is no
rate phase-in. The leak keeps the distortion gradient on the silent atoms, so they no longer
need protection from the rate term, only thresholds and steps they can fire under.

Measured on 2026-11-23 (run 9 in bench/results/training_log.md), ``--keep-rows`` with
``--dead-zone-grad 0.1`` from the shipped model's checkpoint: all 256 atoms fired at first, but
the code shrank back within 25 minutes (6.8k steps) to 34 atoms at the low levels and 46 at the
top one, with held-out PSNR 0.3 dB below the start at every level. Discarded.

What did not work (each tried for a few hundred to 3k steps, recorded in the run history):
without ``--preserve`` (row scale 0.05, threshold 0.2 steps) no revived atom came alive in 3k
steps; with it but without resetting the quantiser steps, the revived atoms fired only as rare
spikes; with reset steps but no rate phase-in, Adam erased the small new encoder rows within
~150 steps, before the synthesis had learned to use them.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import torch
from safetensors.torch import load_file

from sccodec.model.scvae import MAX_THRESHOLD, SCVAE, ModelConfig
from sccodec.train.data import list_images, load_rgb, split_holdout
from sccodec.train.loop import RatePhaseIn
from sccodec.weights import TABLE_PREFIX

REVIVED_THRESHOLD = 0.5  # in steps
DEAD_USAGE = 1e-3  # fraction of positions at the top level


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def _load(src: str) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """(state dict in the current format, config, training record) of a checkpoint or weights file."""
    if src.endswith(".pt"):
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
        record = {"runs": ckpt.get("runs", []), "iterations": ckpt["step"], "wall_seconds": ckpt["wall_seconds"],
                  "optimizer": ckpt.get("optimizer"), "history": ckpt.get("history", [])}
        return ckpt["model"], ModelConfig.from_dict(ckpt["model_config"]), record
    sidecar = json.loads(Path(src).with_suffix(".json").read_text())
    state = {k: v for k, v in load_file(src).items() if not k.startswith(TABLE_PREFIX)}
    config = ModelConfig.from_dict(sidecar["config"])
    if "threshold_ratio" in state:  # first format: one unbounded threshold per atom, in steps
        ratio = torch.nn.functional.softplus(state.pop("threshold_ratio")).clamp_max(0.95 * MAX_THRESHOLD)
        state["threshold_logit"] = _logit(ratio / MAX_THRESHOLD)[None].repeat(config.qualities, 1)
    return state, config, sidecar.get("training", {})


def _usage(state: dict, config: ModelConfig, photos: list[Path]) -> torch.Tensor:
    model = SCVAE(config)
    model.load_state_dict(state)
    counts = torch.zeros(config.atoms)
    for path in photos:
        x = load_rgb(path)[None].float() / 255
        x = x[..., : x.shape[-2] // 16 * 16, : x.shape[-1] // 16 * 16]
        counts += (model.encode_symbols(x, config.qualities - 1) != 0).float().mean(dim=(1, 2))
    return counts / len(photos)


def _orthogonal_to(basis: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n random unit columns orthogonal to the columns of ``basis`` (d x r)."""
    q, _ = torch.linalg.qr(basis)
    r = torch.randn(basis.shape[0], n, generator=gen, dtype=basis.dtype)
    r = r - q @ (q.T @ r)
    return r / r.norm(dim=0, keepdim=True)


@click.command()
@click.argument("src", type=click.Path(dir_okay=False, exists=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True), help="Training photos (usage count).")
@click.option("--row-scale", default=1.0, show_default=True, help="Revived encoder rows, relative to the live ones.")
@click.option("--preserve/--no-preserve", default=True, show_default=True, help="Function-preserving expansion.")
@click.option("--hold", default=1000, show_default=True, help="Steps free of rate pressure (RatePhaseIn).")
@click.option("--ramp", default=3000, show_default=True, help="Steps over which the rate pressure returns.")
@click.option("--seed", default=0, show_default=True)
@click.option("--keep-rows", is_flag=True, help="Reset only thresholds, steps and entropy parameters (see above).")
def main(src: str, dst: str, data: str, row_scale: float, preserve: bool, hold: int, ramp: int, seed: int,
         keep_rows: bool) -> None:
    state, config, record = _load(src)
    photos = split_holdout(list_images(data))[0][:8]
    dead = _usage(state, config, photos) < DEAD_USAGE
    n = int(dead.sum())
    if not keep_rows:
        _fresh_rows(state, dead, torch.Generator().manual_seed(seed), row_scale, preserve)
    _reset_levels(state, config, dead)
    model = SCVAE(config)
    model.load_state_dict(state)  # strict: the repaired state must match the current architecture
    step = record.get("iterations", 0)
    repair = {"repair": "bench/revive_atoms.py", "at_step": step, "revived_atoms": n}
    extra = {}
    if keep_rows:
        repair["keep_rows"] = True
        extra = {"optimizer": record.get("optimizer"), "history": record.get("history", [])} if record.get("optimizer") else {}
    else:
        phase_in = RatePhaseIn(atoms=dead.nonzero()[:, 0].tolist(), start_step=step, hold=hold, ramp=ramp)
        repair.update(row_scale=row_scale, preserve=preserve, rate_phase_in={"hold": hold, "ramp": ramp})
        extra = {"rate_phase_in": asdict(phase_in)}
    torch.save({"model": model.state_dict(), "model_config": config.to_dict(), "runs": record.get("runs", []) + [repair],
                "step": step, "wall_seconds": record.get("wall_seconds", 0.0)} | extra, dst)
    click.echo(f"revived {n} of {config.atoms} atoms ({'keep rows' if keep_rows else f'row scale {row_scale}, preserve {preserve}'}); wrote {dst}")


def _fresh_rows(state: dict, dead: torch.Tensor, gen: torch.Generator, row_scale: float, preserve: bool) -> None:
    """New encoder rows, dictionary columns and ISTA block for the dead atoms (in place)."""
    live = ~dead
    n = int(dead.sum())

    w_e = state["lista.w_e"]
    w_e[dead] = _orthogonal_to(w_e[live].T, n, gen).T * w_e[live].norm(dim=1).mean() * row_scale
    d = state["lista.dictionary"]
    d = d / d.norm(dim=0, keepdim=True)
    inv_gain = torch.exp(state["log_inv_gain"][-1])  # top level: where new atoms matter most
    if preserve:
        live_span = inv_gain[:, None] * d[:, live]
        fresh = _orthogonal_to(live_span, n, gen) / inv_gain[:, None]
        q, _ = torch.linalg.qr(live_span)
        w1 = state["g_s.0.0.weight"]  # (out, M, 3, 3): project its input onto the live span
        state["g_s.0.0.weight"] = torch.einsum("omij,mn->onij", w1, q @ q.T)
    else:
        fresh = torch.randn(d.shape[0], n, generator=gen)
    d[:, dead] = fresh / fresh.norm(dim=0, keepdim=True)
    state["lista.dictionary"] = d
    s = state["lista.s"]
    s[dead, :] = 0
    s[:, dead] = 0
    block = torch.eye(n) - w_e[dead] @ d[:, dead]
    s[dead.nonzero()[:, 0][:, None], dead.nonzero()[:, 0][None, :]] = block


def _reset_levels(state: dict, config: ModelConfig, dead: torch.Tensor) -> None:
    """Thresholds, quantiser steps and entropy parameters the dead atoms can fire under (in place)."""
    live = ~dead
    state["threshold_logit"][:, dead] = _logit(torch.tensor(REVIVED_THRESHOLD / MAX_THRESHOLD))
    # dead atoms' steps had drifted to 6-14x the live ones': they fired rarely, as huge spikes
    state["log_step"][:, dead] = state["log_step"][:, live].mean(dim=1, keepdim=True)
    fresh_entropy = SCVAE(config).entropy.state_dict()
    for name in ("zero_logit", "log_scale"):
        state[f"entropy.{name}"][:, dead] = fresh_entropy[name][:, dead]


if __name__ == "__main__":
    main()
