"""``sccodec train`` and ``sccodec export``: argument handling for the training loop and export."""
from __future__ import annotations

from pathlib import Path

import click

from sccodec.train.loop import TrainConfig, command_line


@click.command()
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of training photos (never the evaluation set).")
@click.option("--checkpoint", default=TrainConfig.checkpoint, show_default=True,
              help="Where to write the checkpoint (model + optimiser + step), atomically.")
@click.option("--resume", type=click.Path(dir_okay=False, exists=True), help="Checkpoint to continue from, or shipped weights (weights/NAME.safetensors).")
@click.option("--steps", type=click.IntRange(min=0), default=0, help="Stop after this many steps.")
@click.option("--minutes", type=click.FloatRange(min=0), default=0.0, help="Stop after this much wall time.")
@click.option("--crop", type=click.IntRange(min=16), default=TrainConfig.crop, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=TrainConfig.batch, show_default=True)
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True)
@click.option("--latent-weight", type=click.FloatRange(min=0), default=TrainConfig.latent_weight,
              show_default=True, help="Weight of the SC-VAE latent term ||y_q - D z||^2.")
@click.option("--log-every", type=click.IntRange(min=1), default=TrainConfig.log_every, show_default=True)
@click.option("--bf16/--no-bf16", default=TrainConfig.bf16, show_default=True,
              help="bf16 autocast for the convolutions (faster on CPUs with AVX512-BF16/AMX).")
def train(data: str, checkpoint: str, resume: str | None, steps: int, minutes: float, crop: int,
          batch: int, lr: float, latent_weight: float, log_every: int, bf16: bool) -> None:
    """Train (or keep training) the variable-rate SC-VAE.

    \b
    Example (what the shipped model ran, see weights/*.json for the exact record):
      sccodec train --data ../shared/data/train --minutes 108 --checkpoint train_runs/run1.pt
    """
    from sccodec.train.loop import train as run

    if not steps and not minutes:
        raise click.UsageError("give --steps or --minutes")
    cfg = TrainConfig(data=data, checkpoint=checkpoint, steps=steps, minutes=minutes, crop=crop,
                      batch=batch, lr=lr, latent_weight=latent_weight, log_every=log_every, bf16=bf16)
    path = run(cfg, resume=resume)
    click.echo(f"checkpoint written to {path}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True))
@click.option("--name", default="scvae-base", show_default=True, help="Model name (goes into every file).")
@click.option("--out-dir", default="weights", show_default=True, type=click.Path(file_okay=False))
@click.option("--fit-tables", "fit_dir", type=click.Path(file_okay=False, exists=True),
              help="Fit the entropy tables to the encoder's symbols on these training photos.")
@click.option("--fit-images", type=click.IntRange(min=1), default=64, show_default=True,
              help="How many photos (evenly spaced over the sorted folder) to fit on.")
def export(checkpoint: str, name: str, out_dir: str, fit_dir: str | None, fit_images: int) -> None:
    """Export a checkpoint to <out-dir>/<name>.safetensors + .json (weights + entropy tables).

    \b
    Example:
      sccodec export train_runs/run1.pt --name scvae-base --fit-tables ../shared/data/train
    """
    import torch

    from sccodec.model.scvae import SCVAE, ModelConfig
    from sccodec.weights import export as write

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = SCVAE(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    runs = state.get("runs") or [{"command": command_line(state["train_config"], None)}]
    sidecar = {"training": {"runs": runs, "iterations": state["step"],
                            "wall_seconds": round(state["wall_seconds"], 1),
                            "cpu": "2 cores (shared dev machine), torch CPU, bf16 autocast convs",
                            "train_config": state["train_config"],
                            "last_log": (state.get("history") or [None])[-1]}}
    tables = None
    if fit_dir:
        from sccodec.train.data import list_images, split_holdout
        from sccodec.train.tables import fitted_tables

        train_paths, _ = split_holdout(list_images(fit_dir))
        chosen = train_paths[:: max(1, len(train_paths) // fit_images)][:fit_images]
        tables = fitted_tables(model, chosen)
        sidecar["tables"] = {"fitted_on": f"{len(chosen)} photos of {fit_dir} (training split)",
                             "method": "counts + parametric prior (sccodec/train/tables.py)"}
    path = write(model, name, out_dir, sidecar, tables)
    click.echo(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB) and {Path(path).with_suffix('.json')}")
