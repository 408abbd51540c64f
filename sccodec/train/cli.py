"""``sccodec train`` and ``sccodec export``: argument handling for the training loop and export."""
from __future__ import annotations

import math
import shlex
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from sccodec.cli_errors import OutputError, fail
from sccodec.context import LEGACY_SCHEME, SCHEMES
from sccodec.errors import SCVError
from sccodec.model.config import STRIDE
from sccodec.model.scvae import SCVAE, ModelConfig
from sccodec.model.transforms import NONLINEARITIES
from sccodec.train.averaging import TailAverage
from sccodec.train.config import GROWABLE, TrainConfig, command_line, current_train_config, model_shape

if TYPE_CHECKING:
    from sccodec.entropy import SymbolTables

#: ModelConfig's fields and defaults: an option named after a field shapes the model (TrainConfig.model).
MODEL_DEFAULTS = {f.name: getattr(ModelConfig(), f.name) for f in fields(ModelConfig)}


@click.command()
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of training photos (never the evaluation set).")
@click.option("--checkpoint", default=TrainConfig.checkpoint, show_default=True,
              help="Where to write the checkpoint (model + optimiser + step), atomically.")
@click.option("--resume", type=click.Path(dir_okay=False, exists=True), help="Checkpoint to continue from, or shipped weights (weights/NAME.safetensors).")
@click.option("--steps", type=click.IntRange(min=0), default=0,
              help="Stop after this many steps of this run (a resumed run counts from its checkpoint).")
@click.option("--minutes", type=click.FloatRange(min=0), default=0.0,
              help="Stop after this much wall time (with --steps too: whichever comes first).")
@click.option("--crop", type=click.IntRange(min=16), default=TrainConfig.crop, show_default=True,
              callback=lambda ctx, param, v: _crop(v), help=f"Training crop side in px, a multiple of {STRIDE}.")
@click.option("--batch", type=click.IntRange(min=1), default=TrainConfig.batch, show_default=True)
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True, help="Learning rate of the networks.")
@click.option("--fast-lr", type=float, default=TrainConfig.fast_lr, show_default=True,
              help="Learning rate of the per-level gains, steps, thresholds and entropy model.")
@click.option("--blocks-lr", type=click.FloatRange(min=0), default=TrainConfig.blocks_lr,
              help="Learning rate of the synthesis' residual blocks (--synthesis-blocks) [default: --lr].")
@click.option("--latent-weight", type=click.FloatRange(min=0), default=TrainConfig.latent_weight,
              show_default=True, help="Weight of the SC-VAE latent term ||y_q - D z||^2.")
@click.option("--log-every", type=click.IntRange(min=1), default=TrainConfig.log_every, show_default=True,
              help="Print a progress line (loss, bpp, PSNR, it/s, ETA) every this many steps.")
@click.option("--bf16/--no-bf16", default=TrainConfig.bf16, show_default=True,
              help="bf16 autocast for the convolutions where the hardware has it (CUDA, CPUs with "
                   "AVX512-BF16/AMX); elsewhere the run trains in fp32 and says so.")
@click.option("--compile/--no-compile", default=TrainConfig.compile, show_default=True,
              help="torch.compile the conv transforms (faster steps, see bench/train_speed.py; needs a "
                   "C++ compiler, else training goes on without it).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=TrainConfig.device,
              show_default=True, help="auto: this process's GPU when CUDA is available, else the CPU.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.checkpoint_minutes,
              show_default=True, help="Write the checkpoint this often (and when the run stops).")
@click.option("--validate-minutes", type=click.FloatRange(min=0), default=TrainConfig.validate_minutes,
              show_default=True, help="Validate on the held-out photos (every 40th of --data) this often; 0: never.")
@click.option("--dead-zone-grad", type=click.FloatRange(min=0, max=1), default=TrainConfig.dead_zone_grad,
              show_default=True, help="Gradient slope below the LISTA thresholds, so silent atoms can revive; 0: exact.")
@click.option("--tail-average/--no-tail-average", default=TrainConfig.tail_average, show_default=True,
              help="Keep the mean of the weights over the run's final lr/10 phase (SWA); export ships it.")
@click.option("--lambdas", default=None, callback=lambda ctx, param, v: _lambdas(v), metavar="L1,L2,...",
              help="A new model's quality levels (λ of loss = bpp + λ·255²·MSE, low to high); "
                   "default: the shipped ladder. Not with --resume (a resumed run keeps its model's).")
@click.option("--nested-atoms", is_flag=True,
              help="A new model's level q may use only its first K·q/Q atoms (keeps high-rate atoms alive).")
@click.option("--fixed-ladder", is_flag=True,
              help="A new model's per-level gains and quantiser steps stay at their initial ladder.")
@click.option("--nonlinearity", type=click.Choice(NONLINEARITIES), default=MODEL_DEFAULTS["nonlinearity"],
              show_default=True, help="A new model's transforms: LeakyReLU, or GDN (train it with --lr 1e-4).")
@click.option("--synthesis-blocks", type=click.IntRange(min=0), default=MODEL_DEFAULTS["synthesis_blocks"],
              show_default=True, help="Residual blocks in each of the synthesis' two refined stages. With "
                                      "--resume, a model with fewer grows to this many; new blocks start as "
                                      "the identity, so the model goes on from where it was.")
@click.option("--force", "-f", is_flag=True,
              help="Replace an existing --checkpoint that this run does not resume from.")
def train(resume: str | None, force: bool, steps: int, minutes: float, **options: object) -> None:
    """Train (or keep training) the variable-rate SC-VAE.

    A run resumed from a checkpoint (or from shipped weights) keeps its model and the training
    options it last ran with (--lr, --crop, --batch, ...); options given again override them.
    Under torchrun the same command trains data-parallel (DDP; gloo on CPU, NCCL on GPU):
    every process draws its own --batch crops, rank 0 logs, validates and checkpoints.

    \b
    Examples:
      sccodec train --data photos/ --minutes 60 --resume weights/scvae-gdn.safetensors
      sccodec train --data photos/ --minutes 60 --resume train_runs/run3.pt --crop 256
      torchrun --nproc_per_node=4 -m sccodec train --data photos/ --steps 100000
    """
    from sccodec.train.loop import train as run

    if not steps and not minutes:
        raise click.UsageError("give --steps or --minutes")
    # ``options``: the other flags, each named after a TrainConfig field or, for the model's shape,
    # a ModelConfig field; shape flags away from their own defaults go into TrainConfig.model
    ctx = click.get_current_context()
    flag_defaults = {param.name: param.get_default(ctx) for param in ctx.command.params}
    shape = {name: value for name, value in options.items()
             if name in MODEL_DEFAULTS and value != flag_defaults[name]}
    run_options = {name: value for name, value in options.items() if name not in MODEL_DEFAULTS}
    cfg = TrainConfig(steps=steps, minutes=minutes, model=shape, **run_options)
    shaping = [name for name in shape if name not in GROWABLE]
    if resume and shaping:
        flags = ", ".join("--" + name.replace("_", "-") for name in shaping)
        raise click.UsageError(f"{flags} shape a new model; a resumed run keeps its model's")
    given = frozenset(name for name in ctx.params if ctx.get_parameter_source(name) != ParameterSource.DEFAULT)
    checkpoint = cfg.checkpoint
    continues_itself = resume is not None and Path(resume).resolve() == Path(checkpoint).resolve()
    if Path(checkpoint).exists() and not force and not continues_itself:
        _output_error(f"{checkpoint} exists; continue it with --resume {checkpoint}, or use --force to replace it")
    try:
        path = run(cfg, resume=resume, given=given)
    except SCVError as e:  # a bad device, unreadable or too small training photos
        fail(e)
    if path is not None:  # rank 0 alone writes it
        click.echo(f"checkpoint written to {path}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True))
@click.option("--name", required=True, callback=lambda ctx, param, v: _model_name(v),
              help="Model name: letters, digits, '.', '_', '-' (written into every .scv file).")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Folder to write to [default: the installed models folder, where encode/decode/bench look].")
@click.option("--fit-tables", "fit_dir", type=click.Path(file_okay=False, exists=True),
              help="Fit the entropy tables to the encoder's symbols on these training photos.")
@click.option("--fit-images", type=click.IntRange(min=1), default=160, show_default=True,
              help="How many photos (evenly spaced over the sorted training split) to fit on (160 gave 0.3-1.5% "
                   "fewer bits than 48 on held-out photos; about a minute on 2 cores).")
@click.option("--context", type=click.Choice(list(SCHEMES)),
              help="The coder's context scheme (sccodec/context.py) [default: nested with --fit-tables; "
                   "checkerboard, the parametric tables training learns, without].")
@click.option("--float16-transforms", is_flag=True,
              help="Store the transforms' conv kernels in float16 (a 19 MB model becomes 12 MB; decoded "
                   "images change by about 0.01 dB). Computation stays float32.")
@click.option("--last-weights", is_flag=True,
              help="Export the last step's weights, not the mean over the run's lr/10 tail (--tail-average).")
@click.option("--force", "-f", is_flag=True, help="Replace an existing model of that name; its weights stay "
                                                  "beside it as NAME@HASH.safetensors, so files coded with them "
                                                  "still decode.")
def export(checkpoint: str, name: str, out_dir: str | None, fit_dir: str | None, fit_images: int,
           context: str | None, float16_transforms: bool, last_weights: bool, force: bool) -> None:
    """Export a training checkpoint to <out-dir>/<name>.safetensors + .json (weights + entropy
    tables) and the runtime graphs the CPU coding path runs (<name>.analysis/code/synthesis[/gradient].onnx).

    A model exported to the installed models folder (the default) is usable at once:
    ``sccodec bench --codecs sccodec@NAME``, ``sccodec encode --model NAME``.

    \b
    Example:
      sccodec export train_runs/run1.pt --name my-model --fit-tables photos/
    """
    from sccodec.train.export import export as write
    from sccodec.train.tables import DEFAULT_CONTEXT
    from sccodec.weights import shipped_dir

    context = context or (DEFAULT_CONTEXT if fit_dir else LEGACY_SCHEME)
    if context != LEGACY_SCHEME and not fit_dir:
        raise click.UsageError(f"the {context} context scheme needs --fit-tables (its tables are counted, "
                               "not learned in training)")
    folder = Path(out_dir) if out_dir else shipped_dir()
    target = folder / f"{name}.safetensors"
    if target.exists() and not force:
        _output_error(f"{target} exists; use --force to replace it (its weights are then kept as {name}@HASH)")
    state = _load_checkpoint(checkpoint)
    model = SCVAE(ModelConfig.from_dict(state["model_config"]))
    average = None if last_weights or "tail_average" not in state else TailAverage.from_dict(state["tail_average"])
    model.load_state_dict(average.weights(state["model"]) if average else state["model"])
    export_command = ["sccodec", "export", checkpoint, "--name", name] + (["--out-dir", out_dir] if out_dir else [])
    if fit_dir:
        export_command += ["--fit-tables", fit_dir, "--fit-images", str(fit_images), "--context", context]
    if float16_transforms:
        export_command.append("--float16-transforms")
    if last_weights:
        export_command.append("--last-weights")
    sidecar = {"training": _training_record(state, model, average) | {"export_command": shlex.join(export_command)}}
    tables = None
    if fit_dir:
        tables, sidecar["tables"] = _fitted_tables(model, fit_dir, fit_images, context)
    try:
        done = write(model, name, folder, sidecar, tables, float16_transforms)
    except OSError as e:
        _output_error(f"cannot write {target}: {e.strerror or e}")
    click.echo(f"wrote {done.path} ({done.path.stat().st_size / 1e6:.1f} MB), its runtime graphs and "
               f"{done.path.with_suffix('.json')}")
    if done.kept is not None:
        click.echo(f"kept the replaced weights as {done.kept} (files coded with them still decode)")


@click.command("export-graphs")
@click.argument("weights", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def export_graphs(weights: tuple[str, ...]) -> None:
    """Write the runtime graphs of existing weights files (NAME.analysis/code/synthesis[/gradient].onnx beside
    each), checked against the torch network; ``sccodec export`` already writes them.

    \b
    Example:
      sccodec export-graphs runs/my-model.safetensors
    """
    from sccodec.train.graphs import export_graphs as write_graphs

    for path in weights:
        try:
            errors = write_graphs(Path(path))
        except SCVError as e:
            fail(e)
        except OSError as e:
            _output_error(f"cannot write the graphs of {path}: {e.strerror or e}")
        worst = max(errors.values())
        click.echo(f"wrote the runtime graphs of {path} (largest difference from torch: {worst:.1e})")


def _training_record(state: dict, model: SCVAE, average: TailAverage | None) -> dict:
    """The sidecar's ``training`` entry: the runs, their cost, the recipe, the last log and validation."""
    runs = state.get("runs") or [{"command": command_line(state["train_config"], None)}]
    # The model's own shape, whatever the checkpoint says (checkpoints of resumed runs written before
    # the shape options moved under "model" hold the new-model defaults there).
    cfg = current_train_config(state["train_config"]) | {"model": model_shape(model.config)}
    history = state.get("history", [])
    return {"runs": runs, "iterations": state["step"], "wall_seconds": round(state["wall_seconds"], 1),
            "cpu_hours": round(_cpu_hours(runs), 2), "train_config": cfg,
            "data": f"{cfg['data']} (every 40th photo held out for validation), random crops "
                    f"({cfg['crop']} px in the last run), random downscale 0.5-1, flips; Kodak never used",
            "weights": (f"mean over steps {average.first_step}-{state['step']} ({average.count} "
                        "steps: the last run's lr/10 tail, sccodec/train/averaging.py)"
                        if average else "the last step's"),
            "last_log": _last(history, "loss"),
            "last_validation": _last(history, "tail_average" if average else "validation")}


def _fitted_tables(model: SCVAE, fit_dir: str, fit_images: int, context: str) -> tuple[SymbolTables, dict]:
    """(the coder's tables fitted on ``fit_images`` training photos of ``fit_dir``, the sidecar's note)."""
    from sccodec.train.data import list_images, split_holdout
    from sccodec.train.tables import fitted_tables

    train_paths, _ = split_holdout(list_images(fit_dir))
    if not train_paths:
        raise click.BadParameter(f"no training photos in {fit_dir}", param_hint="--fit-tables")
    chosen = evenly_spaced(train_paths, fit_images)
    try:
        tables = fitted_tables(model, chosen, context)
    except SCVError as e:  # an unreadable photo
        fail(e)
    return tables, {"fitted_on": f"{len(chosen)} photos of {fit_dir} (training split)",
                    "method": "counts smoothed towards all atoms' (sccodec/train/tables.py)"}


def evenly_spaced(items: list, n: int) -> list:
    """``n`` items spread over the whole list, first and last included (all if n >= len)."""
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _load_checkpoint(path: str) -> dict:
    from sccodec.train.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except SCVError as e:
        raise click.BadParameter(str(e), param_hint="CHECKPOINT") from None


def _crop(crop: int) -> int:
    if crop % STRIDE:
        raise click.BadParameter(f"{crop} is not a multiple of {STRIDE} (the transforms' stride)")
    return crop


def _model_name(name: str) -> str:
    from sccodec.weights import is_model_name

    if not is_model_name(name):
        raise click.BadParameter(f"{name!r}: use 1-64 ASCII letters, digits, '.', '_' or '-' (not first)")
    return name


def _lambdas(text: str | None) -> tuple[float, ...] | None:
    """'0.001,0.01,0.1' -> (0.001, 0.01, 0.1): positive and increasing, at least two."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of numbers: {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"λ must be finite numbers: {text!r}")
    if len(values) < 2 or values[0] <= 0 or any(b <= a for a, b in zip(values, values[1:])):
        raise click.BadParameter("give at least two positive λ in increasing order")
    return values


def _cpu_hours(runs: list[dict]) -> float:
    """CPU core-hours of all training runs (runs recorded before threads were logged used 2 cores);
    runs on a GPU are not CPU time (their record keeps their own wall time)."""
    return sum(r.get("wall_seconds", 0.0) * r.get("processes", 1) * r.get("threads_per_process", 2)
               for r in runs if "command" in r and r.get("device", "cpu") != "cuda") / 3600


def _last(history: list[dict], key: str) -> dict | None:
    """The newest history line that has ``key`` (progress lines and validations are interleaved)."""
    return next((line for line in reversed(history) if key in line), None)


def _output_error(message: str) -> None:
    """Exit 3 (an output problem), as encode and decode do for an existing output."""

    raise OutputError(message)
