"""The variable-rate training loop: resumable, time- or step-bounded, checkpointing atomically.

Each sample in a batch draws its own quality level q, so every step trains every rate:
    loss = mean_i [ bpp_i + λ[q_i]·255²·MSE_i + latent_weight·‖y_q − D z‖² ]
"""
from __future__ import annotations

import json
import math
import os
import random
import shlex
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from sccodec.model.scvae import SCVAE, ModelConfig
from sccodec.train.data import PatchSampler, list_images, split_holdout


@dataclass
class TrainConfig:
    data: str
    checkpoint: str = "train_runs/latest.pt"
    steps: int = 0  # 0: bounded by minutes
    minutes: float = 0.0
    crop: int = 128
    batch: int = 8
    lr: float = 1e-3
    fast_lr: float = 5e-3  # gains, steps, thresholds, entropy parameters
    warmup: int = 500
    final_decay: float = 0.15  # last fraction of the run at lr / 10
    # ‖y_q − D z‖² (SC-VAE latent term). Off by default: measured after the per-level gain it
    # penalised large gains and collapsed the quality levels in our first run.
    latent_weight: float = 0.0
    checkpoint_minutes: float = 5.0
    log_every: int = 100
    seed: int = 0
    bf16: bool = True


def command_line(cfg: dict, resume: str | None) -> str:
    """The ``sccodec train`` invocation that reproduces a TrainConfig (recorded in sidecars)."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name != "data"}
    parts = ["sccodec", "train", "--data", cfg["data"]]
    for name, default in defaults.items():
        value = cfg.get(name, default)
        if value != default:
            flag = name.replace("_", "-")
            parts += [f"--{flag}" if value else f"--no-{flag}"] if isinstance(value, bool) else [f"--{flag}", str(value)]
    if resume:
        parts += ["--resume", resume]
    return shlex.join(parts)


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_resume(path: str) -> dict:
    """A checkpoint, or shipped weights (``.safetensors``: no optimiser state, which restarts)."""
    if not path.endswith(".safetensors"):
        return torch.load(path, map_location="cpu", weights_only=False)
    from sccodec.weights import read_model_file

    model_file = read_model_file(path)
    sidecar = Path(path).with_suffix(".json")
    training = json.loads(sidecar.read_text()).get("training", {}) if sidecar.is_file() else {}
    return {"model": model_file.build().state_dict(), "model_config": model_file.config.to_dict(),
            "step": training.get("iterations", 0), "wall_seconds": training.get("wall_seconds", 0.0),
            "runs": training.get("runs", [])}


def _param_groups(model: SCVAE, cfg: TrainConfig) -> list[dict]:
    fast_names = ("log_gain", "log_inv_gain", "log_step", "threshold_ratio", "entropy.")
    fast, slow = [], []
    for name, p in model.named_parameters():
        (fast if name.startswith(fast_names) else slow).append(p)
    return [{"params": slow, "lr": cfg.lr, "base_lr": cfg.lr},
            {"params": fast, "lr": cfg.fast_lr, "base_lr": cfg.fast_lr}]


def rd_loss(model: SCVAE, x: torch.Tensor, q: torch.Tensor, latent_weight: float) -> dict[str, torch.Tensor]:
    out = model(x, q)
    pixels = x.shape[-2] * x.shape[-1]
    bpp = -torch.log2(out["likelihoods"]).sum(dim=(1, 2, 3)) / pixels
    mse = (out["x_hat"] - x).pow(2).mean(dim=(1, 2, 3))
    lam = torch.tensor(model.config.lambdas, device=x.device)[q]
    loss = (bpp + lam * 255**2 * mse + latent_weight * out["latent_error"]).mean()
    psnr = (-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean().detach(), "psnr": psnr, "nonzero": out["nonzero"].mean().detach()}


def train(cfg: TrainConfig, model_config: ModelConfig | None = None, resume: str | None = None) -> Path:
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    ckpt_path = Path(cfg.checkpoint)
    state = None
    if resume:
        state = _load_resume(resume)
        model_config = ModelConfig.from_dict(state["model_config"])
    model = SCVAE(model_config or ModelConfig()).to(memory_format=torch.channels_last)
    model.bf16_transforms = cfg.bf16
    opt = torch.optim.Adam(_param_groups(model, cfg))
    step, elapsed_before, history, runs = 0, 0.0, [], []
    if state is not None:
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        step = state.get("step", 0)
        elapsed_before = state.get("wall_seconds", 0.0)
        history = state.get("history", [])
        runs = state.get("runs", [])
    start_step = step
    fresh_optimizer = state is None or "optimizer" not in state  # warm up Adam's statistics

    train_paths, _ = split_holdout(list_images(cfg.data))
    sampler = PatchSampler(train_paths, cfg.crop, seed=cfg.seed + step)
    t0 = time.time()
    last_ckpt = t0
    budget_s = cfg.minutes * 60

    def progress() -> float:
        if cfg.steps:
            return (step - start_step) / cfg.steps
        return (time.time() - t0) / budget_s

    def checkpoint() -> None:
        this_run = {"command": command_line(asdict(cfg), resume), "start_step": start_step, "end_step": step,
                    "wall_seconds": round(time.time() - t0, 1)}
        _atomic_save({"runs": runs + [this_run], "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                      "model_config": model.config.to_dict(), "train_config": asdict(cfg),
                      "wall_seconds": elapsed_before + time.time() - t0, "history": history},
                     ckpt_path)

    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "nonzero": 0.0}
    n_acc, skipped = 0, 0
    while progress() < 1.0:
        frac = progress()
        warm = min(1.0, (step - start_step + 1) / cfg.warmup) if fresh_optimizer else 1.0
        decay = 0.1 if frac > 1 - cfg.final_decay else 1.0
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * warm * decay
        x = sampler.batch(cfg.batch).contiguous(memory_format=torch.channels_last)
        q = torch.randint(0, model.config.qualities, (cfg.batch,))
        res = rd_loss(model, x, q, cfg.latent_weight)
        if not torch.isfinite(res["loss"]):
            skipped += 1
            continue
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        if not math.isfinite(grad_norm.item()):
            skipped += 1
            continue
        opt.step()
        step += 1
        for k in acc:
            acc[k] += res[k].detach().item()
        n_acc += 1
        if step % cfg.log_every == 0:
            rate = (step - start_step) / (time.time() - t0)
            remaining = (1 - progress()) * (cfg.steps / max(rate, 1e-9) if cfg.steps else budget_s)
            line = {k: round(v / n_acc, 4) for k, v in acc.items()}
            line.update(step=step, it_s=round(rate, 2), eta_min=round(remaining / 60, 1), skipped=skipped)
            print(json.dumps(line), flush=True)
            history.append(line)
            acc = {k: 0.0 for k in acc}
            n_acc = 0
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint()
    return ckpt_path
