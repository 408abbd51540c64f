"""The variable-rate training loop: resumable, time- or step-bounded, checkpointing atomically.

Each sample in a batch draws its own quality level q, so every step trains every rate:
    loss = mean_i [ bpp_i + λ[q_i]·255²·MSE_i + latent_weight·‖y_q − D z‖² ]
"""
from __future__ import annotations

import json
import math
import pickle
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from sccodec.atomic import atomic_path, remove_stale_temps
from sccodec.errors import ParameterError, SCVError
from sccodec.model.scvae import SCVAE, ModelConfig
from sccodec.train.averaging import TailAverage
from sccodec.train.data import PatchSampler, list_images, split_holdout
from sccodec.train.distributed import has_native_bf16, setup
from sccodec.train.validate import load_validation, validate


@dataclass
class TrainConfig:
    data: str
    checkpoint: str = "train_runs/latest.pt"
    steps: int = 0  # this run's steps, counted from the resume point; 0: no step bound
    minutes: float = 0.0  # wall-time bound; 0: none. With both bounds the first one reached ends the run
    crop: int = 128
    batch: int = 8
    lr: float = 1e-3
    fast_lr: float = 5e-3  # gains, steps, thresholds, entropy parameters
    blocks_lr: float = 0.0  # the synthesis' residual blocks; 0: lr (new blocks in an old model may want more)
    warmup: int = 500
    final_decay: float = 0.15  # last fraction of the run at lr / 10
    tail_average: bool = True  # keep the mean of the weights over the lr/10 tail (averaging.py)
    # ‖y_q − D z‖² (SC-VAE latent term). Off by default: measured after the per-level gain it
    # penalised large gains and collapsed the quality levels in our first run.
    latent_weight: float = 0.0
    checkpoint_minutes: float = 5.0
    log_every: int = 100
    seed: int = 0
    bf16: bool = True
    compile: bool = True  # torch.compile the conv transforms (SCVAE.compile_transforms)
    device: str = "auto"  # auto: this rank's GPU if CUDA is available, else CPU
    validate_minutes: float = 10.0  # held-out validation (rank 0); 0 turns it off
    dead_zone_grad: float = 0.0  # gradient slope below the LISTA thresholds (lista.soft_threshold)
    lambdas: tuple[float, ...] | None = None  # a new model's quality levels; None: ModelConfig's
    nested_atoms: bool = False  # a new model's levels use nested atom sets (SCVAE.atom_mask)
    fixed_ladder: bool = False  # a new model's per-level gains and steps are fixed (ModelConfig)
    nonlinearity: str = "leaky"  # a new model's transforms (ModelConfig.nonlinearity)
    # a new model's residual blocks in g_s; with a resume, a model with fewer grows to this many
    synthesis_blocks: int = 0

    def new_model_options(self) -> dict:
        """The ModelConfig fields this run sets away from their defaults (a new model's shape)."""
        return {name: getattr(self, name) for name in NEW_MODEL_FIELDS
                if getattr(self, name) != getattr(TrainConfig, name)}


#: TrainConfig fields that are ModelConfig fields of the same name: they shape a new model only.
NEW_MODEL_FIELDS = ("lambdas", "nested_atoms", "fixed_ladder", "nonlinearity", "synthesis_blocks")
#: NEW_MODEL_FIELDS a resumed model may take too: it grows (see grown_config).
GROWABLE_FIELDS = ("synthesis_blocks",)
#: The recipe a resumed run takes from its checkpoint unless the command line gives it again
#: (not the run's bounds, data, device, bf16 or checkpoint path, which belong to this run and
#: machine: bf16 is on wherever the hardware has it, see has_native_bf16).
RESUMED_FIELDS = ("crop", "batch", "lr", "fast_lr", "blocks_lr", "warmup", "final_decay", "latent_weight",
                  "checkpoint_minutes", "log_every", "seed", "compile", "validate_minutes",
                  "dead_zone_grad", "tail_average")
#: Consecutive steps with a non-finite loss or gradient after which the run stops.
MAX_SKIPPED_IN_A_ROW = 100


def resumed_config(cfg: TrainConfig, saved: dict | None, given: frozenset[str] | None,
                   model_config: ModelConfig) -> tuple[TrainConfig, dict]:
    """This run's config when continuing a saved one: -> (config, the options taken from it).

    Why: before this, a resumed run silently went back to the defaults of every option not
    repeated (a GDN fine-tune at lr 5e-5 and 256 px crops resumed at lr 1e-3 and 128 px).
    ``given``: the options set on the command line (None: all of them, as from Python). The
    model-shape fields are recorded as the model has them, so the sidecar does not contradict it.
    """
    inherited = {name: saved[name] for name in RESUMED_FIELDS
                 if saved and name in saved and given is not None and name not in given
                 and saved[name] != getattr(cfg, name)}
    shape = {name: getattr(model_config, name) for name in NEW_MODEL_FIELDS}
    return replace(cfg, **inherited, **shape), inherited


@dataclass(frozen=True)
class RatePhaseIn:
    """Revived atoms (bench/revive_atoms.py) first learn to be useful, free of rate pressure.

    The rate term's gradient on their code is 0 for ``hold`` steps from ``start_step``, then
    rises linearly to 1 over ``ramp`` steps. Measured why: with full rate pressure from the
    start, Adam shrank the small new encoder rows to nothing within ~150 steps, before the
    synthesis could learn to use them. Stored in the checkpoint so a resumed run keeps it.
    """

    atoms: list[int]
    start_step: int
    hold: int = 1000
    ramp: int = 3000

    def rate_grad(self, step: int, atoms: int) -> torch.Tensor | None:
        """(atoms,) gradient scale of the rate term at this step; None once fully phased in."""
        t = (step - self.start_step - self.hold) / self.ramp
        if t >= 1:
            return None
        grad = torch.ones(atoms)
        grad[self.atoms] = min(1.0, max(0.0, t))
        return grad


class _StopFlag(threading.Event):
    """Set by SIGINT/SIGTERM: the loop finishes its step and writes a checkpoint, then returns."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: dict[int, object] = {}

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _install_stop_handlers() -> _StopFlag:
    flag = _StopFlag()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            flag._saved[sig] = signal.signal(sig, lambda *_: flag.set())
    return flag


def command_line(cfg: dict, resume: str | None) -> str:
    """The ``sccodec train`` invocation that reproduces a TrainConfig (recorded in sidecars)."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name != "data"}
    parts = ["sccodec", "train", "--data", cfg["data"]]
    for name, default in defaults.items():
        value = cfg.get(name, default)
        if resume and name in NEW_MODEL_FIELDS and name not in GROWABLE_FIELDS:
            continue  # the resumed model's own shape: not an option of a resumed run
        if value != default:
            flag = name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                parts += [f"--{flag}", ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    if resume:
        parts += ["--resume", resume]
    return shlex.join(parts)


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # a checkpoint's worth of disk each, if a run was killed mid-write
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str) -> dict:
    """A training checkpoint written by ``checkpoint()`` below; ParameterError if it is not one."""
    if path.endswith(".safetensors"):
        raise ParameterError(f"{path} is an exported model, not a training checkpoint (.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ParameterError(f"{path} is not a training checkpoint ({e})") from None
    if not isinstance(state, dict) or not {"model", "model_config", "step"} <= state.keys():
        raise ParameterError(f"{path} is not a training checkpoint (no model, model_config and step)")
    return state


def _load_resume(path: str) -> dict:
    """A checkpoint, or shipped weights (``.safetensors``: no optimiser state, which restarts)."""
    if not path.endswith(".safetensors"):
        return load_checkpoint(path)
    from sccodec.weights import read_model_file

    try:
        model_file = read_model_file(path)
        sidecar = Path(path).with_suffix(".json")
        training = json.loads(sidecar.read_text()).get("training", {}) if sidecar.is_file() else {}
        model = model_file.build().state_dict()
    except SCVError:
        raise
    except Exception as e:  # noqa: BLE001 (safetensors, JSON and key errors: all mean "not a model")
        raise ParameterError(f"cannot resume from {path}: not an sccodec model with a readable sidecar "
                             f"({type(e).__name__}: {e})") from None
    return {"model": model, "model_config": model_file.config.to_dict(),
            "step": training.get("iterations", 0), "wall_seconds": training.get("wall_seconds", 0.0),
            "runs": training.get("runs", []), "train_config": training.get("train_config")}


def grown_config(model_config: ModelConfig, cfg: TrainConfig) -> ModelConfig:
    """A resumed model's config after the growth ``cfg`` asks for (more synthesis blocks, or none).

    Why grow rather than train a bigger model anew: on our CPUs the shipped lineage holds tens of
    CPU-hours; new blocks start as the identity (ResidualBlock) and add capacity to what it learned.
    """
    have, want = model_config.synthesis_blocks, cfg.synthesis_blocks
    if 0 < want < have:
        raise ParameterError(f"the resumed model has {have} synthesis blocks per stage; blocks cannot be removed")
    return replace(model_config, synthesis_blocks=max(have, want))


BLOCKS_GROUP = 2  # index of the synthesis blocks' parameter group, when the model has blocks


def _grouped_names(model: SCVAE) -> list[list[str]]:
    """Parameter names per optimizer group: networks, per-level and entropy parameters, then the
    synthesis' residual blocks if any (their own group: their own --blocks-lr and warm-up)."""
    fast_names = ("log_gain", "log_inv_gain", "log_step", "threshold_logit", "entropy.")
    fast, slow, blocks = [], [], []
    for name, _ in model.named_parameters():
        (blocks if name.startswith("g_s.refine.") else fast if name.startswith(fast_names) else slow).append(name)
    return [slow, fast] + ([blocks] if blocks else [])


def _param_groups(model: SCVAE, cfg: TrainConfig) -> list[dict]:
    params = dict(model.named_parameters())
    rates = (cfg.lr, cfg.fast_lr, cfg.blocks_lr or cfg.lr)
    return [{"params": [params[n] for n in names], "lr": lr, "base_lr": lr}
            for names, lr in zip(_grouped_names(model), rates)]


def _optimizer(model: SCVAE, cfg: TrainConfig, saved: dict | None, saved_keys: set[str]) -> torch.optim.Adam:
    """Adam over ``_param_groups``, with the saved state (of the model whose state dict had
    ``saved_keys``) if any.

    Adam's state is keyed by position; it is carried over by parameter name, so a grown model
    keeps the statistics of every parameter it had (blocks already trained included) and only
    its new blocks start afresh. Growing only adds parameters, so the saved model's positions
    are the current ones without the new names.
    """
    opt = torch.optim.Adam(_param_groups(model, cfg))
    if saved is None:
        return opt
    names = [n for group in _grouped_names(model) for n in group]
    old = {name: i for i, name in enumerate(n for n in names if n in saved_keys)}
    current = opt.state_dict()
    current["state"] = {i: saved["state"][old[name]] for i, name in enumerate(names)
                        if name in old and old[name] in saved["state"]}
    for i, group in enumerate(saved["param_groups"][: len(current["param_groups"])]):
        current["param_groups"][i] = group | {"params": current["param_groups"][i]["params"],
                                              "base_lr": current["param_groups"][i]["base_lr"]}
    opt.load_state_dict(current)  # base_lr: this run's --lr/--fast-lr/--blocks-lr, not the saved ones
    return opt


def _compile(model: SCVAE, cfg: TrainConfig, device: torch.device) -> str | None:
    """Compile the transforms and run one throw-away step to build both graphs now.

    -> None, or why compiling failed (e.g. no C++ compiler): the run then goes on eager, so a
    machine without a toolchain still trains, only slower. The step's gradients are dropped, its
    random numbers drawn from a forked generator and the bare model used, so the optimizer
    state, the run's random stream and DDP are untouched: the same seed trains the same
    levels and crops with or without ``--compile``.
    """
    model.compile_transforms()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        x = torch.rand(cfg.batch, 3, cfg.crop, cfg.crop, device=device).contiguous(memory_format=torch.channels_last)
        q = torch.zeros(cfg.batch, dtype=torch.int64, device=device)
        try:
            rd_loss(model, x, q, cfg.latent_weight)["loss"].backward()
        except Exception as e:  # noqa: BLE001 (torch.compile fails in many ways; all mean "run eager")
            model.uncompile_transforms()
            return " ".join(f"{type(e).__name__}: {e}".split())[:300]
        finally:
            model.zero_grad(set_to_none=True)
    return None


def rd_loss(model: torch.nn.Module, x: torch.Tensor, q: torch.Tensor, latent_weight: float,
            rate_grad: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``model`` may be the SCVAE or its DistributedDataParallel wrapper."""
    out = model(x, q, rate_grad)
    pixels = x.shape[-2] * x.shape[-1]
    bpp = -torch.log2(out["likelihoods"]).sum(dim=(1, 2, 3)) / pixels
    mse = (out["x_hat"] - x).pow(2).mean(dim=(1, 2, 3))
    lam = torch.tensor(getattr(model, "module", model).config.lambdas, device=x.device)[q]
    loss = (bpp + lam * 255**2 * mse + latent_weight * out["latent_error"]).mean()
    psnr = (-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean().detach(), "psnr": psnr, "nonzero": out["nonzero"].mean().detach(),
            "live_atoms": out["live_atoms"].float()}


def train(cfg: TrainConfig, model_config: ModelConfig | None = None, resume: str | None = None,
          given: frozenset[str] | None = None) -> Path | None:
    """Run (or continue) training; under torchrun every rank calls this with the same arguments.

    A resumed run keeps its model's config (``model_config`` is for new models only) and its
    checkpoint's recipe for every option not in ``given`` (``resumed_config``). Returns the
    checkpoint path on rank 0 (the only writer), None on the other ranks.
    """
    if resume and model_config is not None:
        raise ParameterError("model_config shapes a new model; a resumed run keeps its model's")
    torch.set_flush_denormal(True)
    ckpt_path = Path(cfg.checkpoint)
    state, saved_config, inherited = None, None, {}
    if resume:
        state = _load_resume(resume)
        saved_config = ModelConfig.from_dict(state["model_config"])
        model_config = grown_config(saved_config, cfg)
        cfg, inherited = resumed_config(cfg, state.get("train_config"), given, model_config)
    else:
        model_config = ModelConfig.from_dict((model_config or ModelConfig()).to_dict() | cfg.new_model_options())
    if cfg.blocks_lr and not model_config.synthesis_blocks:
        raise ParameterError("--blocks-lr sets the learning rate of synthesis blocks; this model has none "
                             "(add --synthesis-blocks N)")
    dist = setup(cfg.device)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also syncs them)
    model = SCVAE(model_config).to(dist.device, memory_format=torch.channels_last)
    bf16 = cfg.bf16 and has_native_bf16(dist.device)  # what runs; cfg.bf16 is what was asked for
    model.bf16_transforms = bf16
    model.lista.dead_zone_grad = cfg.dead_zone_grad
    grown = saved_config is not None and model_config != saved_config
    step, elapsed_before, history, runs = 0, 0.0, [], []
    if state is not None:
        missing, unexpected = model.load_state_dict(state["model"], strict=not grown)
        if unexpected or any(not key.startswith("g_s.refine.") for key in missing):
            raise ParameterError(f"cannot grow the model of {resume}: keys {unexpected or missing} do not fit")
    opt = _optimizer(model, cfg, state.get("optimizer") if state else None, set(state["model"]) if state else set())
    if state is not None:
        step = state.get("step", 0)
        elapsed_before = state.get("wall_seconds", 0.0)
        history = state.get("history", [])
        runs = state.get("runs", [])
    phase_in = RatePhaseIn(**state["rate_phase_in"]) if state and "rate_phase_in" in state else None
    net = dist.wrap(model)
    start_step = step
    # Warm up Adam's statistics where they are new: every group, or a grown model's blocks
    fresh_optimizer = state is None or "optimizer" not in state
    warmed = range(len(opt.param_groups)) if fresh_optimizer else [BLOCKS_GROUP] if grown else []

    train_paths, held_out = split_holdout(list_images(cfg.data))
    # each rank (and each resumed run) draws its own crops, levels and noise
    seed = cfg.seed + step + 7919 * dist.rank
    torch.manual_seed(seed)
    sampler = PatchSampler(train_paths, cfg.crop, seed=seed)
    val_images = load_validation(held_out) if dist.is_main and cfg.validate_minutes > 0 else None
    t0 = time.time()
    last_ckpt = last_val = t0
    budget_s = cfg.minutes * 60

    def seconds_left() -> float:
        """Until the first of --steps (at the current speed) and --minutes runs out."""
        elapsed = time.time() - t0
        left = [budget_s - elapsed] if cfg.minutes else []
        if cfg.steps:
            done = step - start_step
            left.append((cfg.steps - done) * elapsed / done if done else float("inf"))
        return max(0.0, min(left))

    def progress() -> float:
        """Fraction of the run done: whichever of --steps and --minutes is nearer its end."""
        fractions = [(step - start_step) / cfg.steps] if cfg.steps else []
        if cfg.minutes:
            fractions.append((time.time() - t0) / budget_s)
        return max(fractions)

    def report(line: dict) -> None:
        print(json.dumps(line), flush=True)
        history.append(line)

    average: TailAverage | None = None  # this run's own tail only: a resumed run starts a new one

    def run_validation() -> None:
        if val_images is None or not len(val_images):
            return
        report({"step": step, "validation": validate(model, val_images)})
        if average is not None:
            averaged = SCVAE(model.config).to(dist.device)
            averaged.load_state_dict(average.weights(model.state_dict()))
            averaged.bf16_transforms = model.bf16_transforms
            report({"step": step, "tail_average": {"first_step": average.first_step, "count": average.count,
                                                   "validation": validate(averaged, val_images)}})

    def checkpoint() -> None:
        if not dist.is_main:
            return
        this_run = {"command": command_line(asdict(cfg), resume), "start_step": start_step, "end_step": step,
                    "compiled": compiled, "bf16": bf16,
                    "wall_seconds": round(time.time() - t0, 1), "processes": dist.world_size,
                    "device": dist.device.type, "threads_per_process": torch.get_num_threads()}
        _atomic_save({"runs": runs + [this_run], "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                      "model_config": model.config.to_dict(), "train_config": asdict(cfg),
                      "wall_seconds": elapsed_before + time.time() - t0, "history": history}
                     | ({"rate_phase_in": asdict(phase_in)} if phase_in else {})
                     | ({"tail_average": average.to_dict()} if average else {}), ckpt_path)

    if cfg.bf16 and not bf16 and dist.is_main:
        report({"step": step, "bf16": f"off: no native bf16 on this {dist.device.type} (emulated, it is many "
                                      "times slower than fp32); training in fp32"})
    if inherited and dist.is_main:
        report({"step": step, "options_from_checkpoint": inherited})
    if grown and dist.is_main:
        report({"step": step, "grown": {"synthesis_blocks": [saved_config.synthesis_blocks,
                                                              model_config.synthesis_blocks]}})
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "nonzero": 0.0, "live_atoms": 0.0}
    n_acc, skipped, skipped_in_a_row = 0, 0, 0
    compiled = False  # whether this run's training steps run compiled (recorded in the run history)
    stop = _install_stop_handlers()
    try:
        if cfg.compile:  # a signal while compiling still ends the run with a checkpoint
            started = time.time()
            failed = _compile(model, cfg, dist.device)
            rank0_compiled = dist.agree(failed is None)
            if not rank0_compiled:  # every rank runs eager then, as rank 0 reports
                model.uncompile_transforms()
            compiled = rank0_compiled and failed is None
            if dist.is_main:
                report({"step": step, "compiled": compiled, "seconds": round(time.time() - started, 1)}
                       | ({"compile_error": failed} if failed else {}))
        while dist.agree(progress() < 1.0 and not stop.is_set()):
            frac = progress()
            warm = min(1.0, (step - start_step + 1) / cfg.warmup)
            decay = 0.1 if frac > 1 - cfg.final_decay else 1.0
            for i, g in enumerate(opt.param_groups):
                g["lr"] = g["base_lr"] * (warm if i in warmed else 1.0) * decay
            x = sampler.batch(cfg.batch).to(dist.device).contiguous(memory_format=torch.channels_last)
            q = torch.randint(0, model.config.qualities, (cfg.batch,), device=dist.device)
            rate_grad = phase_in.rate_grad(step, model.config.atoms) if phase_in else None
            res = rd_loss(net, x, q, cfg.latent_weight, None if rate_grad is None else rate_grad.to(dist.device))
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()  # even when not finite: DDP needs every rank in the all-reduce
            # gradients are all-reduced by now, so every rank takes the same decision here
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            if not math.isfinite(grad_norm.item()):
                skipped += 1
                skipped_in_a_row += 1
                if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:  # the same on every rank (all-reduced)
                    raise ParameterError(f"{skipped_in_a_row} steps in a row had a non-finite loss or gradient "
                                         f"at step {step} (too high a --lr?); stopped, the last checkpoint is "
                                         f"{'unchanged' if ckpt_path.exists() else 'not written'}")
                continue
            skipped_in_a_row = 0
            opt.step()
            step += 1
            if cfg.tail_average and decay < 1 and dist.is_main:  # ranks hold the same weights
                average = average or TailAverage(first_step=step)
                average.update(model)
            for k in acc:
                acc[k] += res[k].detach().item()
            n_acc += 1
            if step % cfg.log_every == 0 and dist.is_main:
                rate = (step - start_step) / (time.time() - t0)
                remaining = seconds_left()
                line = {k: round(v / n_acc, 4) for k, v in acc.items()}
                line.update(step=step, it_s=round(rate, 2), eta_min=round(remaining / 60, 1), skipped=skipped)
                report(line)
                acc = {k: 0.0 for k in acc}
                n_acc = 0
            if dist.is_main and time.time() - last_val > cfg.validate_minutes * 60 > 0:
                run_validation()
                last_val = time.time()
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()
    finally:
        stop.restore()
    if dist.is_main and not stop.is_set():
        run_validation()
    checkpoint()
    if stop.is_set() and dist.is_main:
        print(json.dumps({"step": step, "stopped": "on a signal", "checkpoint": str(ckpt_path)}), flush=True)
    digests = dist.digests(model)
    final = json.dumps({"rank": dist.rank, "world_size": dist.world_size, "weights_digest": digests[dist.rank]})
    sys.stdout.write(final + "\n")  # one write: the ranks share stdout under torchrun
    sys.stdout.flush()
    del net  # DDP's reducer holds the process group; free it now, not during interpreter teardown
    dist.shutdown()
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended with different weights: {digests}")
    return ckpt_path if dist.is_main else None
