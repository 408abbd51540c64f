"""The GPU burst of issue #36: CUDA decode checks, CUDA timings, and training from the shipped weights,
in one bounded command whose results fit what a lent GPU machine brings back.

    bash bench/gpu_burst.sh BUDGET_S [OUT_DIR] [options]   # on the GPU machine: installs, then runs this
    python bench/gpu_burst.py --budget 420 --out DIR [--device auto|cuda|cpu] [--steps N] [--pack train_pack]
    python bench/gpu_burst.py --device cpu --steps 2 --batch 2 --no-compile --time-sizes 64x48 --out DIR  # dry run
    python bench/gpu_burst.py --join DIR --to train_runs/gpu1.pt   # back here: the returned checkpoint, whole

Steps, each bounded by what is left of --budget (counted from --started, which gpu_burst.sh sets
before installing), each recorded in DIR/report.json as soon as it is done:

1. environment: Python, torch, CUDA, cuDNN, GPU, driver, package versions, and whether every
   dependency pyproject.toml names (with the train extra) is installed at a version it allows.
2. checks: every ``tests/data/conformance/*.scv`` parsed by the accelerated codec (torch on CUDA,
   ``sccodec.Codec(device="cuda")``) gives the same symbols as the CPU codec (ONNX Runtime) and
   the manifest's symbol digest, and decodes to pixels within 1 level of the CPU's (max |diff|
   and share of identical values per file), with cuDNN's TF32 as torch sets it and again with
   TF32 off; the first --time-sizes image (768x512) encoded on both devices (same bytes? same
   symbols? decoded on the CPU, within 1 level?); encode/decode times of the bundled astronaut photo resized to each
   --time-sizes size (768x512 and 3840x2160: median of --time-runs after a warm-up), and on
   the CPU path for sizes up to 1 MP; the held-out validation of the shipped weights on the
   pack's validation crops (the "before" of training).
   With ``--device cpu`` (no GPU: the dry run) the "accelerated" codec is torch on the CPU.
3. training: ``sccodec.train.loop.train`` from ``weights/MODEL.safetensors`` on the pack
   (``bench/make_training_pack.py``) for what is left of the budget less --margin, in a child
   process: bf16 autocast where the device has it, ``torch.compile``d transforms, --batch and
   --crop, a checkpoint every --checkpoint-minutes (TrainConfig.checkpoint_minutes: ``sccodec
   train`` has no flag for it, hence the Python call) and a held-out validation every
   --validate-minutes. The pack's crops are put on the GPU once and batches drawn there (the
   trainer's PatchSampler, with flips, on the device: no CPU work between steps). Each time
   the trainer writes its checkpoint (with Adam's state, too big to bring back) this process
   writes a compact copy into DIR: the model's weights (float32, exact), the tail average if the
   run has reached its lr/10 tail, step, configs, history and run records, without the
   optimiser's state, split into parts of at most 16,000,000 bytes (``ckpt.pt.part0`` ...),
   their SHA-256 in report.json. Near the end of the budget the child is sent SIGTERM (the
   trainer finishes its step and writes a checkpoint), then killed.
4. report.json: the above, the training's steps, speed, loss, validations before and after,
   and the minutes used. The run record in the returned checkpoint gets ``gpu_minutes`` and
   ``gpu`` (the sidecar's ``training.runs`` keeps them after ``sccodec export``).

What comes back (at most 8 files of at most 16 MiB): report.json, burst.log (this script's
and the trainer's output), ckpt.pt.part0..2 (19 MB of weights, 38 MB once a tail average exists).
Join the parts with --join (checks the SHA-256, loads the result as a checkpoint) or
``cat ckpt.pt.part0 ckpt.pt.part1 ... > run.pt``; then export on the CPU:
``sccodec export run.pt --name cand --fit-tables ../shared/data/train --fit-images 160``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONFORMANCE = REPO / "tests" / "data" / "conformance"
SAMPLE = REPO / "sccodec" / "data" / "samples" / "astronaut.jpg"
REPORT = "report.json"
LOG = "burst.log"
PART = "ckpt.pt.part{}"
PART_BYTES = 16_000_000  # under the device tool's 16 MiB per file
MAX_FILES = 8
MAX_FILE_BYTES = 16 * 2**20
CPU_TIMING_MAX_PIXELS = 1_000_000  # the CPU path is timed only on sizes up to this (4K takes long there)


# ------------------------------------------------------------------ small helpers


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def symbols_sha256(tiles: list[np.ndarray]) -> str:
    """As tests/data/conformance/make.py: every tile's symbols in file order, int32 little-endian."""
    digest = hashlib.sha256()
    for tile in tiles:
        digest.update(np.ascontiguousarray(tile, dtype="<i4").tobytes())
    return digest.hexdigest()


def median_time(fn, runs: int) -> tuple[float, list[float], object]:
    """(median seconds, all runs, the last result) of ``fn()`` after one untimed warm-up call."""
    result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [round(t, 4) for t in times], result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(float(10 * np.log10(255**2 / max(mse, 1e-12))), 3)


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_abs_diff": int(diff.max()), "fraction_identical": round(float((diff == 0).mean()), 6),
            "within_1_level": bool(diff.max() <= 1)}


def dependency_problems() -> list[str]:
    """Requirements of pyproject.toml (dependencies + the train extra) not met by what is installed."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return ["(not checked: no tomllib)"]
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["(not checked: no packaging)"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    problems = []
    for text in project["dependencies"] + project["optional-dependencies"]["train"]:
        req = Requirement(text.split("#")[0].strip())
        have = version_of(req.name)
        if have is None:
            problems.append(f"{req.name}: not installed")
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name} {have}: pyproject wants {req.specifier}")
    return problems


# ------------------------------------------------------------------ the burst


class Burst:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = args.started or time.time()
        self.deadline = self.started + args.budget
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / LOG
        self.failed = False
        self.gpu_name: str | None = None
        self.last_run: dict | None = None  # the run record of the last checkpoint brought back
        self.report: dict = {
            "script": "bench/gpu_burst.py", "issue": 36, "command": sys.argv, "started_utc": utc_now(),
            "budget_s": args.budget, "install": os.environ.get("GPU_BURST_INSTALL", "not through gpu_burst.sh"),
            "errors": [],
        }
        self._log_lock = threading.Lock()

    # --- bookkeeping

    def left(self) -> float:
        return self.deadline - time.time()

    def say(self, message: str) -> None:
        line = f"[gpu_burst {time.time() - self.started:6.1f}s] {message}"
        self.write_log(line)

    def write_log(self, line: str) -> None:
        with self._log_lock:
            print(line, flush=True)
            with self.log_path.open("a") as f:
                f.write(line.rstrip("\n") + "\n")

    def save(self) -> None:
        self.report["minutes_used"] = round((time.time() - self.started) / 60, 2)
        self.report["updated_utc"] = utc_now()
        write_atomic(self.out / REPORT, (json.dumps(self.report, indent=1) + "\n").encode())

    def phase(self, name: str, fn) -> None:
        self.say(f"{name}: start ({self.left():.0f} s of the budget left)")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (one phase's failure must not cost the others)
            self.failed = True
            self.report["errors"].append({"phase": name, "error": f"{type(e).__name__}: {e}",
                                          "traceback": traceback.format_exc().splitlines()[-12:]})
            self.say(f"{name}: FAILED {type(e).__name__}: {e}")
        self.save()
        self.say(f"{name}: done")

    # --- 1. environment

    def environment(self) -> None:
        import torch

        args = self.args
        cuda = args.device.startswith("cuda")
        env = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
               "hostname": platform.node(), "cpu_count": os.cpu_count(), "device": args.device,
               "torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "cuda_available": torch.cuda.is_available(),
               "packages": {n: version_of(n) for n in ("sccodec", "numpy", "pillow", "onnxruntime", "constriction",
                                                       "safetensors", "click", "onnx", "onnxscript", "packaging")},
               "dependency_problems": dependency_problems()}
        if cuda:
            props = torch.cuda.get_device_properties(0)
            self.gpu_name = props.name
            env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                    "cudnn": torch.backends.cudnn.version(), "bf16_supported": torch.cuda.is_bf16_supported(),
                    "tf32_default": {"cudnn": torch.backends.cudnn.allow_tf32,
                                     "matmul": torch.backends.cuda.matmul.allow_tf32}}
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
                env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
            except (OSError, subprocess.TimeoutExpired) as e:
                env["nvidia_smi"] = f"not run: {e}"
        from sccodec.weights import load_model_file

        env["weights"] = {args.model: load_model_file(args.model).digest.hex()}
        self.report["environment"] = env

    # --- 2. checks

    def codecs(self, model: str, digest: bytes | None):
        """(the accelerated codec, the CPU codec) for the weights a file names."""
        import sccodec
        from sccodec.weights import load_model_file

        mf = load_model_file(model, digest)
        cpu = sccodec.Codec(mf, device="cpu")
        if self.args.device.startswith("cuda"):
            return sccodec.Codec(mf, device=self.args.device), cpu
        from sccodec.model.torch_model import TorchModel

        return sccodec.Codec(mf, device="cpu", network=TorchModel(mf.build(), "cpu")), cpu

    def checks(self) -> None:
        import torch

        args = self.args
        cuda = args.device.startswith("cuda")
        checks: dict = {"accelerated": f"torch on {args.device} (sccodec.Codec(device={args.device!r}))" if cuda
                        else "torch on the CPU (no GPU: a dry run of the CUDA checks)",
                        "reference": "ONNX Runtime on the CPU (sccodec.Codec(device='cpu'))"}
        self.report["checks"] = checks
        checks_end = min(self.deadline - args.train_reserve, time.time() + args.checks_budget)
        manifest = {e["file"]: e for e in json.loads((CONFORMANCE / "manifest.json").read_text())["files"]}
        from sccodec import bitstream

        cache: dict = {}
        files = []
        decoded: dict = {}
        for path in sorted(CONFORMANCE.glob("*.scv")):
            data = path.read_bytes()
            header, _ = bitstream.parse_header(data)
            key = (header.model, header.weights_hash)
            acc, cpu = cache.setdefault(key, self.codecs(*key))
            t0 = time.perf_counter()
            acc_tiles = acc.parse_symbols(data).tiles
            cpu_tiles = cpu.parse_symbols(data).tiles
            same = len(acc_tiles) == len(cpu_tiles) and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(acc_tiles, cpu_tiles))
            acc_px, mode = acc.decode_array(data)
            acc_s = time.perf_counter() - t0
            cpu_px, _ = cpu.decode_array(data)
            decoded[path.name] = (cpu_px, data, acc)
            entry = {"file": path.name, "model": header.model, "weights_hash": header.weights_hash.hex(),
                     "quality": header.quality, "size": f"{header.width}x{header.height}", "mode": mode,
                     "tiles": header.num_tiles, "symbols_identical": same,
                     "symbols_match_manifest": symbols_sha256(acc_tiles) == manifest.get(path.name, {}).get("symbols_sha256"),
                     **pixel_agreement(acc_px, cpu_px), "accelerated_parse_decode_s": round(acc_s, 4)}
            files.append(entry)
        checks["conformance"] = files
        checks["all_symbols_identical"] = bool(files) and all(f["symbols_identical"] and f["symbols_match_manifest"] for f in files)
        checks["all_within_1_level"] = bool(files) and all(f["within_1_level"] for f in files)
        checks["max_abs_diff"] = max((f["max_abs_diff"] for f in files), default=None)
        self.say(f"conformance: {len(files)} files, symbols identical: {checks['all_symbols_identical']}, "
                 f"max pixel diff {checks['max_abs_diff']}")
        self.save()

        if cuda:  # the same decodes with TF32 off everywhere: does TF32 cost the 1-level agreement?
            saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            try:
                checks["conformance_tf32_off"] = [
                    {"file": name, **pixel_agreement(acc.decode_array(data)[0], cpu_px)}
                    for name, (cpu_px, data, acc) in decoded.items()]
            finally:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
            self.save()

        from PIL import Image

        def sample(width: int, height: int) -> np.ndarray:
            with Image.open(SAMPLE) as im:
                return np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))

        acc, cpu = self.codecs(args.model, None)
        cross = parse_size(args.time_sizes.split(",")[0])
        if time.time() < checks_end:  # files written on each device, read on the other
            image = sample(*cross)
            a_file, c_file = acc.encode(image), cpu.encode(image)
            a_sym = np.concatenate([t.ravel() for t in cpu.parse_symbols(a_file).tiles])
            c_sym = np.concatenate([t.ravel() for t in cpu.parse_symbols(c_file).tiles])
            a_on_acc, a_on_cpu = acc.decode_array(a_file)[0], cpu.decode_array(a_file)[0]
            checks["cross_device_encode"] = {
                "image": f"astronaut.jpg resized to {cross[0]}x{cross[1]}", "quality": acc.default_quality,
                "identical_files": a_file == c_file, "bytes": {"accelerated": len(a_file), "cpu": len(c_file)},
                "fraction_symbols_identical": round(float((a_sym == c_sym).mean()), 6) if a_sym.shape == c_sym.shape else None,
                "accelerated_file_decoded_on_cpu_vs_accelerated": pixel_agreement(a_on_acc, a_on_cpu),
                "psnr": {"accelerated_file": psnr(a_on_cpu, image), "cpu_file": psnr(cpu.decode_array(c_file)[0], image)}}
            self.save()

        timings = []
        for text in args.time_sizes.split(","):
            width, height = parse_size(text)
            if time.time() > checks_end:
                timings.append({"size": text, "skipped": "out of the checks' time"})
                continue
            image = sample(width, height)
            row = {"size": f"{width}x{height}", "image": f"astronaut.jpg resized (Lanczos) to {width}x{height}",
                   "quality": acc.default_quality, "runs": args.time_runs}
            for label, codec in (("accelerated", acc), ("cpu", cpu)):
                if label == "cpu" and (width * height > CPU_TIMING_MAX_PIXELS or time.time() > checks_end):
                    continue
                enc, enc_all, data = median_time(lambda c=codec: c.encode(image), args.time_runs)
                dec, dec_all, px = median_time(lambda c=codec, d=data: c.decode_array(d), args.time_runs)
                row[label] = {"encode_s": round(enc, 4), "decode_s": round(dec, 4), "encode_all": enc_all,
                              "decode_all": dec_all, "bpp": round(len(data) * 8 / (width * height), 4),
                              "psnr": psnr(px[0], image)}
            timings.append(row)
            self.say(f"timing {row['size']}: {row.get('accelerated')}")
            self.save()
        checks["timings"] = timings
        if cuda:
            checks["timings_note"] = ("wall time of Codec.encode / Codec.decode_array (entropy coding on the CPU, "
                                      "networks on the GPU, fp32, TF32 as torch sets it), median of the runs after "
                                      "one warm-up; 'cpu' is the ONNX Runtime path on this machine's "
                                      f"{os.cpu_count()} cores")
        del cache, decoded, acc, cpu
        if cuda:
            torch.cuda.empty_cache()

    # --- the validation before training

    def validation_before(self) -> None:
        import torch

        from sccodec.train.data import list_images, split_holdout
        from sccodec.train.distributed import has_native_bf16
        from sccodec.train.validate import load_validation, validate
        from sccodec.weights import load_model_file

        _, held_out = split_holdout(list_images(Path(self.args.pack)))
        images = load_validation(held_out)  # as the trainer validates: 256-px centre crops
        device = torch.device(self.args.device)
        model = load_model_file(self.args.model).build().to(device)
        model.bf16_transforms = (not self.args.no_bf16) and has_native_bf16(device)  # as the trainer validates
        t0 = time.time()
        result = validate(model, images)
        self.report.setdefault("training", {})["validation_before"] = {
            "weights": f"weights/{self.args.model}.safetensors", "bf16": model.bf16_transforms,
            "seconds": round(time.time() - t0, 1), **result}
        self.say(f"validation before: loss {result['loss']} on {result['images']} held-out crops")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def pack_crop(self) -> int:
        manifest = Path(self.args.pack) / "MANIFEST.json"
        if self.args.crop:
            return self.args.crop
        return json.loads(manifest.read_text())["crop"] if manifest.is_file() else 256

    # --- 3. training

    def train(self) -> None:
        args = self.args
        pack = Path(args.pack)
        manifest = pack / "MANIFEST.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"no training pack at {pack} (make it with python bench/make_training_pack.py "
                                    "and name it in the device call's carry)")
        cuda = args.device.startswith("cuda")
        work = Path(args.work or tempfile.mkdtemp(prefix="gpu_burst_"))
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / "run.pt"
        if ckpt.exists():
            ckpt.unlink()
        minutes = (self.left() - args.margin - args.child_startup) / 60
        if minutes < 0.2 and not args.steps:
            raise TimeoutError(f"only {self.left():.0f} s left: no time to train")
        resume = REPO / "weights" / f"{args.model}.safetensors"
        config = {"data": os.path.relpath(pack, REPO), "checkpoint": str(ckpt), "steps": args.steps,
                  "minutes": round(max(minutes, 0.05), 3), "crop": self.pack_crop(), "batch": args.batch,
                  "lr": args.lr, "checkpoint_minutes": args.checkpoint_minutes, "log_every": args.log_every,
                  "validate_minutes": args.validate_minutes, "device": args.device, "bf16": not args.no_bf16,
                  "compile": args.compile}
        if args.warmup is not None:
            config["warmup"] = args.warmup
        spec = {"config": config, "given": sorted(config), "resume": os.path.relpath(resume, REPO),
                "device_sampler": cuda or args.device_sampler, "fast_kernels": cuda}
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        training = self.report.setdefault("training", {})
        training |= {"config": config, "resumed_from": spec["resume"], "device_sampler": spec["device_sampler"],
                     "pack": json.loads(manifest.read_text()).get("crops"),
                     "cuda_settings": "cudnn.benchmark on, float32 matmul precision 'high' (TF32)" if cuda else None}
        self.save()
        self.say(f"training for {config['minutes']} min (steps bound: {args.steps or 'none'}), batch {args.batch}, "
                 f"crop {config['crop']}, lr {args.lr}, compile {args.compile}")

        lines: list[dict] = []
        proc = subprocess.Popen([sys.executable, "-u", str(Path(__file__).resolve()), "--child", str(spec_path)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

        def read() -> None:
            for raw in proc.stdout:
                self.write_log(raw.rstrip("\n"))
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        termed = killed = False
        state: dict = {"seen": None}
        while proc.poll() is None:
            time.sleep(1.0)
            self.collect(ckpt, state, lines)
            if not termed and self.left() < args.term_at:
                self.say("budget nearly spent: SIGTERM to the trainer (it checkpoints and stops)")
                proc.send_signal(signal.SIGTERM)
                termed = True
            elif not killed and self.left() < args.kill_at:
                self.say("the trainer did not stop: killed")
                proc.kill()
                killed = True
        reader.join(timeout=10)
        training["exit_code"] = proc.returncode
        training["stopped_by"] = "killed" if killed else "SIGTERM (budget)" if termed else "its own --minutes/--steps"
        self.collect(ckpt, state, lines)
        self.summarise(lines)
        if proc.returncode:
            raise RuntimeError(f"the trainer exited with {proc.returncode} (see {LOG})")

    def collect(self, ckpt: Path, state: dict, lines: list[dict]) -> None:
        """A new trainer checkpoint -> its compact copy in the output folder, in parts; report updated."""
        try:
            mtime = ckpt.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == state["seen"]:
            return
        import torch

        try:
            full = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (being replaced right now: the next poll reads it)
            self.say(f"checkpoint not read yet ({type(e).__name__})")
            return
        state["seen"] = mtime
        compact = {k: v for k, v in full.items() if k != "optimizer"}
        runs = [dict(r) for r in compact.get("runs", [])]
        if runs and runs[-1].get("device") == "cuda":
            runs[-1]["gpu_minutes"] = round(runs[-1].get("wall_seconds", 0.0) / 60, 2)
            runs[-1]["gpu"] = self.gpu_name
            runs[-1]["note"] = "trained by bench/gpu_burst.py on a lent GPU (issue #36); pack: train_pack"
        compact["runs"] = runs
        self.last_run = runs[-1] if runs else None
        buf = io.BytesIO()
        torch.save(compact, buf)
        data = buf.getvalue()
        size = self.args.part_bytes
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        for index, part in enumerate(parts):
            write_atomic(self.out / PART.format(index), part)
        index = len(parts)
        while (self.out / PART.format(index)).exists():  # a shorter checkpoint than the last: stale parts
            (self.out / PART.format(index)).unlink()
            index += 1
        self.report["returned_checkpoint"] = {
            "step": compact["step"], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "parts": [{"file": PART.format(i), "bytes": len(p), "sha256": hashlib.sha256(p).hexdigest()}
                      for i, p in enumerate(parts)],
            "holds": "model (float32, the last step's), " + ("tail_average (the lr/10 tail's mean), "
                                                             if "tail_average" in compact else "")
                     + "step, model_config, train_config, runs, history; no optimiser state",
            "join": "python bench/gpu_burst.py --join DIR --to train_runs/gpuN.pt   (or: cat "
                    + " ".join(PART.format(i) for i in range(len(parts))) + " > run.pt)",
            "export": "sccodec export train_runs/gpuN.pt --name cand --fit-tables ../shared/data/train "
                      "--fit-images 160  (on the CPU machine; add --last-weights for the last step's weights)",
            "written_utc": utc_now()}
        self.summarise(lines)
        self.say(f"checkpoint at step {compact['step']}: {len(data) / 1e6:.1f} MB in {len(parts)} part(s)")

    def summarise(self, lines: list[dict]) -> None:
        training = self.report.setdefault("training", {})
        progress = [ln for ln in lines if "loss" in ln and "it_s" in ln]
        compiled = next((ln for ln in lines if "compiled" in ln), None)
        run = self.last_run
        returned = self.report.get("returned_checkpoint")
        if returned:
            training["end_step"] = returned["step"]
        if run:
            training |= {"start_step": run.get("start_step"), "steps": run.get("end_step", 0) - run.get("start_step", 0),
                         "wall_seconds": run.get("wall_seconds"), "gpu_minutes": run.get("gpu_minutes"),
                         "bf16": run.get("bf16"), "compiled": run.get("compiled"), "command": run.get("command")}
        training |= {"compile_line": compiled, "progress_lines": len(progress),
                     "last_progress": progress[-1] if progress else None,
                     "loss_first_last": [progress[0]["loss"], progress[-1]["loss"]] if progress else None,
                     "validations": [ln for ln in lines if "validation" in ln],
                     "tail_average": next((ln for ln in reversed(lines) if "tail_average" in ln), None),
                     "stopped_on_signal": any(ln.get("stopped") for ln in lines),
                     "weights_digest": next((ln["weights_digest"] for ln in lines if "weights_digest" in ln), None),
                     "cuda_max_memory_gib": next((ln["cuda_max_memory_gib"] for ln in lines
                                                  if "cuda_max_memory_gib" in ln), None)}
        if progress:  # the CPU machine's recipe: batch 8 at 0.59 s a step (bench/results/train_speed.json)
            training["crops_per_s"] = round(progress[-1]["it_s"] * training["config"]["batch"], 1)
        self.save()

    # --- 4. the end

    def finish(self) -> int:
        files = sorted(p for p in self.out.iterdir() if p.is_file())
        self.report["returned_files"] = [{"file": p.name, "bytes": p.stat().st_size} for p in files]
        problems = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
        if len(files) > MAX_FILES or problems:
            self.report["errors"].append({"phase": "output", "error": f"{len(files)} files (at most {MAX_FILES}), "
                                                                      f"over 16 MiB: {problems}"})
            self.failed = True
        checks = self.report.get("checks", {})
        training = self.report.get("training", {})
        self.report["summary"] = {
            "symbols_identical_on_all_files": checks.get("all_symbols_identical"),
            "pixels_within_1_level_on_all_files": checks.get("all_within_1_level"),
            "max_abs_diff": checks.get("max_abs_diff"),
            "timings": {t["size"]: t.get("accelerated") and {k: t["accelerated"][k] for k in ("encode_s", "decode_s")}
                        for t in checks.get("timings", [])},
            "training_steps": training.get("steps"),
            "training_crops_per_s": training.get("crops_per_s"),
            "validation_loss_before": (training.get("validation_before") or {}).get("loss"),
            "validation_loss_after": ((training.get("validations") or [{}])[-1].get("validation") or {}).get("loss"),
            "tail_average_loss": (((training.get("tail_average") or {}).get("tail_average") or {})
                                  .get("validation") or {}).get("loss"),
            "checkpoint_step": (self.report.get("returned_checkpoint") or {}).get("step"),
            "errors": len(self.report["errors"]),
        }
        self.report["finished_utc"] = utc_now()
        self.save()
        self.say("summary: " + json.dumps(self.report["summary"]))
        return 1 if self.failed else 0


def join(folder: Path, target: Path, force: bool) -> int:
    """Rebuild the returned checkpoint from its parts, check it, and say how to export it."""
    report = json.loads((folder / REPORT).read_text())
    info = report.get("returned_checkpoint")
    if not info:
        print(f"{folder / REPORT} names no returned checkpoint (the run wrote none)", file=sys.stderr)
        return 1
    data = b"".join((folder / p["file"]).read_bytes() for p in info["parts"])
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        bad = [p["file"] for p in info["parts"]
               if hashlib.sha256((folder / p["file"]).read_bytes()).hexdigest() != p["sha256"]]
        print(f"the parts do not make the recorded checkpoint (mismatched: {bad}): a run cut off while writing "
              "them; no usable checkpoint", file=sys.stderr)
        return 1
    if target.exists() and not force:
        print(f"{target} exists (--force replaces it)", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    from sccodec.train.checkpoint import load_checkpoint

    state = load_checkpoint(str(target))
    print(f"wrote {target}: step {state['step']}, {len(data) / 1e6:.1f} MB "
          f"({'with' if 'tail_average' in state else 'without'} a tail average)")
    print(f"export: sccodec export {target} --name cand --fit-tables ../shared/data/train --fit-images 160")
    return 0


# ------------------------------------------------------------------ the training child


def device_sampler(base: type, device: str) -> type:
    """PatchSampler with the pack's crops on the GPU: a batch is drawn and flipped there."""
    import torch

    class DeviceSampler(base):
        def __init__(self, paths, crop: int, seed: int = 0) -> None:
            super().__init__(paths, crop, seed=seed)
            self.stack = None
            if all(tuple(im.shape[1:]) == (crop, crop) for im in self.images):  # else: the CPU sampler
                self.stack = torch.stack(self.images).to(device)
                self.gen = torch.Generator(device=device)
                self.gen.manual_seed(seed)

        def batch(self, size: int) -> torch.Tensor:
            if self.stack is None:
                return super().batch(size)
            index = torch.randint(len(self.stack), (size,), device=self.stack.device, generator=self.gen)
            x = self.stack[index].float().div_(255)
            flips = torch.rand(size, 2, device=self.stack.device, generator=self.gen) < 0.5
            x = torch.where(flips[:, 0].view(-1, 1, 1, 1), x.flip(-1), x)
            return torch.where(flips[:, 1].view(-1, 1, 1, 1), x.flip(-2), x)

    return DeviceSampler


def child(spec_path: str) -> int:
    import torch

    from sccodec.train import loop
    from sccodec.train.config import TrainConfig

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("fast_kernels"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matrix products (LISTA, entropy model)
    if spec.get("device_sampler"):
        loop.PatchSampler = device_sampler(loop.PatchSampler, spec["config"]["device"])
    loop.train(TrainConfig(**spec["config"]), resume=spec["resume"], given=frozenset(spec["given"]))
    if spec["config"]["device"].startswith("cuda"):  # for sizing --batch next time
        print(json.dumps({"cuda_max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}), flush=True)
    return 0


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=420.0, help="hard time budget, seconds [%(default)s]")
    ap.add_argument("--started", type=float, help="epoch seconds the budget counts from [now] (gpu_burst.sh sets it)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "bench_out" / "gpu_burst"),
                    help="output folder [$OUT, else bench_out/gpu_burst]")
    ap.add_argument("--pack", default=str(REPO / "train_pack"), help="training pack [%(default)s]")
    ap.add_argument("--work", help="folder for the trainer's full checkpoint [a new temp folder]")
    ap.add_argument("--device", default="auto", help="auto (cuda if there, else cpu), cuda, cuda:N or cpu")
    ap.add_argument("--model", default="scvae-gdn", help="shipped weights to check and train from [%(default)s]")
    ap.add_argument("--no-checks", action="store_true", help="skip the CUDA checks and timings")
    ap.add_argument("--no-train", action="store_true", help="skip training")
    ap.add_argument("--checks-budget", type=float, default=150.0, help="seconds the checks may take at most")
    ap.add_argument("--train-reserve", type=float, default=150.0, help="seconds the checks leave for training")
    ap.add_argument("--time-sizes", default="768x512,3840x2160", help="[%(default)s]")
    ap.add_argument("--time-runs", type=int, default=3, help="timed runs per size, after a warm-up [%(default)s]")
    ap.add_argument("--steps", type=int, default=0, help="train at most this many steps (0: until the budget)")
    ap.add_argument("--batch", type=int, help="[32 on CUDA, 2 on the CPU]")
    ap.add_argument("--crop", type=int, help="[the pack's crop]")
    ap.add_argument("--lr", type=float, default=5e-5, help="[%(default)s: the shipped model's recipe]")
    ap.add_argument("--warmup", type=int, help="Adam warm-up steps [the recipe's, 500]")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, help="[on for CUDA, off for the CPU]")
    ap.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast where native)")
    ap.add_argument("--device-sampler", action="store_true", help="draw batches on the device on the CPU too")
    ap.add_argument("--checkpoint-minutes", type=float, default=1.0, help="[%(default)s]")
    ap.add_argument("--validate-minutes", type=float, help="[2 on CUDA; 60 on the CPU: in effect at the end only]")
    ap.add_argument("--log-every", type=int, help="[50 on CUDA, 1 on the CPU]")
    ap.add_argument("--margin", type=float, default=40.0,
                    help="seconds kept after training for its last validation and checkpoint [%(default)s]")
    ap.add_argument("--child-startup", type=float, default=15.0,
                    help="seconds the trainer takes to start, before its clock runs [%(default)s]")
    ap.add_argument("--term-at", type=float, default=20.0, help="SIGTERM the trainer with this many s left")
    ap.add_argument("--kill-at", type=float, default=8.0, help="kill it with this many s left")
    ap.add_argument("--part-bytes", type=int, default=PART_BYTES,
                    help="largest part of the returned checkpoint [%(default)s: under the tool's 16 MiB a file]")
    ap.add_argument("--join", type=Path, metavar="DIR", help="join the checkpoint parts in DIR (see --to)")
    ap.add_argument("--to", type=Path, help="with --join: the checkpoint to write")
    ap.add_argument("--force", action="store_true", help="with --join: replace --to")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        return child(args.child)
    if args.join:
        if not args.to:
            ap.error("--join needs --to")
        return join(args.join, args.to, args.force)

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error("CUDA was asked for but torch sees no GPU")
    args.batch = args.batch or (32 if cuda else 2)
    args.compile = cuda if args.compile is None else args.compile
    args.validate_minutes = (2.0 if cuda else 60.0) if args.validate_minutes is None else args.validate_minutes
    args.log_every = args.log_every or (50 if cuda else 1)

    burst = Burst(args)
    burst.say(f"device {args.device}, budget {args.budget:.0f} s ({burst.left():.0f} s left), out {burst.out}")
    burst.phase("environment", burst.environment)
    if not args.no_checks:
        burst.phase("checks", burst.checks)
    if not args.no_train:
        if (Path(args.pack) / "MANIFEST.json").is_file():
            burst.phase("validation_before", burst.validation_before)
        burst.phase("training", burst.train)
    return burst.finish()


if __name__ == "__main__":
    sys.exit(main())
