"""The sweep: every image through every codec at every sweep value, then per-point averages.

Work is split into one task per (image, codec); with several workers the tasks go to
long-lived spawned processes so each loads a codec (the sccodec model) once, not per task.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sccodec import metrics
from sccodec.bench.peers import CodecAdapter, Quality, get_codec

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"})
Sweeps = Mapping[str, tuple[Quality | None, ...]]


class BenchError(Exception):
    """A benchmark that cannot run or cannot finish; its message is meant for the user."""


@dataclass(frozen=True)
class BenchConfig:
    """A fully resolved run: which images, and each codec's sweep (codecs in run order)."""

    images: tuple[Path, ...]
    sweeps: Sweeps
    workers: int = 1
    dataset: str = ""


@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one sweep value."""

    codec: str
    quality: Quality | None
    image: str
    width: int
    height: int
    n_bytes: int
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float

    @property
    def bpp(self) -> float:
        return metrics.bits_per_pixel(self.n_bytes, self.width, self.height)

    @property
    def ms_ssim_db(self) -> float:
        return metrics.ms_ssim_db(self.ms_ssim)


@dataclass(frozen=True)
class RatePoint:
    """One point of an averaged RD curve (CompressAI convention: metrics averaged per point)."""

    quality: Quality | None
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float = math.nan
    decode_s: float = math.nan
    n_images: int = 0

    @property
    def ms_ssim_db(self) -> float:
        """dB of the averaged MS-SSIM, as CompressAI's plots compute it."""
        return metrics.ms_ssim_db(self.ms_ssim)


@dataclass(frozen=True)
class Curve:
    """A codec's RD curve, measured in this run or loaded from a reference file."""

    name: str
    label: str
    points: tuple[RatePoint, ...]
    param: str = "quality"
    lossless: bool = False
    reference: bool = False
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    version: str = ""

    def values(self, metric: str) -> np.ndarray:
        """One RatePoint attribute along the curve, e.g. ``curve.values("psnr")``."""
        return np.array([getattr(p, metric) for p in self.points], dtype=float)


@dataclass(frozen=True)
class BenchResult:
    config: BenchConfig
    curves: tuple[Curve, ...]
    measurements: tuple[Measurement, ...]
    wall_s: float


@dataclass(frozen=True)
class _Task:
    image: Path
    codec: str
    qualities: tuple[Quality | None, ...]


def find_images(folder: Path) -> tuple[Path, ...]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        raise BenchError(f"image folder {folder} does not exist")
    images = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
    if not images:
        raise BenchError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def select_codecs(names: Sequence[str]) -> tuple[list[CodecAdapter], list[str]]:
    """Adapters for the codecs that can run here, and one note per codec that cannot.

    Unknown names raise BenchError; a missing optional library only skips its codec."""
    adapters, notes = [], []
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        try:
            adapter = get_codec(name)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
        reason = adapter.unavailable()
        if reason:
            notes.append(f"skipping {name}: {reason}")
        else:
            adapters.append(adapter)
    return adapters, notes


def resolve_sweeps(adapters: Iterable[CodecAdapter], overrides: Mapping[str | None, Sequence[Quality]]) -> Sweeps:
    """Each codec's sweep: its own override, else the override for all codecs (key None),
    else its default. Lossless codecs have a single point whatever is asked."""
    sweeps: dict[str, tuple[Quality | None, ...]] = {}
    for adapter in adapters:
        values = overrides.get(adapter.name, overrides.get(None))
        if adapter.lossless or values is None:
            sweeps[adapter.name] = adapter.sweep()
            continue
        for value in values:
            try:
                adapter.check_quality(value)
            except ValueError as exc:
                hint = "" if adapter.name in overrides else f"; give it its own with --qualities {adapter.name}=..."
                raise BenchError(f"{exc}{hint}") from None
        sweeps[adapter.name] = tuple(dict.fromkeys(values))
    return sweeps


def total_steps(config: BenchConfig) -> int:
    """Number of encode/decode round trips the run will make (the progress bar's length)."""
    return len(config.images) * sum(len(values) for values in config.sweeps.values())


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read image {path}: {exc}") from None


def _describe(adapter: CodecAdapter, quality: Quality | None) -> str:
    return "lossless" if quality is None else f"{adapter.param} {quality:g}"


def _roundtrip(adapter: CodecAdapter, image: Image.Image, name: str, quality: Quality | None) -> Measurement:
    try:
        start = time.perf_counter()
        data = adapter.encode(image, quality)
        encoded = time.perf_counter()
        decoded = adapter.decode(data)
        done = time.perf_counter()
    except Exception as exc:  # a codec failure becomes one readable line, whatever its type
        raise BenchError(
            f"{adapter.name} failed on {name} at {_describe(adapter, quality)}: {type(exc).__name__}: {exc}"
        ) from exc
    if decoded.size != image.size:
        raise BenchError(f"{adapter.name} decoded {name} to {decoded.size}, expected {image.size}")
    original, restored = np.asarray(image), np.asarray(decoded)
    return Measurement(
        codec=adapter.name,
        quality=quality,
        image=name,
        width=image.width,
        height=image.height,
        n_bytes=len(data),
        psnr=metrics.psnr_rgb(original, restored),
        ms_ssim=metrics.ms_ssim_rgb(original, restored),
        encode_s=encoded - start,
        decode_s=done - encoded,
    )


class _Codecs:
    """The adapters of one process. Each is warmed up with an untimed round trip on first
    use, so imports, model loading and lazy library set-up stay out of the timings."""

    def __init__(self) -> None:
        self._ready: dict[str, CodecAdapter] = {}

    def run(self, task: _Task) -> list[Measurement]:
        image = load_rgb(task.image)
        adapter = self._ready.get(task.codec)
        if adapter is None:
            adapter = get_codec(task.codec)
            _roundtrip(adapter, image, task.image.name, task.qualities[0])
            self._ready[task.codec] = adapter
        return [_roundtrip(adapter, image, task.image.name, q) for q in task.qualities]


def _serve(tasks: Any, results: Any, threads: int) -> None:
    """Worker process loop: (index, task) in, (index, measurements, error message) out."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    if "torch" in sys.modules:  # imported already (e.g. by sccodec/__init__): env is too late
        sys.modules["torch"].set_num_threads(threads)
    codecs = _Codecs()
    for index, task in iter(tasks.get, None):
        try:
            results.put((index, codecs.run(task), None))
        except BenchError as exc:
            results.put((index, None, str(exc)))
        except Exception as exc:  # keep the worker's failure readable in the parent
            results.put((index, None, f"{task.codec} on {task.image.name}: {type(exc).__name__}: {exc}"))


def _run_parallel(tasks: list[_Task], workers: int, step: Callable[[int], None]) -> list[list[Measurement]]:
    # spawn, not fork: forking a parent that may hold torch/OpenMP threads can deadlock
    ctx = mp.get_context("spawn")
    task_queue, result_queue = ctx.Queue(), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [ctx.Process(target=_serve, args=(task_queue, result_queue, threads), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for item in enumerate(tasks):
            task_queue.put(item)
        for _ in procs:
            task_queue.put(None)
        done: dict[int, list[Measurement]] = {}
        while len(done) < len(tasks):
            try:
                index, measured, error = result_queue.get(timeout=0.5)
            except queue.Empty:
                exited = [p.exitcode for p in procs if p.exitcode is not None]
                if any(exited):
                    raise BenchError(f"a worker process died (exit code {max(exited, key=abs)})") from None
                if len(exited) == len(procs):
                    raise BenchError("the worker processes stopped before finishing") from None
                continue
            if error:
                raise BenchError(error)
            done[index] = measured
            step(len(measured))
        return [done[i] for i in range(len(tasks))]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _mean(values: Sequence[float]) -> float:
    """Plain mean: a NaN (unmeasured) makes the point NaN, an inf (lossless) makes it inf."""
    return float(np.mean(values)) if values else math.nan


def aggregate(measurements: Iterable[Measurement], adapters: Mapping[str, CodecAdapter]) -> tuple[Curve, ...]:
    """Average per (codec, sweep value) over images; points sorted by rate."""
    groups: dict[str, dict[Quality | None, list[Measurement]]] = {}
    for m in measurements:
        groups.setdefault(m.codec, {}).setdefault(m.quality, []).append(m)
    curves = []
    for name, by_quality in groups.items():
        points = [
            RatePoint(
                quality=quality,
                bpp=_mean([m.bpp for m in ms]),
                psnr=_mean([m.psnr for m in ms]),
                ms_ssim=_mean([m.ms_ssim for m in ms]),
                encode_s=_mean([m.encode_s for m in ms]),
                decode_s=_mean([m.decode_s for m in ms]),
                n_images=len(ms),
            )
            for quality, ms in by_quality.items()
        ]
        adapter = adapters[name]
        curves.append(
            Curve(
                name=name,
                label=adapter.label,
                points=tuple(sorted(points, key=lambda p: p.bpp)),
                param=adapter.param,
                lossless=adapter.lossless,
                settings=adapter.settings(),
                version=adapter.version(),
            )
        )
    return tuple(curves)


def run_bench(config: BenchConfig, step: Callable[[int], None] | None = None) -> BenchResult:
    """Run the sweep; ``step(n)`` is called as n more round trips finish (for a progress bar)."""
    step = step or (lambda n: None)
    start = time.perf_counter()
    tasks = [_Task(image, codec, qualities) for image in config.images for codec, qualities in config.sweeps.items()]
    if config.workers > 1 and len(tasks) > 1:
        per_task = _run_parallel(tasks, min(config.workers, len(tasks)), step)
    else:
        codecs = _Codecs()
        per_task = []
        for task in tasks:
            per_task.append(codecs.run(task))
            step(len(task.qualities))
    measurements = tuple(m for batch in per_task for m in batch)
    adapters = {name: get_codec(name) for name in config.sweeps}
    return BenchResult(config, aggregate(measurements, adapters), measurements, time.perf_counter() - start)
