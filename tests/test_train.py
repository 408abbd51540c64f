"""`sccodec train`: resuming, data-parallel training under torchrun, held-out validation.

A few steps on tiny generated photos each: these check behaviour (steps counted, weights in
sync, checkpoints readable), never how good the model gets.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import sccodec
from helpers import WEIGHTS, gradient_image, random_class_tables, random_pair_tables
from sccodec.cli import main
from sccodec.model.scvae import SCVAE, ModelConfig
from sccodec.train.config import TrainConfig
from sccodec.train.loop import compile_or_eager
from sccodec.train.loss import RatePhaseIn
from sccodec.train.optim import grouped_names
from sccodec.train.tables import symbols_for_fitting
from sccodec.train.validate import validate

TINY = ModelConfig(channels=8, latent=8, atoms=16, lambdas=(0.01, 0.1))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(gradient_image(40, 48, seed=i)).save(data / f"p{i}.png")
    return data


def _load(path: Path) -> dict:
    """A checkpoint as sccodec reads it: without pickle (tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _symbols(model: SCVAE, x: torch.Tensor, quality_index: int) -> torch.Tensor:
    """The symbols (K,h,w) the coder would get for a padded image (1,3,H,W), as a tensor."""
    return torch.as_tensor(symbols_for_fitting(model, x, quality_index))


def _train(*args: str) -> None:
    result = CliRunner().invoke(main, ["train", "--crop", "32", "--batch", "2", "--device", "cpu", "--no-compile",
                                         *args])
    assert result.exit_code == 0, result.output


def test_training_resumes_from_shipped_weights(photos, tmp_path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(ckpt), "--steps", "2")
    state = _load(ckpt)
    shipped = json.loads(WEIGHTS.with_suffix(".json").read_text())["training"]["iterations"]
    assert state["step"] == shipped + 2 and state["runs"][-1]["start_step"] == shipped
    assert "optimizer" in state and state["runs"][-1]["command"].startswith("sccodec train")


def test_resumed_run_continues_step_count_and_history(photos, tmp_path) -> None:
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(first), "--steps", "2")
    start = _load(first)
    _train("--data", str(photos), "--resume", str(first), "--checkpoint", str(second), "--steps", "1")
    state = _load(second)
    assert state["step"] == start["step"] + 1
    assert [r.get("start_step") for r in state["runs"][-2:]] == [start["step"] - 2, start["step"]]
    assert state["wall_seconds"] > start["wall_seconds"]


def test_resumed_run_keeps_the_options_it_ran_with_unless_given_again(photos, tmp_path) -> None:
    first, second, third = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(first), "--steps", "1",
           "--lr", "0.0002", "--dead-zone-grad", "0.1", "--validate-minutes", "0")
    _train("--data", str(photos), "--resume", str(first), "--checkpoint", str(second), "--steps", "1")
    state = _load(second)
    cfg = state["train_config"]
    assert (cfg["lr"], cfg["dead_zone_grad"], cfg["validate_minutes"]) == (0.0002, 0.1, 0)
    assert {"lr": 0.0002, "dead_zone_grad": 0.1, "validate_minutes": 0} == next(
        line["options_from_checkpoint"] for line in state["history"] if "options_from_checkpoint" in line)
    # the model's shape is recorded as the model has it, and never as an option of a resumed run
    shipped = json.loads(WEIGHTS.with_suffix(".json").read_text())["config"]
    assert ModelConfig.from_dict(ModelConfig().to_dict() | cfg["model"]) == ModelConfig.from_dict(shipped)
    command = state["runs"][-1]["command"]
    assert "--lr 0.0002" in command and "--nonlinearity" not in command and "--nested-atoms" not in command
    _train("--data", str(photos), "--resume", str(second), "--checkpoint", str(third), "--steps", "1", "--lr", "3e-05")
    cfg = _load(third)["train_config"]
    assert (cfg["lr"], cfg["dead_zone_grad"]) == (3e-05, 0.1)


def test_a_run_whose_loss_stays_non_finite_stops_with_one_line(photos, tmp_path, monkeypatch) -> None:
    import sccodec.train.loop as loop

    real = loop.rd_loss

    def nan_loss(*args, **kwargs):
        out = real(*args, **kwargs)
        return out | {"loss": out["loss"] * float("nan")}

    monkeypatch.setattr(loop, "rd_loss", nan_loss)
    monkeypatch.setattr(loop, "MAX_SKIPPED_IN_A_ROW", 3)
    result = _cli("train", "--data", photos, "--steps", "5", "--crop", "32", "--batch", "2", "--device", "cpu",
                  "--no-compile", "--lambdas", "0.01,0.1", "--checkpoint", tmp_path / "x.pt")
    assert result.exit_code == 2 and "3 steps in a row" in result.output
    assert isinstance(result.exception, SystemExit) and not (tmp_path / "x.pt").exists()


def test_torchrun_two_cpu_processes_end_with_identical_weights(photos, tmp_path) -> None:
    ckpt = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sccodec", "train", "--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(ckpt),
           "--steps", "3", "--crop", "32", "--batch", "2", "--device", "cpu", "--no-bf16",
           "--no-compile"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # the ranks share one stdout: their lines may interleave, so pick the JSON objects out
    finals = [json.loads(m) for m in re.findall(r'\{"rank"[^{}]*"weights_digest"[^{}]*\}', run.stdout)]
    assert sorted(f["rank"] for f in finals) == [0, 1], run.stdout[-3000:] + run.stderr[-3000:]
    assert {f["world_size"] for f in finals} == {2}
    assert finals[0]["weights_digest"] == finals[1]["weights_digest"]
    state = _load(ckpt)
    assert state["step"] - state["runs"][-1]["start_step"] == 3 and state["runs"][-1]["processes"] == 2


class _Broken(torch.nn.Module):
    """Stands in for a compiled transform that fails (as with no C++ compiler)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no C++ compiler\nfound")


@pytest.mark.skipif(not any(map(shutil.which, ("g++", "c++", "clang++"))),
                    reason="torch.compile needs a C++ compiler (training then runs eager: next test)")
def test_compiled_transforms_train_like_eager_ones_and_leave_state_dict_alone() -> None:
    torch.manual_seed(0)
    model = SCVAE(TINY)
    keys = set(model.state_dict())
    cfg = TrainConfig(data="unused", crop=32, batch=2, bf16=False)
    rng = torch.get_rng_state()
    assert compile_or_eager(model, cfg, torch.device("cpu")) is None  # built both graphs, dropped the gradients
    assert all(p.grad is None for p in model.parameters()) and set(model.state_dict()) == keys
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is not touched
    x, q = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    grads = []
    for compiled in (True, False):
        if not compiled:
            model.uncompile_transforms()
        model.zero_grad()
        torch.manual_seed(1)  # same noise
        out = model(x, q)
        out["x_hat"].pow(2).mean().backward()
        grads.append((out["x_hat"].detach(), model.g_s[0][0].weight.grad.clone(), model.g_a[0].weight.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model._compiled = {"g_a": _Broken(), "g_s": _Broken()}
    model.eval()  # coding and validation see many sizes: eager, never compiled for each
    model.synthesize(model.scaled_code(torch.rand(1, 3, 48, 80), torch.tensor([1]))[0], torch.tensor([1]))


def test_training_goes_on_eager_when_compiling_fails(photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(SCVAE, "compile_transforms", lambda self: setattr(self, "_compiled", {"g_a": _Broken()}))
    ckpt = tmp_path / "eager.pt"
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint",
                                       str(ckpt), "--steps", "1", "--crop", "32", "--batch", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    line = json.loads(next(x for x in result.output.splitlines() if '"compiled"' in x))
    assert not line["compiled"] and line["compile_error"] == "RuntimeError: no C++ compiler found"
    state = _load(ckpt)
    assert state["step"] > 0 and state["runs"][-1]["compiled"] is False


def test_compile_setting_is_inherited_on_resume_unless_given(photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(SCVAE, "compile_transforms", lambda self: None)  # "compiled" instantly: eager
    first, inherited, given = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(first), "--steps", "1")
    for args, ckpt, expected in (((), inherited, False), (("--compile",), given, True)):
        result = CliRunner().invoke(main, ["train", "--data", str(photos), "--resume", str(first), "--checkpoint",
                                           str(ckpt), "--steps", "1", *args])
        assert result.exit_code == 0, result.output
        state = _load(ckpt)
        assert state["train_config"]["compile"] is expected and state["runs"][-1]["compiled"] is expected


def test_bf16_is_this_machines_setting_and_falls_back_to_fp32_where_it_is_emulated(photos, tmp_path,
                                                                                  monkeypatch) -> None:
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(first), "--steps", "1", "--no-bf16")
    monkeypatch.setattr("sccodec.train.loop.has_native_bf16", lambda device: False)
    _train("--data", str(photos), "--resume", str(first), "--checkpoint", str(second), "--steps", "1")
    state = _load(second)
    assert state["train_config"]["bf16"] is True  # the default again: not taken from the checkpoint
    assert [r["bf16"] for r in state["runs"][-2:]] == [False, False]  # asked off, then emulated here
    assert any(str(line.get("bf16", "")).startswith("off: no native bf16") for line in state["history"])


def test_validation_reports_every_level() -> None:
    torch.manual_seed(0)
    model = SCVAE(TINY)
    images = torch.rand(3, 3, 32, 32)
    report = validate(model, images)
    assert report["images"] == 3 and len(report["levels"]) == 2
    assert all(level["bpp"] > 0 and 0 < level["psnr"] < 100 for level in report["levels"])
    assert model.training, "validation must hand the model back in training mode"


def test_rate_phase_in_schedule() -> None:
    phase = RatePhaseIn(atoms=[1, 3], start_step=100, hold=10, ramp=20)
    assert phase.rate_grad(105, 4).tolist() == [1, 0, 1, 0]
    assert phase.rate_grad(120, 4).tolist() == [1, 0.5, 1, 0.5]
    assert phase.rate_grad(130, 4) is None


def test_rate_grad_scales_only_the_rate_gradient_of_chosen_atoms() -> None:
    torch.manual_seed(0)
    model = SCVAE(TINY)
    with torch.no_grad():  # decouple atoms 0-7 from 8-15 in LISTA, as reviving atoms by surgery does
        model.lista.s[:8, 8:] = 0
        model.lista.s[8:, :8] = 0
    x, q = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    grads = []
    for rate_grad in (None, torch.tensor([0.0] * 8 + [1.0] * 8)):
        model.zero_grad()
        torch.manual_seed(1)  # same noise
        out = model(x, q, rate_grad)
        (-torch.log2(out["likelihoods"]).sum()).backward()
        grads.append((out["likelihoods"].detach(), model.lista.w_e.grad.clone(), model.entropy.zero_logit.grad.clone()))
    (lik_a, we_a, ent_a), (lik_b, we_b, ent_b) = grads
    torch.testing.assert_close(lik_a, lik_b)  # same value
    torch.testing.assert_close(ent_a, ent_b)  # the entropy model still learns every atom
    assert we_b[:8].abs().sum() == 0 and we_a[:8].abs().sum() > 0  # no rate push on atoms 0-7
    torch.testing.assert_close(we_a[8:], we_b[8:])


def test_sigterm_checkpoints_and_resume_continues_from_it(photos, tmp_path) -> None:
    """A killed run (SIGTERM, as a scheduler sends) leaves a checkpoint of its last step."""
    ckpt = tmp_path / "killed.pt"
    cmd = [sys.executable, "-m", "sccodec", "train", "--data", str(photos), "--resume", str(WEIGHTS),
           "--checkpoint", str(ckpt), "--minutes", "10", "--crop", "32", "--batch", "2", "--device", "cpu",
           "--log-every", "1", "--no-bf16", "--no-compile"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        logged = 0  # progress lines, one per step (their "step" counts from the shipped model's)
        for line in proc.stdout:
            logged += '"loss"' in line
            if logged == 2:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert '"stopped": "on a signal"' in out
    state = _load(ckpt)
    assert state["step"] - state["runs"][-1]["start_step"] >= 2
    resumed = tmp_path / "resumed.pt"
    _train("--data", str(photos), "--resume", str(ckpt), "--checkpoint", str(resumed), "--steps", "1")
    assert _load(resumed)["step"] == state["step"] + 1


def test_dead_zone_gradient_leaks_only_in_training_and_leaves_values_alone() -> None:
    from sccodec.model.lista import soft_threshold

    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    theta = torch.tensor(1.0)
    exact, leaky = soft_threshold(x, theta), soft_threshold(x, theta, leak=0.1)
    torch.testing.assert_close(exact, leaky)
    (grad_exact,) = torch.autograd.grad(exact.sum(), x)
    (grad_leaky,) = torch.autograd.grad(leaky.sum(), x)
    assert grad_exact.tolist() == [1, 0, 0, 0, 1]
    torch.testing.assert_close(grad_leaky, torch.tensor([1, 0.1, 0.1, 0.1, 1]))

    torch.manual_seed(0)
    model = SCVAE(TINY)
    model.lista.dead_zone_grad = 0.1
    y = torch.randn(1, TINY.latent, 2, 2)
    theta = torch.full((1, TINY.atoms, 1, 1), 1e6)  # every atom silent
    with torch.no_grad():
        torch.testing.assert_close(model.lista(y, theta), model.lista.eval()(y, theta))
    for training, expect_grad in ((True, True), (False, False)):
        model.lista.train(training)
        model.lista.w_e.grad = None
        z = model.lista(y, theta)
        if expect_grad:
            z.sum().backward()
            assert model.lista.w_e.grad.abs().sum() > 0
        else:
            assert not z.requires_grad or torch.autograd.grad(z.sum(), model.lista.w_e)[0].abs().sum() == 0


def test_lambdas_set_a_new_models_levels_and_are_recorded(photos, tmp_path) -> None:
    ckpt = tmp_path / "new.pt"
    _train("--data", str(photos), "--lambdas", "0.01,0.1", "--nested-atoms", "--fixed-ladder",
           "--nonlinearity", "gdn", "--checkpoint", str(ckpt), "--steps", "1")
    state = _load(ckpt)
    config = ModelConfig.from_dict(state["model_config"])
    assert config.lambdas == (0.01, 0.1) and config.nested_atoms and config.fixed_ladder
    assert config.nonlinearity == "gdn" and any(k.endswith("gamma_root") for k in state["model"])
    assert state["train_config"]["model"] == {"lambdas": (0.01, 0.1), "nested_atoms": True, "fixed_ladder": True,
                                              "nonlinearity": "gdn"}
    command = shlex.split(state["runs"][-1]["command"])
    assert {"--nested-atoms", "--fixed-ladder"} <= set(command)
    assert [command[command.index(flag) + 1] for flag in ("--lambdas", "--nonlinearity")] == ["0.01,0.1", "gdn"]
    model = SCVAE(config)
    model.load_state_dict(state["model"])  # the ladder is stored (as buffers) but not learned
    assert "log_step" in state["model"] and "log_step" not in dict(model.named_parameters())
    torch.testing.assert_close(model.log_gain, SCVAE(config).log_gain)


def test_resumed_model_grows_synthesis_blocks_that_start_as_the_identity(photos, tmp_path) -> None:
    small, grown, again = tmp_path / "small.pt", tmp_path / "grown.pt", tmp_path / "again.pt"
    _train("--data", str(photos), "--nonlinearity", "gdn", "--checkpoint", str(small), "--steps", "2",
           "--validate-minutes", "0")
    _train("--data", str(photos), "--resume", str(small), "--synthesis-blocks", "1", "--blocks-lr", "0.003",
           "--checkpoint", str(grown), "--steps", "1")
    before, after = map(_load, (small, grown))
    assert ModelConfig.from_dict(after["model_config"]).synthesis_blocks == 1
    assert {"synthesis_blocks": [0, 1]} == next(line["grown"] for line in after["history"] if "grown" in line)
    assert "--synthesis-blocks 1 --resume" in after["runs"][-1]["command"]  # the run can be repeated
    # Adam kept the old parameters' statistics and gave the blocks a group of their own
    assert [g["base_lr"] for g in after["optimizer"]["param_groups"]] == [0.001, 0.005, 0.003]
    assert after["optimizer"]["state"][0]["step"] == before["optimizer"]["state"][0]["step"] + 1
    # the new blocks are the identity: the grown model decodes what the small one did
    config = ModelConfig.from_dict(before["model_config"])
    small_model, grown_model = SCVAE(config).eval(), SCVAE(replace(config, synthesis_blocks=2)).eval()
    small_model.load_state_dict(before["model"])
    grown_model.load_state_dict(before["model"], strict=False)
    symbols = _symbols(small_model, torch.rand(1, 3, 48, 32), 1)
    assert torch.equal(small_model.decode_symbols(symbols, 1), grown_model.decode_symbols(symbols, 1))
    # resumed as it is, the grown model keeps its blocks; blocks are never removed
    _train("--data", str(photos), "--resume", str(grown), "--checkpoint", str(again), "--steps", "1")
    assert ModelConfig.from_dict(_load(again)["model_config"]).synthesis_blocks == 1
    _train("--data", str(photos), "--resume", str(grown), "--steps", "1", "--synthesis-blocks", "2",
           "--checkpoint", str(again), "--force")
    # Adam's state follows each parameter by name: the trained first blocks keep theirs
    state = _load(again)
    names = [n for group in grouped_names(SCVAE(ModelConfig.from_dict(state["model_config"]))) for n in group]
    adam_steps = {n: int(state["optimizer"]["state"][i]["step"]) for i, n in enumerate(names)}
    assert adam_steps["g_s.refine.0.0.body.0.weight"] == 2 and adam_steps["g_s.refine.0.1.body.0.weight"] == 1
    assert adam_steps["g_a.0.weight"] == 4  # 2 + 1 + 1 steps
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--resume", str(again), "--steps", "1",
                                       "--synthesis-blocks", "1", "--checkpoint", str(tmp_path / "x.pt")])
    assert result.exit_code != 0 and "cannot be removed" in result.output
    assert isinstance(result.exception, SystemExit)  # a one-line error, not an uncaught one
    assert not (tmp_path / "x.pt").exists()
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--resume", str(small), "--steps", "1",
                                       "--blocks-lr", "0.001", "--checkpoint", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "has none" in result.output and not (tmp_path / "x.pt").exists()


def test_model_configs_stay_readable_across_versions() -> None:
    from sccodec.errors import ModelMismatchError

    plain = ModelConfig()
    assert "synthesis_blocks" not in plain.to_dict()  # a plain model's weights keep their bytes
    assert ModelConfig.from_dict(replace(plain, synthesis_blocks=2).to_dict()).synthesis_blocks == 2
    with pytest.raises(ModelMismatchError, match="newer sccodec"):
        ModelConfig.from_dict(plain.to_dict() | {"attention_blocks": 1})


@pytest.mark.parametrize("extra", [["--lambdas", "0.1,0.01"], ["--lambdas", "0.1"], ["--lambdas", "a,b"],
                                   ["--lambdas", "0.001,nan"], ["--lambdas", "0.001,inf"],
                                   ["--lambdas", "0.01,0.1", "--resume", str(WEIGHTS)],
                                   ["--nested-atoms", "--resume", str(WEIGHTS)],
                                   ["--fixed-ladder", "--resume", str(WEIGHTS)],
                                   ["--nonlinearity", "gdn", "--resume", str(WEIGHTS)]])
def test_bad_lambdas_are_usage_errors(photos, tmp_path, extra) -> None:
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--steps", "1",
                                       "--checkpoint", str(tmp_path / "x.pt"), *extra])
    assert result.exit_code == 2 and ("lambdas" in result.output or "new model" in result.output)
    assert not (tmp_path / "x.pt").exists()


def test_nested_atoms_leave_closed_atoms_silent_and_without_gradient() -> None:
    torch.manual_seed(0)
    config = ModelConfig(channels=8, latent=8, atoms=16, lambdas=(0.01, 0.05, 0.1), nested_atoms=True)
    model = SCVAE(config)
    model.lista.dead_zone_grad = 0.1  # the leak must not reach closed atoms either
    with torch.no_grad():
        model.threshold_logit.fill_(-20.0)  # thresholds ~0: every open atom fires
    x = torch.rand(3, 3, 32, 32)
    q = torch.arange(3)
    s, _ = model.scaled_code(x, q)
    budgets = [6, 11, 16]  # ceil(16 * (q + 1) / 3)
    for level, budget in enumerate(budgets):
        fired = s[level].abs().sum(dim=(1, 2)) > 0
        assert fired[:budget].all() and not fired[budget:].any()
        symbols = _symbols(model, x[level : level + 1], level)
        assert not symbols[budget:].any()
    (grad,) = torch.autograd.grad(s[0].sum(), model.lista.w_e)
    assert grad[budgets[0]:].abs().sum() == 0 and grad[: budgets[0]].abs().sum() > 0
    assert SCVAE(ModelConfig(channels=8, latent=8, atoms=16)).atom_mask(q) is None


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def checkpoint(photos, tmp_path_factory) -> Path:
    ckpt = tmp_path_factory.mktemp("ckpt") / "one.pt"
    _train("--data", str(photos), "--lambdas", "0.01,0.1", "--checkpoint", str(ckpt), "--steps", "1")
    return ckpt


def test_export_writes_a_loadable_model_and_never_replaces_one_silently(checkpoint, tmp_path) -> None:
    from sccodec.weights import read_model_file

    out = tmp_path / "models"
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out).exit_code == 0
    model_file = read_model_file(out / "Tiny-1.safetensors")
    assert model_file.name == "Tiny-1" and model_file.config.lambdas == (0.01, 0.1)
    sidecar = json.loads((out / "Tiny-1.json").read_text())
    assert sidecar["weights_hash"] == model_file.digest.hex() and sidecar["training"]["iterations"] == 1
    before = (out / "Tiny-1.safetensors").read_bytes()
    again = _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out)
    assert again.exit_code == 3 and "--force" in again.output
    assert (out / "Tiny-1.safetensors").read_bytes() == before
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out, "--force").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["Tiny-1.analysis.onnx", "Tiny-1.code.onnx", "Tiny-1.json",
                                                     "Tiny-1.safetensors", "Tiny-1.synthesis.onnx"]  # none kept


def test_export_can_store_the_transforms_in_float16(checkpoint, tmp_path) -> None:
    from safetensors import safe_open

    from sccodec.train.export import is_transform_weight
    from sccodec.weights import read_model_file

    full, half = tmp_path / "full", tmp_path / "half"
    assert _cli("export", checkpoint, "--name", "m", "--out-dir", full).exit_code == 0
    assert _cli("export", checkpoint, "--name", "m", "--out-dir", half, "--float16-transforms").exit_code == 0
    with safe_open(str(half / "m.safetensors"), framework="pt") as f:
        dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
    assert {dtypes[k] for k in dtypes if is_transform_weight(k)} == {"F16"}
    assert dtypes["lista.w_e"] == "F32" and "g_s.0.0.bias" in dtypes and dtypes["g_s.0.0.bias"] == "F32"
    assert "--float16-transforms" in json.loads((half / "m.json").read_text())["training"]["export_command"]
    a, b = (read_model_file(d / "m.safetensors").build() for d in (full, half))
    x = torch.rand(1, 3, 32, 48)
    symbols = _symbols(a, x, 1)
    out_a, out_b = a.decode_symbols(symbols, 1), b.decode_symbols(symbols, 1)
    assert not torch.equal(out_a, out_b) and (out_a - out_b).abs().max() < 0.01


def test_export_force_keeps_the_replaced_weights_so_their_files_still_decode(checkpoint, photos, tmp_path,
                                                                             monkeypatch) -> None:
    from sccodec.weights import available_models, read_model_file

    out = tmp_path / "models"
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out).exit_code == 0
    monkeypatch.setattr("sccodec.weights.shipped_dir", lambda: out)
    old = read_model_file(out / "Tiny-1.safetensors")
    old_bytes = old.path.read_bytes()
    data = sccodec.Codec("Tiny-1", device="cpu").encode(gradient_image(32, 32), 1)
    classes = random_class_tables(old.tables, model_digest=old.digest).to_bytes()  # its block classes go along
    (out / "Tiny-1.classes.safetensors").write_bytes(classes)
    pairs = random_pair_tables(old.tables.qualities, old.tables.atoms, 1, seed=3, model_digest=old.digest,
                               classes_digest=hashlib.sha256(classes).digest()[:8]).to_bytes()  # and its pairs
    (out / "Tiny-1.pairs.safetensors").write_bytes(pairs)
    # refitted tables: different weights under the same name
    result = _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out, "--force", "--fit-tables", photos,
                  "--fit-images", "1")
    assert result.exit_code == 0 and "kept the replaced weights" in result.output
    new = read_model_file(out / "Tiny-1.safetensors")
    assert new.digest != old.digest
    # parametric tables use training's checkerboard contexts; fitted ones default to nested
    assert (old.context, new.context) == ("checkerboard", "nested")
    pixels = gradient_image(48, 40)
    fresh = sccodec.Codec("Tiny-1", device="cpu")
    assert fresh.model_file.context == "nested"
    assert fresh.decode_array(fresh.encode(pixels, 2))[0].shape == pixels.shape
    assert (out / f"Tiny-1@{old.digest.hex()}.safetensors").read_bytes() == old_bytes
    assert (out / f"Tiny-1@{old.digest.hex()}.classes.safetensors").read_bytes() == classes
    assert (out / f"Tiny-1@{old.digest.hex()}.pairs.safetensors").read_bytes() == pairs
    assert available_models() == ["Tiny-1"]
    assert sccodec.Codec("Tiny-1", device="cpu").decode_array(data)[0].shape == (32, 32, 3)  # via Tiny-1@HASH
    (out / f"Tiny-1@{old.digest.hex()}.safetensors").unlink()
    with pytest.raises(sccodec.SCVError, match=f"Tiny-1@{old.digest.hex()}.safetensors"):
        sccodec.Codec("Tiny-1", device="cpu").decode_array(data)


def test_export_records_the_models_own_shape_whatever_the_checkpoint_says(checkpoint, tmp_path) -> None:
    """Older checkpoints keep the shape options as top-level keys, and those of resumed runs hold the
    new-model defaults there (e.g. "leaky" for a GDN model): the sidecar records the model's own."""
    state = _load(checkpoint)
    del state["train_config"]["model"], state["runs"]
    state["train_config"] |= {"lambdas": None, "nonlinearity": "gdn", "nested_atoms": True}
    old = tmp_path / "old.pt"
    torch.save(state, old)
    assert _cli("export", old, "--name", "t", "--out-dir", tmp_path / "out").exit_code == 0
    sidecar = json.loads((tmp_path / "out" / "t.json").read_text())
    recorded = sidecar["training"]["train_config"]
    assert recorded["model"] == {"lambdas": [0.01, 0.1]} == {"lambdas": sidecar["config"]["lambdas"]}
    assert not {"lambdas", "nonlinearity", "nested_atoms"} & set(recorded)


def test_recorded_configs_of_both_layouts_give_the_same_command_line() -> None:
    from sccodec.train.config import command_line

    flat = {"data": "photos", "lr": 0.0002, "lambdas": [0.01, 0.1], "nonlinearity": "gdn", "nested_atoms": False,
            "synthesis_blocks": 2}
    nested = {"data": "photos", "lr": 0.0002, "model": {"synthesis_blocks": 2, "lambdas": (0.01, 0.1),
                                                       "nonlinearity": "gdn"}}
    new = command_line(nested, None)
    assert command_line(flat, None) == new and new.startswith("sccodec train --data photos --lr 0.0002 ")
    assert {"--lambdas 0.01,0.1", "--nonlinearity gdn", "--synthesis-blocks 2"} <= {
        " ".join(pair) for pair in zip(new.split(), new.split()[1:])}
    assert "--nested-atoms" not in new
    # a resumed run keeps its model's shape: only growth is an option
    assert command_line(flat, "a.pt") == command_line(nested, "a.pt") == (
        "sccodec train --data photos --lr 0.0002 --synthesis-blocks 2 --resume a.pt")


def test_export_quad_contexts_need_fitted_tables(checkpoint, tmp_path) -> None:
    result = _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", tmp_path / "out", "--context", "quad")
    assert result.exit_code == 2 and "--fit-tables" in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source,name", [("weights", "ok"), ("junk", "ok"), ("ckpt", "bad name"),
                                         ("ckpt", "-lead"), ("ckpt", "é")])
def test_export_refuses_bad_inputs_in_one_line(checkpoint, tmp_path, source, name) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    path = {"weights": WEIGHTS, "junk": junk, "ckpt": checkpoint}[source]
    result = _cli("export", path, "--name", name, "--out-dir", tmp_path / "out")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_training_errors_are_one_line(photos, tmp_path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(gradient_image(20, 20)).save(tiny / "a.png")
    (tiny / "b.jpg").write_bytes(b"not a jpeg")
    bad_crop = _cli("train", "--data", photos, "--crop", "40", "--steps", "1", "--checkpoint", tmp_path / "x.pt")
    assert bad_crop.exit_code == 2 and "multiple of 16" in bad_crop.output
    unreadable = _cli("train", "--data", tiny, "--steps", "1", "--checkpoint", tmp_path / "x.pt")
    assert unreadable.exit_code == 1 and "b.jpg" in unreadable.output
    assert isinstance(unreadable.exception, SystemExit)  # not an uncaught error
    (tiny / "b.jpg").unlink()
    too_small = _cli("train", "--data", tiny, "--steps", "1", "--crop", "32", "--checkpoint", tmp_path / "x.pt")
    assert too_small.exit_code == 1 and "at least 32 px" in too_small.output
    assert isinstance(too_small.exception, SystemExit)
    assert not (tmp_path / "x.pt").exists()


def test_resuming_from_a_file_that_is_not_a_model_is_one_line(photos, tmp_path) -> None:
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    result = _cli("train", "--data", photos, "--steps", "1", "--resume", fake, "--checkpoint", tmp_path / "x.pt")
    assert result.exit_code == 2 and "cannot resume" in result.output
    assert isinstance(result.exception, SystemExit)


def test_export_fit_errors_are_one_line(checkpoint, tmp_path) -> None:
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    empty.mkdir()
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    result = _cli("export", checkpoint, "--name", "t", "--out-dir", tmp_path / "out", "--fit-tables", empty)
    assert result.exit_code == 2 and "no training photos" in result.output
    result = _cli("export", checkpoint, "--name", "t", "--out-dir", tmp_path / "out", "--fit-tables", broken)
    assert result.exit_code == 1 and "a.jpg" in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    (tmp_path / "file").write_bytes(b"")
    result = _cli("export", checkpoint, "--name", "t", "--out-dir", tmp_path / "file" / "sub")
    assert result.exit_code == 3 and "cannot write" in result.output and isinstance(result.exception, SystemExit)


def test_fit_images_are_spread_over_the_whole_split() -> None:
    from sccodec.train.cli import evenly_spaced

    items = list(range(347))
    chosen = evenly_spaced(items, 160)
    assert len(chosen) == len(set(chosen)) == 160 and (chosen[0], chosen[-1]) == (0, 346)
    assert evenly_spaced(items, 400) == items and evenly_spaced(items, 1) == [0]


def test_train_never_replaces_a_checkpoint_it_does_not_resume(photos, tmp_path) -> None:
    ckpt = tmp_path / "hours_of_work.pt"
    ckpt.write_bytes(b"precious")
    refused = _cli("train", "--data", photos, "--steps", "1", "--checkpoint", ckpt)
    assert refused.exit_code == 3 and "--resume" in refused.output and "--force" in refused.output
    assert ckpt.read_bytes() == b"precious"
    _train("--data", str(photos), "--steps", "1", "--checkpoint", str(ckpt), "--force")
    step = _load(ckpt)["step"]
    _train("--data", str(photos), "--resume", str(ckpt), "--checkpoint", str(ckpt), "--steps", "1")
    assert _load(ckpt)["step"] == step + 1


def test_minutes_bound_a_run_that_also_has_steps(photos, tmp_path) -> None:
    """With --steps and --minutes the first bound reached ends the run."""
    ckpt = tmp_path / "t.pt"
    _train("--data", str(photos), "--resume", str(WEIGHTS), "--checkpoint", str(ckpt),
           "--steps", "1000000", "--minutes", "0.001", "--validate-minutes", "0")
    state = _load(ckpt)
    assert 1 <= state["step"] - state["runs"][-1]["start_step"] < 1000


def test_the_same_weights_always_export_to_the_same_file() -> None:
    """safetensors orders its JSON header by hash map (it varies from call to call and process to
    process); the export sorts it, so the weights hash in every .scv depends on the weights only."""
    import numpy as np
    from safetensors.numpy import load
    from safetensors.torch import save

    from sccodec.train.export import sorted_header

    tensors = {f"t{i}": torch.full((i + 1, 3), float(i)) for i in range(12)}
    meta = {"name": "x", "config": "{}", "format": "sccodec-weights-1", "extra": "y"}
    files = {sorted_header(save(tensors, metadata=meta)) for _ in range(10)}
    assert len(files) == 1
    (blob,) = files
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    assert list(header) == sorted(header) and n % 8 == 0
    loaded = load(blob)
    assert all(np.array_equal(loaded[k], v.numpy()) for k, v in tensors.items())


def test_tail_average_is_the_running_mean_of_the_floating_point_state() -> None:
    from sccodec.train.averaging import TailAverage

    net = torch.nn.BatchNorm1d(2)  # float parameters and an integer buffer (num_batches_tracked)
    average = TailAverage(first_step=5)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            net.weight.fill_(value)
        net.num_batches_tracked.fill_(int(value))
        average.update(net)
    weights = TailAverage.from_dict(average.to_dict()).weights(net.state_dict())
    assert average.count == 3 and torch.equal(weights["weight"], torch.full((2,), 3.0))
    assert weights["num_batches_tracked"].dtype == torch.long and weights["num_batches_tracked"].item() == 6


def test_a_run_keeps_the_mean_of_its_lr_tail_validates_it_and_export_ships_it(tmp_path) -> None:
    from sccodec.weights import read_model_file

    data = tmp_path / "photos"  # 40 photos: the 40th is held out, and large enough to validate on
    data.mkdir()
    for i in range(40):
        side = 256 if i == 39 else 40
        Image.fromarray(gradient_image(side, side, seed=i)).save(data / f"p{i:02d}.png")
    ckpt, out = tmp_path / "t.pt", tmp_path / "out"
    # the last 15% of 20 steps run at lr/10: steps 19 and 20 are averaged
    _train("--data", str(data), "--lambdas", "0.01,0.1", "--checkpoint", str(ckpt), "--steps", "20",
           "--validate-minutes", "100")
    state = _load(ckpt)
    assert (state["tail_average"]["first_step"], state["tail_average"]["count"]) == (19, 2)
    (line,) = [h["tail_average"] for h in state["history"] if "tail_average" in h]
    assert line["count"] == 2 and len(line["validation"]["levels"]) == 2
    assert _cli("export", ckpt, "--name", "mean", "--out-dir", out).exit_code == 0
    assert _cli("export", ckpt, "--name", "last", "--out-dir", out, "--last-weights").exit_code == 0
    mean = read_model_file(out / "mean.safetensors").build().state_dict()
    last = read_model_file(out / "last.safetensors").build().state_dict()
    key = "lista.w_e"
    assert torch.equal(mean[key], state["tail_average"]["mean"][key]) and torch.equal(last[key], state["model"][key])
    assert not torch.equal(mean[key], last[key])
    sidecar = json.loads((out / "mean.json").read_text())["training"]
    assert sidecar["weights"].startswith("mean over steps 19-20") and sidecar["last_validation"]["tail_average"]
    assert json.loads((out / "last.json").read_text())["training"]["weights"] == "the last step's"


def test_no_tail_average_keeps_none(photos, tmp_path) -> None:
    ckpt = tmp_path / "t.pt"
    _train("--data", str(photos), "--lambdas", "0.01,0.1", "--checkpoint", str(ckpt), "--steps", "20",
           "--validate-minutes", "0", "--no-tail-average")
    state = _load(ckpt)
    assert "tail_average" not in state and state["train_config"]["tail_average"] is False


def test_a_checkpoint_that_needs_pickle_is_refused_in_one_line(checkpoint, photos, tmp_path) -> None:
    """Checkpoints load without pickle (no code runs); one holding other objects is refused."""
    state = _load(checkpoint)
    state["train_config"] = TrainConfig(data=str(photos))  # an object: reading it back needs pickle
    pickled = tmp_path / "pickled.pt"
    torch.save(state, pickled)
    exported = _cli("export", pickled, "--name", "t", "--out-dir", tmp_path / "out")
    resumed = _cli("train", "--data", photos, "--steps", "1", "--resume", pickled, "--checkpoint", tmp_path / "x.pt")
    for result in (exported, resumed):
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        (line,) = [x for x in result.output.splitlines() if "needs pickle" in x]
        assert "TrainConfig" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.pt").exists()


def test_train_from_python_shapes_a_new_model_and_refuses_reshaping_a_resumed_one(photos, tmp_path) -> None:
    from sccodec.errors import ParameterError
    from sccodec.train.loop import train

    ckpt = tmp_path / "py.pt"
    cfg = TrainConfig(data=str(photos), checkpoint=str(ckpt), steps=1, crop=32, batch=2, compile=False,
                      device="cpu", validate_minutes=0, model={"channels": 8, "latent": 8, "atoms": 16,
                                                               "lambdas": (0.01, 0.1)})
    assert train(cfg) == ckpt
    assert ModelConfig.from_dict(_load(ckpt)["model_config"]) == TINY
    for shape, message in (({"atoms": 32}, "atoms shape a new model"), ({"attention": 1}, "not a model option")):
        with pytest.raises(ParameterError, match=message):
            train(replace(cfg, model=shape), resume=str(ckpt) if "atoms" in shape else None)


def test_tune_decoder_changes_the_synthesis_alone(checkpoint, photos, tmp_path, monkeypatch) -> None:
    """A decoder-only fine-tune keeps every tensor but g_s's, so the same files parse to the same
    symbols; the new model's sidecar records the run."""
    from sccodec.weights import read_model_file

    out = tmp_path / "models"
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out, "--fit-tables", photos,
                "--fit-images", "3").exit_code == 0
    monkeypatch.setattr("sccodec.weights.shipped_dir", lambda: out)
    result = _cli("tune-decoder", "Tiny-1", "--images", photos, "--minutes", "0.01", "--name", "Tiny-2",
                  "--out-dir", out, "--photos", "2", "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    old, new = (read_model_file(out / f"{n}.safetensors") for n in ("Tiny-1", "Tiny-2"))
    assert old.tensors.keys() == new.tensors.keys()
    changed = {k for k in old.tensors if not np.array_equal(old.tensors[k], new.tensors[k])}
    assert changed and all(k.startswith("g_s.") for k in changed)
    record = json.loads((out / "Tiny-2.json").read_text())["decoder_tune"]
    assert record["from"] == f"Tiny-1 {old.digest.hex()}" and record["steps"] >= 1 and record["photos"] == 2
    again = _cli("tune-decoder", "Tiny-1", "--images", photos, "--minutes", "0.01", "--name", "Tiny-2",
                 "--out-dir", out)
    assert again.exit_code == 2 and "exists" in again.output  # never replaced without --force


def test_fit_classes_writes_a_bound_class_file_and_its_record(checkpoint, photos, tmp_path, monkeypatch) -> None:
    """With the class file beside the weights the model writes format 6; the sidecar says how it was made."""
    from sccodec.weights import read_model_file

    out = tmp_path / "models"
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out, "--fit-tables", photos,
                "--fit-images", "3").exit_code == 0
    monkeypatch.setattr("sccodec.weights.shipped_dir", lambda: out)
    assert read_model_file(out / "Tiny-1.safetensors").coder.format_version == 5
    result = _cli("fit-classes", "Tiny-1", "--images", photos, "--photos", "3", "--classes", "2", "--iterations", "1")
    assert result.exit_code == 0, result.output
    model_file = read_model_file(out / "Tiny-1.safetensors")
    assert model_file.coder.format_version == 6 and model_file.classes.model_digest == model_file.digest
    record = json.loads((out / "Tiny-1.json").read_text())["block_classes"]
    assert record["hash"] == model_file.classes.digest.hex() and (record["classes"], record["photos"]) == (2, 3)
    pixels = gradient_image(40, 56)
    codec = sccodec.Codec("Tiny-1", device="cpu")
    assert codec.decode_array(codec.encode(pixels, 1))[0].shape == pixels.shape
    again = _cli("fit-classes", "Tiny-1", "--images", photos)
    assert again.exit_code == 2 and "exists" in again.output  # files name its hash: never replaced silently


def test_fit_pairs_writes_a_bound_pair_file_and_its_record(checkpoint, photos, tmp_path, monkeypatch) -> None:
    """With classes and the pair file beside the weights the model writes format 7; the sidecar
    records how, with the held-out bits; a model without classes is refused."""
    from sccodec.weights import read_model_file

    out = tmp_path / "models"
    assert _cli("export", checkpoint, "--name", "Tiny-1", "--out-dir", out, "--fit-tables", photos,
                "--fit-images", "3").exit_code == 0
    monkeypatch.setattr("sccodec.weights.shipped_dir", lambda: out)
    refused = _cli("fit-pairs", "Tiny-1", "--images", photos)
    assert refused.exit_code == 2 and "fit-classes" in refused.output
    assert _cli("fit-classes", "Tiny-1", "--images", photos, "--photos", "3", "--classes", "2",
                "--iterations", "1").exit_code == 0
    result = _cli("fit-pairs", "Tiny-1", "--images", photos, "--photos", "3", "--batch", "2", "--iterations", "3")
    assert result.exit_code == 0, result.output
    model_file = read_model_file(out / "Tiny-1.safetensors")
    assert model_file.coder.format_version == 7
    assert (model_file.pairs.model_digest, model_file.pairs.classes_digest) == (model_file.digest,
                                                                                model_file.classes.digest)
    record = json.loads((out / "Tiny-1.json").read_text())["atom_pairs"]
    assert record["hash"] == model_file.pairs.digest.hex() and (record["batch"], record["photos"]) == (2, 3)
    pixels = gradient_image(40, 56)
    codec = sccodec.Codec("Tiny-1", device="cpu")
    assert codec.decode_array(codec.encode(pixels, 1))[0].shape == pixels.shape
    assert _cli("fit-pairs", "Tiny-1", "--images", photos).exit_code == 2  # never replaced silently
