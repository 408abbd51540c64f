"""The GPU burst of issue #36 (bench/gpu_burst.py), dry-run on the CPU so that it is known to work
before a GPU is ever lent: a training pack made by bench/make_training_pack.py from 40 tiny
generated photos (39 training crops, one held-out photo's crop), the conformance checks with
torch on the CPU standing in for CUDA, one tiny timing, 2 training steps at batch 2, and the
checkpoint brought back in parts and joined again.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import gradient_image
from sccodec.train.checkpoint import load_checkpoint
from sccodec.train.data import list_images, split_holdout

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "tests" / "data" / "conformance"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    photos = tmp_path_factory.mktemp("photos")
    for i in range(40):  # split_holdout holds out the 40th
        Image.fromarray(gradient_image(256, 272, seed=i)).save(photos / f"p{i:02d}.png")
    out = tmp_path_factory.mktemp("pack") / "train_pack"
    code = _script("make_training_pack").main(["--data", str(photos), "--out", str(out), "--crop", "256",
                                               "--per-photo", "1", "--val-per-photo", "2", "--no-wheels"])
    assert code == 0
    return out


def test_pack_keeps_the_held_out_photos_apart_and_the_trainer_holds_out_exactly_their_crops(pack) -> None:
    manifest = json.loads((pack / "MANIFEST.json").read_text())
    assert manifest["crops"] == {"train": 39, "validation": 1}
    assert "training photos" in manifest["licence"] and manifest["bytes"]["images"] > 0
    train_files, held_out_files = split_holdout(list_images(pack))
    by_name = {f["file"]: f for f in manifest["files"]}
    assert [p.name for p in held_out_files] == ["00039.jpg"]
    assert by_name["00039.jpg"]["photo"] == "p39.png" and by_name["00039.jpg"]["split"] == "validation"
    assert {by_name[p.name]["photo"] for p in train_files} == {f"p{i:02d}.png" for i in range(39)}
    with Image.open(pack / "00000.jpg") as im:
        assert im.size == (256, 256)  # the trainer validates on 256-px centre crops


def test_cpu_dry_run_checks_trains_and_brings_back_a_checkpoint_in_parts(pack, tmp_path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_burst.py"), "--device", "cpu", "--steps", "2",
                             "--batch", "2", "--crop", "32", "--no-compile", "--part-bytes", "6000000", "--time-sizes", "64x48", "--time-runs", "1",
                             "--budget", "600", "--out", str(out), "--pack", str(pack), "--work", str(work)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["errors"] == []

    checks = report["checks"]
    assert len(checks["conformance"]) == len(list(CONFORMANCE.glob("*.scv"))) > 0
    assert checks["all_symbols_identical"] and checks["all_within_1_level"]
    assert all(0 <= f["fraction_identical"] <= 1 for f in checks["conformance"])
    assert checks["cross_device_encode"]["accelerated_file_decoded_on_cpu_vs_accelerated"]["within_1_level"]
    (timing,) = checks["timings"]
    assert timing["size"] == "64x48" and timing["accelerated"]["decode_s"] > 0 and timing["cpu"]["encode_s"] > 0

    training = report["training"]
    assert training["steps"] == 2 and training["exit_code"] == 0
    assert training["validation_before"]["images"] == 1
    assert training["validations"] and training["validations"][-1]["validation"]["images"] == 1
    assert report["summary"]["training_steps"] == 2

    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert len(files) <= 8 and max(files.values()) <= 16 * 2**20
    returned = report["returned_checkpoint"]
    assert {p["file"] for p in returned["parts"]} <= set(files) and {"report.json", "burst.log"} <= set(files)
    assert len(returned["parts"]) >= 2  # the 15 MB of weights, in parts of at most --part-bytes
    assert all(p["bytes"] <= 6_000_000 for p in returned["parts"])

    burst = _script("gpu_burst")
    joined = tmp_path / "joined.pt"
    assert burst.main(["--join", str(out), "--to", str(joined)]) == 0
    state = load_checkpoint(str(joined))
    assert state["step"] == returned["step"] == training["end_step"]
    assert "optimizer" not in state and state["runs"][-1]["device"] == "cpu"
    assert state["runs"][-1]["end_step"] - state["runs"][-1]["start_step"] == 2

    # a part from another checkpoint is refused, not joined into a broken one
    part = out / returned["parts"][-1]["file"]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert burst.main(["--join", str(out), "--to", str(tmp_path / "bad.pt")]) == 1
    assert not (tmp_path / "bad.pt").exists()
