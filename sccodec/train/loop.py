"""The training loop: a Trainer that steps, logs, validates and checkpoints, and ``train()`` that wires it.

    train(cfg, resume)
      starting_point (checkpoint.py) ─▶ Trainer ─▶ compile ─▶ until --steps or --minutes or a signal:
                                                                step ─▶ log, validate, checkpoint when due
                                                 ─▶ finish: last validation and checkpoint, weights digests

The objective is loss.py's; under torchrun every rank runs this, rank 0 alone logs, validates
and writes (distributed.py). SIGINT/SIGTERM end the run after its current step, with a checkpoint.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sccodec.errors import ParameterError
from sccodec.model.scvae import SCVAE
from sccodec.train.averaging import TailAverage
from sccodec.train.checkpoint import Start, restore_weights, save_checkpoint, starting_point
from sccodec.train.config import TrainConfig, command_line
from sccodec.train.data import PatchSampler, list_images, split_holdout
from sccodec.train.distributed import Distributed, has_native_bf16, setup
from sccodec.train.loss import RatePhaseIn, rd_loss
from sccodec.train.optim import BLOCKS_GROUP, make_optimizer, set_learning_rates
from sccodec.train.validate import load_validation
from sccodec.train.validate import validate as validation_report

__all__ = ["MAX_SKIPPED_IN_A_ROW", "Trainer", "TrainConfig", "compile_or_eager", "rd_loss", "train"]

#: Consecutive steps with a non-finite loss or gradient after which the run stops.
MAX_SKIPPED_IN_A_ROW = 100
#: The per-step values a progress line reports, as means since the previous line.
REPORTED = ("loss", "bpp", "psnr", "nonzero", "live_atoms")


def train(cfg: TrainConfig, resume: str | None = None, given: frozenset[str] | None = None) -> Path | None:
    """Run (or continue) training; under torchrun every rank calls this with the same arguments.

    A new model is ModelConfig with ``cfg.model``; a resumed run keeps its model (grown if
    ``cfg.model`` asks for more synthesis blocks) and its checkpoint's recipe for every option
    not in ``given`` (config.resumed_config). Returns the checkpoint path on rank 0 (the only
    writer), None on the other ranks.
    """
    torch.set_flush_denormal(True)
    start = starting_point(cfg, resume, given)
    trainer = Trainer(start, setup(start.cfg.device))
    trainer.announce()
    stop = StopFlag.install()
    try:
        trainer.compile()  # a signal while compiling still ends the run with a checkpoint
        while trainer.running(stop):
            if trainer.step():
                trainer.after_step()
    finally:
        stop.restore()
    trainer.finish(stopped=stop.is_set())
    return Path(start.cfg.checkpoint) if trainer.dist.is_main else None


class Trainer:
    """One run on this process: the model, its optimiser, this rank's data and the run's record."""

    def __init__(self, start: Start, dist: Distributed) -> None:
        self.start, self.cfg, self.dist = start, start.cfg, dist
        self.bf16 = self.cfg.bf16 and has_native_bf16(dist.device)  # what runs; cfg.bf16 is what was asked
        self.model = self._build_model()
        saved = start.saved or {}
        self.opt = make_optimizer(self.model, self.cfg, saved.get("optimizer"), set(saved.get("model", {})))
        self.global_step = start.step
        self.wall_seconds_before = saved.get("wall_seconds", 0.0)
        self.history: list[dict] = saved.get("history", [])
        self.runs: list[dict] = saved.get("runs", [])
        self.phase_in = RatePhaseIn(**saved["rate_phase_in"]) if "rate_phase_in" in saved else None
        self.net = dist.wrap(self.model)
        # Adam's statistics warm up where they are new: every group, or a grown model's blocks
        fresh = "optimizer" not in saved
        self.warmed = list(range(len(self.opt.param_groups))) if fresh else [BLOCKS_GROUP] if start.grown else []
        self.sampler, self.val_images = self._data()
        self.clock = Clock(self.global_step, self.cfg.steps, self.cfg.minutes)
        self.last_validation = self.last_checkpoint = self.clock.started
        self.average: TailAverage | None = None  # this run's own tail only: a resumed run starts a new one
        self.meter = Meter()
        self.skipped = self.skipped_in_a_row = 0
        self.compiled = False  # whether this run's steps run compiled (recorded in the run's record)

    def _build_model(self) -> SCVAE:
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every rank (DDP also syncs them)
        model = SCVAE(self.start.model_config).to(self.dist.device, memory_format=torch.channels_last)
        model.bf16_transforms = self.bf16
        model.lista.dead_zone_grad = self.cfg.dead_zone_grad
        restore_weights(model, self.start)
        return model

    def _data(self) -> tuple[PatchSampler, torch.Tensor | None]:
        """This rank's crop sampler, and the held-out validation crops (rank 0, if it validates)."""
        train_paths, held_out = split_holdout(list_images(self.cfg.data))
        # each rank (and each resumed run) draws its own crops, levels and noise
        seed = self.cfg.seed + self.global_step + 7919 * self.dist.rank
        torch.manual_seed(seed)
        sampler = PatchSampler(train_paths, self.cfg.crop, seed=seed)
        validates = self.dist.is_main and self.cfg.validate_minutes > 0
        return sampler, load_validation(held_out) if validates else None

    def report(self, line: dict) -> None:
        """Print a line (JSON, led by the step unless it has one) and keep it in the history; rank 0 only."""
        if self.dist.is_main:
            line = line if "step" in line else {"step": self.global_step, **line}
            print(json.dumps(line), flush=True)
            self.history.append(line)

    def announce(self) -> None:
        """What this run changes from what was asked or saved: bf16 off here, inherited options, growth."""
        if self.cfg.bf16 and not self.bf16:
            self.report({"bf16": f"off: no native bf16 on this {self.dist.device.type} (emulated, it is many "
                                 "times slower than fp32); training in fp32"})
        if self.start.inherited:
            self.report({"options_from_checkpoint": self.start.inherited})
        if self.start.grown:
            blocks = [self.start.saved_config.synthesis_blocks, self.start.model_config.synthesis_blocks]
            self.report({"grown": {"synthesis_blocks": blocks}})

    def compile(self) -> None:
        """torch.compile the transforms if asked; every rank runs eager if rank 0's compile failed."""
        if not self.cfg.compile:
            return
        started = time.time()
        failed = compile_or_eager(self.model, self.cfg, self.dist.device)
        rank0_compiled = self.dist.agree(failed is None)
        if not rank0_compiled:
            self.model.uncompile_transforms()
        self.compiled = rank0_compiled and failed is None
        self.report({"compiled": self.compiled, "seconds": round(time.time() - started, 1)}
                    | ({"compile_error": failed} if failed else {}))

    def running(self, stop: threading.Event) -> bool:
        """Whether to take another step: rank 0 decides, so that every rank takes as many steps."""
        return self.dist.agree(self.clock.fraction(self.global_step) < 1.0 and not stop.is_set())

    def step(self) -> bool:
        """One optimiser step on fresh crops at random levels; -> False if skipped (non-finite)."""
        cfg, device = self.cfg, self.dist.device
        in_tail = self._set_learning_rates()
        x = self.sampler.batch(cfg.batch).to(device).contiguous(memory_format=torch.channels_last)
        q = torch.randint(0, self.model.config.qualities, (cfg.batch,), device=device)
        rate_grad = self.phase_in.rate_grad(self.global_step, self.model.config.atoms) if self.phase_in else None
        res = rd_loss(self.net, x, q, cfg.latent_weight, None if rate_grad is None else rate_grad.to(device))
        self.opt.zero_grad(set_to_none=True)
        res["loss"].backward()  # even when not finite: DDP needs every rank in the all-reduce
        # gradients are all-reduced by now, so every rank takes the same decision here
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        if not math.isfinite(grad_norm.item()):
            self._skip()
            return False
        self.skipped_in_a_row = 0
        self.opt.step()
        self.global_step += 1
        if in_tail and cfg.tail_average and self.dist.is_main:  # ranks hold the same weights
            self.average = self.average or TailAverage(first_step=self.global_step)
            self.average.update(self.model)
        self.meter.add(res)
        return True

    def _set_learning_rates(self) -> bool:
        """This step's rates (optim.py's schedule); -> whether the run is in its lr/10 tail."""
        in_tail = self.clock.fraction(self.global_step) > 1 - self.cfg.final_decay
        warm = min(1.0, (self.global_step - self.clock.start_step + 1) / self.cfg.warmup)
        set_learning_rates(self.opt, warm, self.warmed, 0.1 if in_tail else 1.0)
        return in_tail

    def _skip(self) -> None:
        """Count a step skipped for a non-finite loss or gradient; too many in a row end the run."""
        self.skipped += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:  # the same on every rank (all-reduced)
            written = "unchanged" if Path(self.cfg.checkpoint).exists() else "not written"
            raise ParameterError(f"{self.skipped_in_a_row} steps in a row had a non-finite loss or gradient "
                                 f"at step {self.global_step} (too high a --lr?); stopped, the last checkpoint "
                                 f"is {written}")

    def after_step(self) -> None:
        """A progress line, a validation and a checkpoint, each when it is due."""
        if self.global_step % self.cfg.log_every == 0 and self.dist.is_main:
            self.log()
        if self.dist.is_main and time.time() - self.last_validation > self.cfg.validate_minutes * 60 > 0:
            self.validate()
            self.last_validation = time.time()
        if time.time() - self.last_checkpoint > self.cfg.checkpoint_minutes * 60:
            self.checkpoint()
            self.last_checkpoint = time.time()

    def log(self) -> None:
        """A progress line: the means since the last one, steps per second and minutes left."""
        rate = (self.global_step - self.clock.start_step) / self.clock.elapsed()
        eta_min = round(self.clock.seconds_left(self.global_step) / 60, 1)
        self.report(self.meter.means() | {"step": self.global_step, "it_s": round(rate, 2), "eta_min": eta_min,
                                          "skipped": self.skipped})

    def validate(self) -> None:
        """Held-out validation (rank 0) of the current weights, and of the tail average if any."""
        if self.val_images is None or not len(self.val_images):
            return
        self.report({"validation": validation_report(self.model, self.val_images)})
        if self.average is not None:
            averaged = SCVAE(self.model.config).to(self.dist.device)
            averaged.load_state_dict(self.average.weights(self.model.state_dict()))
            averaged.bf16_transforms = self.model.bf16_transforms
            self.report({"tail_average": {"first_step": self.average.first_step, "count": self.average.count,
                                          "validation": validation_report(averaged, self.val_images)}})

    def checkpoint(self) -> None:
        """Write the checkpoint (rank 0; its contents: checkpoint.py)."""
        if not self.dist.is_main:
            return
        state = {"runs": self.runs + [self.run_record()], "model": self.model.state_dict(),
                 "optimizer": self.opt.state_dict(), "step": self.global_step,
                 "model_config": self.model.config.to_dict(), "train_config": asdict(self.cfg),
                 "wall_seconds": self.wall_seconds_before + self.clock.elapsed(), "history": self.history}
        if self.phase_in:
            state["rate_phase_in"] = asdict(self.phase_in)
        if self.average:
            state["tail_average"] = self.average.to_dict()
        save_checkpoint(state, Path(self.cfg.checkpoint))

    def run_record(self) -> dict:
        """This run, as the checkpoint's and the sidecar's ``runs`` list records it."""
        return {"command": command_line(asdict(self.cfg), self.start.resume), "start_step": self.clock.start_step,
                "end_step": self.global_step, "compiled": self.compiled, "bf16": self.bf16,
                "wall_seconds": round(self.clock.elapsed(), 1), "processes": self.dist.world_size,
                "device": self.dist.device.type, "threads_per_process": torch.get_num_threads()}

    def finish(self, stopped: bool) -> None:
        """The last validation (unless stopped by a signal) and checkpoint; every rank's weights digest."""
        if self.dist.is_main and not stopped:
            self.validate()
        self.checkpoint()
        if stopped and self.dist.is_main:
            print(json.dumps({"step": self.global_step, "stopped": "on a signal",
                              "checkpoint": str(Path(self.cfg.checkpoint))}), flush=True)
        digests = self.dist.digests(self.model)
        final = json.dumps({"rank": self.dist.rank, "world_size": self.dist.world_size,
                            "weights_digest": digests[self.dist.rank]})
        sys.stdout.write(final + "\n")  # one write: the ranks share stdout under torchrun
        sys.stdout.flush()
        self.net = None  # DDP's reducer holds the process group; free it now, not during interpreter teardown
        self.dist.shutdown()
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")


@dataclass
class Clock:
    """The run's bounds: --steps (counted from ``start_step``) and --minutes; the first reached ends it."""

    start_step: int
    steps: int
    minutes: float
    started: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        return time.time() - self.started

    def fraction(self, step: int) -> float:
        """Fraction of the run done: whichever of --steps and --minutes is nearer its end."""
        fractions = [(step - self.start_step) / self.steps] if self.steps else []
        if self.minutes:
            fractions.append(self.elapsed() / (self.minutes * 60))
        return max(fractions)

    def seconds_left(self, step: int) -> float:
        """Until the first of --steps (at the current speed) and --minutes runs out."""
        elapsed = self.elapsed()
        left = [self.minutes * 60 - elapsed] if self.minutes else []
        if self.steps:
            done = step - self.start_step
            left.append((self.steps - done) * elapsed / done if done else float("inf"))
        return max(0.0, min(left))


class Meter:
    """Sums of the REPORTED values over the steps since the last progress line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(REPORTED, 0.0)
        self.count = 0

    def add(self, res: dict[str, torch.Tensor]) -> None:
        for key in self.sums:
            self.sums[key] += res[key].detach().item()
        self.count += 1

    def means(self) -> dict[str, float]:
        """The means so far, rounded; starts the next interval."""
        means = {key: round(total / self.count, 4) for key, total in self.sums.items()}
        self.reset()
        return means


class StopFlag(threading.Event):
    """Set by SIGINT/SIGTERM: the loop finishes its step and writes a checkpoint, then returns."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: dict[int, object] = {}

    @classmethod
    def install(cls) -> StopFlag:
        """A flag the signals set (from the main thread only: elsewhere, signals cannot be caught)."""
        flag = cls()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                flag._saved[sig] = signal.signal(sig, lambda *_: flag.set())
        return flag

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def compile_or_eager(model: SCVAE, cfg: TrainConfig, device: torch.device) -> str | None:
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
