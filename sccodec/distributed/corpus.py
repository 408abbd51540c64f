"""Encode, decode or index a folder tree of images on a Dask cluster, one task per small batch.

    driver:  walk SOURCE ─▶ (input, output) pairs ─batches─▶ client.submit(code_batch) ─▶ ...
    worker:  code_batch: per file, skip a finished output, else read ─Codec─▶ atomic write
    driver:  ─▶ FileResults ─▶ CorpusReport (done, skipped, failed with one-line reasons, seconds)
             index: the descriptors ─▶ one ``sccodec.analysis.Index`` file

The output tree mirrors the input tree (``a/b/c.png`` becomes ``DST/a/b/c.scv``). A job is
resumable: an output that exists (for .scv, one that also parses, CRCs included) is skipped, so
a second run after a crash codes only what is missing. Every output is written through
``sccodec.atomic``: a worker killed mid-write leaves a hidden temp file, never a partial output,
and the next run removes such temp files before it starts. A file that cannot be coded never
stops the job: it is reported with a one-line reason.

The driver and every worker must see SOURCE and DST at the same paths (one machine, or a shared
file system). All file access goes through ``open_tree``, which knows local folders only; a tree
of another kind (an fsspec URL such as ``s3://bucket/photos``) would be one more class with the
same methods.

Each worker process keeps one loaded ``Codec`` per model (``sccodec.api.shared_codec``), with the
runtime's threads set so that the workers on one machine together use its cores once.
"""
from __future__ import annotations

import itertools
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from sccodec import atomic
from sccodec.api import shared_codec
from sccodec.bitstream import DEFAULT_MAX_PIXELS, MAGIC
from sccodec.errors import ImageInputError, ParameterError, SCVError
from sccodec.tile_workers import available_cores

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

Kind = Literal["encode", "decode", "index"]
KINDS: tuple[str, ...] = ("encode", "decode", "index")
#: Files per task, at most. A task costs a few milliseconds of scheduling against a few hundred
#: of coding for a photo, so batching barely changes a coding job; it matters when the work per
#: file is small: a resumed job whose files are all done checks 8 files per task in about 10 ms
#: against 6 ms for one (bench/results/corpus_throughput.json).
DEFAULT_BATCH_SIZE = 8
#: Batches in flight per worker thread: enough that no worker waits for the driver, few enough
#: that a corpus of millions of files is never all on the scheduler at once. A small corpus gets
#: smaller batches, so that every worker thread still has this many tasks to take.
IN_FLIGHT_PER_SLOT = 4
SCV_SUFFIX = ".scv"


@dataclass(frozen=True)
class CorpusJob:
    """What to do to which tree.

    ``destination``: the output tree (encode, decode) or the index file to write (index).
    ``suffix``: decode's output format (``.png``, ``.jpg``, ``.webp`` ...; encode writes .scv).
    ``threads``: the runtime's threads per worker thread; None shares each machine's cores
    among the workers on it.
    """

    kind: Kind
    source: str
    destination: str
    quality: int | None = None  # encode: the model's default level when None
    model: str | None = None  # encode: the shipped default when None (decode and index read each file's)
    suffix: str = ".png"
    threads: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "cpu"
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def output_suffix(self) -> str:
        return SCV_SUFFIX if self.kind == "encode" else self.suffix.lower()


@dataclass(frozen=True)
class FileResult:
    """One input's outcome, as a worker returns it."""

    path: str  # relative to the source root, with '/' separators
    status: Literal["done", "skipped", "failed"]
    reason: str = ""  # failed: one line naming the cause
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0  # the worker's wall time on this file (reading, coding, writing)
    cpu_seconds: float = 0.0  # the worker process's CPU time meanwhile (all its threads)
    warnings: tuple[str, ...] = ()  # one line each, e.g. a dropped ICC profile
    descriptor: np.ndarray | None = None  # index: the file's descriptor (D,)
    model: str = ""  # index: ``name@weights-hash`` of the model that coded the file


@dataclass
class CorpusReport:
    """What a job did: counts, the failures with their reasons, and the wall time."""

    kind: Kind
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, one line)
    seconds: float = 0.0
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    worker_seconds: float = 0.0  # the workers' wall time on the files done, added up
    worker_cpu_seconds: float = 0.0  # and their CPU time: unlike wall time, not stretched by a busy machine
    tasks: int = 0
    index_path: str | None = None

    @property
    def total(self) -> int:
        return self.done + self.skipped + len(self.failed)

    @property
    def images_per_second(self) -> float:
        """Files coded (not skipped) per second of wall time."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: FileResult) -> None:
        if result.status == "done":
            self.done += 1
            self.in_bytes += result.in_bytes
            self.out_bytes += result.out_bytes
            self.pixels += result.pixels
            self.worker_seconds += result.seconds
            self.worker_cpu_seconds += result.cpu_seconds
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed.append((result.path, result.reason))
        self.warnings.extend((result.path, line) for line in result.warnings)


# ---------------------------------------------------------------- file trees


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


@dataclass(frozen=True)
class LocalTree:
    """A folder tree on a local (or shared, mounted) file system, addressed by relative
    '/'-separated names. Hidden names (a leading '.': temp files, .git) are never listed."""

    root: Path

    def is_folder(self) -> bool:
        return self.root.is_dir()

    def files(self, suffixes: frozenset[str]) -> list[str]:
        """Every file whose suffix (lower-cased) is one of ``suffixes``, sorted."""
        found = []
        for folder, subfolders, names in os.walk(self.root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            base = Path(folder).relative_to(self.root)
            found.extend((base / name).as_posix() for name in names
                         if not name.startswith(".") and Path(name).suffix.lower() in suffixes)
        return sorted(found)

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def read_if_present(self, name: str) -> bytes | None:
        try:
            return self.read(name)
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """All of ``data`` under ``name`` or nothing (``sccodec.atomic``), folders made as needed."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(target, data)

    def remove_stale_temps(self, names: Sequence[str]) -> None:
        """Delete the temp files a killed writer left beside any of ``names`` (``sccodec.atomic``):
        only folders that hold hidden ``.tmp`` files are looked at, once each."""
        by_folder: dict[Path, list[str]] = {}
        for name in names:
            target = self.root / name
            by_folder.setdefault(target.parent, []).append(target.name)
        for folder, targets in by_folder.items():
            try:
                temps = [e for e in os.listdir(folder) if e.startswith(".") and e.endswith(".tmp")]
            except OSError:
                continue
            if temps:
                for target in targets:
                    atomic.remove_stale_temps(folder / target)


def open_tree(location: str) -> LocalTree:
    """The tree at ``location``: a local folder (a ``file://`` URL counts as one). Other URLs
    are refused for now; this is where an fsspec-backed tree would be chosen."""
    if location.startswith("file://"):
        location = location[len("file://"):]
    elif _URL.match(location):
        raise ParameterError(f"{location}: only local folders are supported (no {location.split(':')[0]}:// yet)")
    return LocalTree(Path(location))


# ---------------------------------------------------------------- the work on a worker


def worker_threads(job: CorpusJob, slots_by_host: dict[str, int]) -> int:
    """The runtime's threads for a task here: the job's, or this machine's cores shared among
    the worker threads on it (``slots_by_host``: worker threads per host, from the scheduler)."""
    if job.threads is not None:
        return job.threads
    try:
        from distributed import get_worker

        worker = get_worker()
        slots = slots_by_host.get(worker.host, worker.state.nthreads)
    except (ImportError, ValueError):  # not inside a Dask worker (a direct call)
        slots = 1
    return max(1, available_cores() // max(1, slots))


def code_batch(job: CorpusJob, pairs: Sequence[tuple[str, str]], slots_by_host: dict[str, int]) -> list[FileResult]:
    """Run ``job`` on each (input name, output name) pair; every failure becomes a FileResult."""
    source, destination = open_tree(job.source), open_tree(job.destination)
    threads = worker_threads(job, slots_by_host)
    step = {"encode": _encode_file, "decode": _decode_file, "index": _describe_file}[job.kind]
    results = []
    for name, output in pairs:
        start, cpu_start = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = step(job, source, destination, name, output, threads)
            except Exception as e:  # noqa: BLE001 (a bad file is reported, the batch goes on)
                result = FileResult(name, "failed", one_line_reason(e))
        lines = tuple(dict.fromkeys(str(w.message).splitlines()[0] for w in caught if str(w.message)))
        results.append(replace(result, warnings=lines, seconds=time.perf_counter() - start,
                               cpu_seconds=time.process_time() - cpu_start))
    return results


def warm_up(job: CorpusJob, slots_by_host: dict[str, int]) -> float:
    """Load the job's model here and code one tiny image with it (the runtime's graphs load on
    first use); the seconds it took. ``load_models`` runs it on every worker."""
    from sccodec.weights import DEFAULT_MODEL

    start = time.perf_counter()
    codec = shared_codec(job.model or DEFAULT_MODEL, job.device, job.max_pixels, worker_threads(job, slots_by_host))
    codec.decode(codec.encode(np.full((16, 16, 3), 128, np.uint8), job.quality))
    return time.perf_counter() - start


def load_models(job: CorpusJob, client: "Client") -> dict[str, float]:
    """Load the model on every worker now, before any file: a pre-flight check (a worker without
    sccodec or the model fails here, once, with the reason) and, for a benchmark, a job timed
    without the loading. Seconds per worker address."""
    return client.run(warm_up, job, slots_by_host(client))


def one_line_reason(err: BaseException) -> str:
    """A failure as one line: sccodec's own errors say what is wrong; others are named by type."""
    if isinstance(err, SCVError):
        message = str(err)
    elif isinstance(err, OSError) and err.strerror:
        message = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        message = f"unexpected {type(err).__name__}: {err}"
    return message.splitlines()[0] if message else type(err).__name__


def _read_input(tree: LocalTree, name: str) -> bytes:
    data = tree.read(name)
    if not data:
        raise ImageInputError("file is empty (0 bytes)")
    return data


def _encode_file(job: CorpusJob, source: LocalTree, destination: LocalTree, name: str, output: str,
                 threads: int) -> FileResult:
    from sccodec.bitstream import parse, parse_header
    from sccodec.weights import DEFAULT_MODEL

    if (existing := destination.read_if_present(output)) is not None:
        try:
            parse(existing, job.max_pixels)
            return FileResult(name, "skipped")
        except SCVError:
            pass  # not a whole .scv file: coded again, and replaced
    data = _read_input(source, name)
    if data.startswith(MAGIC):
        raise ImageInputError("already an .scv file")
    encoded = shared_codec(job.model or DEFAULT_MODEL, job.device, job.max_pixels, threads).encode(data, job.quality)
    destination.write(output, encoded)
    header, _ = parse_header(encoded, job.max_pixels)
    return FileResult(name, "done", in_bytes=len(data), out_bytes=len(encoded), pixels=header.width * header.height)


def _decode_file(job: CorpusJob, source: LocalTree, destination: LocalTree, name: str, output: str,
                 threads: int) -> FileResult:
    from PIL import Image

    from sccodec.bitstream import parse
    from sccodec.image_io import image_file_bytes

    if destination.exists(output):  # written atomically: present means whole
        return FileResult(name, "skipped")
    data = _read_input(source, name)
    container = parse(data, job.max_pixels)
    header = container.header
    image = shared_codec(header.model, job.device, job.max_pixels, threads).decode(container)
    encoded = image_file_bytes(image, Image.registered_extensions()[job.output_suffix])
    destination.write(output, encoded)
    return FileResult(name, "done", in_bytes=len(data), out_bytes=len(encoded), pixels=header.width * header.height)


def _describe_file(job: CorpusJob, source: LocalTree, destination: LocalTree, name: str, output: str,
                   threads: int) -> FileResult:
    from sccodec.analysis.describe import describe
    from sccodec.analysis.index import model_key
    from sccodec.codes import read_codes

    data = _read_input(source, name)
    codes = read_codes(data, max_pixels=job.max_pixels)
    return FileResult(name, "done", in_bytes=len(data), descriptor=describe(codes), model=model_key(codes))


# ---------------------------------------------------------------- the driver


def image_suffixes() -> frozenset[str]:
    """Suffixes of the image formats Pillow can read, .scv excepted: encode's inputs."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {SCV_SUFFIX}


def check_job(job: CorpusJob) -> None:
    """Refuse a job that could only fail on every file (ParameterError), before any work."""
    from PIL import Image

    if job.kind not in KINDS:
        raise ParameterError(f"kind must be one of {', '.join(KINDS)}, got {job.kind!r}")
    if isinstance(job.batch_size, bool) or not isinstance(job.batch_size, int) or job.batch_size < 1:
        raise ParameterError(f"batch size must be a positive integer, got {job.batch_size!r}")
    if job.threads is not None and (isinstance(job.threads, bool) or not isinstance(job.threads, int)
                                    or job.threads < 1):
        raise ParameterError(f"threads must be a positive integer, got {job.threads!r}")
    if job.kind == "encode":
        from sccodec.errors import ModelMismatchError
        from sccodec.weights import DEFAULT_MODEL, available_models, shipped_config

        model = job.model or DEFAULT_MODEL
        if model not in available_models():
            raise ModelMismatchError(f"model '{model}' is not installed (installed: {', '.join(available_models())})")
        levels = range(1, shipped_config(model).qualities + 1)
        if job.quality is not None and (isinstance(job.quality, bool) or job.quality not in levels):
            raise ParameterError(f"quality must be one of {tuple(levels)}, got {job.quality!r}")
    if job.kind == "decode":
        Image.init()
        if Image.registered_extensions().get(job.output_suffix) not in Image.SAVE:
            raise ParameterError(f"cannot write {job.suffix!r} images; give an image suffix such as .png")
        if job.output_suffix == SCV_SUFFIX:
            raise ParameterError("decode writes images, not .scv; give an image suffix such as .png")


def plan(job: CorpusJob) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (input, output) pairs to run, and the inputs refused up front with their reason
    (two inputs that would write the same output: the second is refused)."""
    source = open_tree(job.source)
    if not source.is_folder():
        raise ImageInputError(f"{job.source}: no such folder")
    names = source.files(frozenset({SCV_SUFFIX}) if job.kind != "encode" else image_suffixes())
    if job.kind == "index":
        return [(name, "") for name in names], []
    pairs, refused, claimed = [], [], {}
    for name in names:
        output = Path(name).with_suffix(job.output_suffix).as_posix()
        first = claimed.setdefault(output, name)
        if first is name:
            pairs.append((name, output))
        else:
            refused.append((name, f"its output {output} is already {first}'s"))
    return pairs, refused


def _batches(pairs: list[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def slots_by_host(client: "Client") -> dict[str, int]:
    """Worker threads per host, from the scheduler: how each machine's cores are shared."""
    try:
        info = client.scheduler_info(n_workers=-1)  # every worker, not the first few
    except TypeError:  # distributed before 2025: always every worker
        info = client.scheduler_info()
    slots: dict[str, int] = {}
    for worker in info["workers"].values():
        slots[worker["host"]] = slots.get(worker["host"], 0) + worker["nthreads"]
    return slots


def local_cluster(workers: int) -> "LocalCluster":
    """A cluster of ``workers`` processes on this machine, one task at a time each, that keep
    glibc's own malloc thresholds.

    Why not Dask's defaults: its nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (to hand freed memory back to the OS early). The network's buffers for each image are then
    handed back when it ends and faulted in again, page by page, for the next: 8.5 times the page
    faults and a quarter more CPU per photo, measured (docs/corpus.md). On other machines, start
    ``dask worker`` with the configuration in docs/corpus.md for the same effect.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")


def run_corpus(job: CorpusJob, client: "Client",
               progress: Callable[[CorpusReport, int], None] | None = None) -> CorpusReport:
    """Run ``job`` on the cluster behind ``client``; the report lists every failed file.

    ``progress(report so far, number of inputs)`` is called after each finished batch.
    Raises (before any work) ParameterError for a job that could only fail, ImageInputError for
    a missing source folder, OSError if the output folder cannot be made.
    """
    from distributed import as_completed

    start = time.perf_counter()
    check_job(job)
    pairs, refused = plan(job)
    report = CorpusReport(job.kind)
    for name, reason in refused:
        report.add(FileResult(name, "failed", reason))
    if job.kind != "index":
        destination = open_tree(job.destination)
        destination.root.mkdir(parents=True, exist_ok=True)
        destination.remove_stale_temps([output for _, output in pairs])
    slots = slots_by_host(client)
    window = max(2, IN_FLIGHT_PER_SLOT * sum(slots.values()))
    batches = _batches(pairs, max(1, min(job.batch_size, len(pairs) // window)))
    described: dict[str, FileResult] = {}

    def submit(batch: list[tuple[str, str]]):
        report.tasks += 1
        future = client.submit(code_batch, job, batch, slots, pure=False)
        pending[future.key] = batch
        return future

    pending: dict[str, list[tuple[str, str]]] = {}  # by task key
    running = as_completed([submit(batch) for batch in itertools.islice(batches, window)])
    for future in running:
        batch = pending.pop(future.key)
        try:
            results = future.result()
        except Exception as e:  # noqa: BLE001 (a worker that died, a cancelled task: its files failed)
            results = [FileResult(name, "failed", f"task failed: {one_line_reason(e)}") for name, _ in batch]
        future.release()
        for result in results:
            report.add(result)
            if result.descriptor is not None:
                described[result.path] = result
        if (following := next(batches, None)) is not None:
            running.add(submit(following))
        if progress is not None:
            progress(report, len(pairs) + len(refused))
    if job.kind == "index":
        _save_index(job, described, report)
    report.failed.sort()
    report.seconds = time.perf_counter() - start
    return report


def _save_index(job: CorpusJob, described: dict[str, FileResult], report: CorpusReport) -> None:
    """One index of every file described (named SOURCE/relative path, as ``sccodec index``
    names them), at ``job.destination``. Its model is that of the first file by name; a file of
    another model is moved to the failures (its descriptor lives in another latent space, as
    ``Index.build`` decides too). Nothing is written when no file was described."""
    from sccodec.analysis.index import Index

    names = sorted(described)
    model = described[names[0]].model if names else ""
    for name in names:
        if described[name].model != model:
            report.done -= 1
            report.failed.append((name, f"coded with model {described[name].model}, the index holds {model}"))
    kept = [name for name in names if described[name].model == model]
    if not kept:
        return
    index = Index.from_descriptors([os.path.join(job.source, name) for name in kept],
                                   np.stack([described[name].descriptor for name in kept]), model=model)
    index.save(job.destination)
    report.index_path = job.destination
