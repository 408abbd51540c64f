"""The ``sccodec`` command line: argument handling only; the work happens in ``sccodec.api``.

Exit codes (0 ok, 1 bad input, 2 usage, 3 output, 130 interrupted): ``sccodec.cli_errors``.

Outputs never replace an original by default: without ``-o``/``--out-dir``, ``decode`` writes
INPUT with .png, or, if that name is taken, INPUT.decoded.png, INPUT.decoded-2.png, ... and
never replaces a file, ``--force`` or not; ``--force`` replaces only an output named with
``-o``/``--out-dir`` (and ``encode``'s default INPUT.scv, if that is an .scv file).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import click

from sccodec import atomic
from sccodec.bitstream import DEFAULT_MAX_PIXELS, FORMAT_VERSIONS, MAGIC
from sccodec.cli_errors import (EXIT_INTERRUPTED, InputError, OutputError, UsageProblem, about, fail, interrupted,
                                one_line)
from sccodec.errors import SCVError
from sccodec.levels import DEFAULT_EFFORT, DEFAULT_QUALITY, EFFORTS, QUALITIES
from sccodec.tile_workers import available_cores

DEFAULT_SAMPLE = Path(__file__).resolve().parent / "data" / "samples" / "astronaut.jpg"


def read_input(path: str) -> bytes:
    """All of an input file (``-``: stdin); an InputError naming the file if it cannot be read
    or is empty."""
    if path == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError("stdin: no input (0 bytes)")
        return data
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(about(path, e.strerror or str(e))) from None
    if not data:
        raise InputError(about(path, "file is empty (0 bytes)"))
    return data


def write_output(path: str, data: bytes, *, overwrite: bool, source: str | None = None,
                 exists_hint: str = "use --force to overwrite it") -> None:
    """Write all of ``data`` or nothing: temp file in the target folder, then rename.

    ``overwrite=False``: an existing ``path`` is never replaced, also one that appears while
    the data is written (``sccodec.atomic``); ``exists_hint`` follows "PATH exists; "."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if source not in (None, "-") and target.exists() and target.resolve() == Path(source).resolve():
        raise OutputError(f"output {path} is the input file; refusing to overwrite it")
    if not overwrite and os.path.lexists(target):
        raise OutputError(f"{path} exists; {exists_hint}" if exists_hint else f"{path} exists")
    if target.is_dir():
        raise OutputError(f"{path} is a directory")
    try:
        atomic.write_bytes(target, data, overwrite=overwrite)
    except FileExistsError:
        raise OutputError(f"{path} appeared while the output was written; it was left as it is") from None
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def _stdout_is_a_terminal() -> bool:
    return sys.stdout.isatty()


def _version_message() -> str:
    """From the sidecars: no weights file is read or hashed, no network loaded."""
    from sccodec import __version__
    from sccodec.weights import DEFAULT_MODEL, available_models, shipped_dir

    def weights_hash(model: str) -> str:
        try:
            return json.loads((shipped_dir() / f"{model}.json").read_text())["weights_hash"]
        except (OSError, ValueError, KeyError):
            return "unknown"

    models = ", ".join(f"{m} (weights {weights_hash(m)})" for m in available_models())
    return (f"sccodec {__version__} (.scv formats {', '.join(map(str, FORMAT_VERSIONS))}; default model {DEFAULT_MODEL}; "
            f"installed models: {models or 'none'})")


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit()


#: Commands whose modules import heavy or optional libraries (torch, matplotlib, scikit-learn,
#: dask): imported only when run. name -> (module, function, the short help ``sccodec --help``
#: lists, the extra that installs what it needs).
_LAZY_COMMANDS = {
    "bench": ("sccodec.bench.cli", "bench", "Rate-distortion and speed against the peer codecs.", "bench"),
    "train": ("sccodec.train.cli", "train", "Train a model (the train extra: torch).", "train"),
    "export": ("sccodec.train.cli", "export", "Export a training checkpoint to a model file and runtime graphs.",
               "train"),
    "export-graphs": ("sccodec.train.cli", "export_graphs", "Write the runtime graphs of existing weights files.",
                      "train"),
    "fit-classes": ("sccodec.train.block_classes", "fit_classes",
                    "Fit a model's block classes (format 6) on training photos.", "train"),
    "fit-pairs": ("sccodec.train.atom_pairs", "fit_pairs",
                  "Fit a model's pair weights (format 7) on training photos.", "train"),
    "tune-decoder": ("sccodec.train.decoder", "tune_decoder",
                     "Fine-tune a model's synthesis on its encoder's symbols.", "train"),
    "codes": ("sccodec.analysis.cli", "codes", "Print a file's sparse codes (parsing only, no pixels).", "analysis"),
    "segment": ("sccodec.analysis.cli", "segment", "Segment an image from its sparse codes (K-means).", "analysis"),
    "index": ("sccodec.analysis.cli", "index", "Index .scv files by descriptors pooled from their codes.", "analysis"),
    "similar": ("sccodec.analysis.cli", "similar", "Find indexed files similar to a .scv file.", "analysis"),
    "cluster": ("sccodec.distributed.cli", "cluster", "Encode, decode or index a corpus on a Dask cluster.",
                "cluster"),
}


class _Commands(click.Group):
    """The command group: Ctrl-C in any command is one line and exit 130, not click's
    "Aborted!" and exit 1 (which is a bad input here); the heavy commands load on use."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _LAZY_COMMANDS:
            return super().get_command(ctx, name)
        module, attribute, _, extra = _LAZY_COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError as e:  # e.g. `sccodec train` without the train extra
            raise UsageProblem(f"'sccodec {name}' needs {e.name or 'a package'}, which is not installed "
                               f"(pip install 'sccodec[{extra}]')") from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing, without importing the lazy commands' modules."""
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY_COMMANDS:
                rows.append((name, _LAZY_COMMANDS[name][2]))
            elif not (cmd := super().get_command(ctx, name)).hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the package, .scv format and model versions and exit.")
def main() -> None:
    """sccodec: a learned image codec (.scv files).

    \b
    Examples:
      sccodec encode photo.png -o photo.scv --quality 8
      sccodec decode photo.scv -o photo.png
      sccodec info photo.scv
      sccodec bench --images kodak/
    """


_device = click.option("--device", default="auto", show_default=True,
                       help="auto or cpu (ONNX Runtime), cuda or cuda:N (torch). Files decode on any device.")
_force = click.option("--force", "-f", is_flag=True,
                      help="Overwrite an existing output file (at the default name INPUT.scv: an .scv file only).")
_decode_force = click.option("--force", "-f", is_flag=True,
                             help="Overwrite an existing output named with -o or --out-dir (without "
                                  "them, decode never replaces a file).")
_max_pixels = click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                           show_default=True, help="Refuse images larger than this (decompression-bomb guard).")


@dataclass(frozen=True)
class Job:
    """One file to convert; ``options`` are the command's coding options."""

    source: str
    output: str
    overwrite: bool  # may replace an existing ``output``
    options: tuple
    note: str = ""  # said with the result, e.g. why the output has another name than usual
    exists_hint: str = "use --force to overwrite it"  # after "OUTPUT exists; "
    replaces_only_scv: bool = False  # encode's default name: --force replaces an .scv file only
    progress: bool = False  # show the network's progress on stderr (one large file on a terminal)
    threads: int | None = None  # the network's threads (a share of the cores, with --workers)


@dataclass(frozen=True)
class Outcome:
    source: str
    output: str
    message: str  # a one-line result, or the error
    exit_code: int  # 0 = done
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    warnings: tuple[str, ...] = ()  # one line each, e.g. a dropped ICC profile


def _job_with_warnings(fn, job: Job) -> Outcome:
    """Run a job with its warnings (a dropped ICC profile, ...) recorded into its Outcome: one
    line each, printed by the main process naming the file (also from worker processes)."""
    global _in_job
    _in_job = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome = fn(job)
    finally:
        _in_job = False
    lines = tuple(dict.fromkeys(str(w.message).splitlines()[0] for w in caught if str(w.message)))
    return dataclasses.replace(outcome, warnings=outcome.warnings + lines)


def _encode_job(job: Job) -> Outcome:
    quality, target_bpp, target_psnr, effort, device, max_pixels, model = job.options
    from sccodec.bitstream import parse_header

    try:
        data_in = read_input(job.source)
        if data_in.startswith(MAGIC):
            raise InputError("already an .scv file (decode it with 'sccodec decode')")
        result = _codec_for(job, model, device, max_pixels).encode_with_info(data_in, quality, target_bpp=target_bpp,
                                                                             target_psnr=target_psnr, effort=effort)
        if job.replaces_only_scv and job.overwrite and not _is_scv_or_absent(job.output):
            raise OutputError(f"{job.output} exists and is not an .scv file; give -o to choose the output name")
        write_output(job.output, result.data, overwrite=job.overwrite, source=job.source,
                     exists_hint=job.exists_hint)
        h, _ = parse_header(result.data, max_pixels)
    except Exception as e:  # noqa: BLE001 (a batch reports every file's failure and goes on)
        return _failed(job, e)
    note = "" if result.psnr is None else f", {result.psnr:.2f} dB"
    if target_bpp is not None and result.bpp > target_bpp:
        note += f" (above the {target_bpp:g} bpp target: quality {result.quality} is the lowest level)"
    if target_psnr is not None and result.psnr < target_psnr:
        note += f" (below the {target_psnr:g} dB target: quality {result.quality} is the highest level)"
    return Outcome(job.source, job.output, f"quality {result.quality}, {result.bpp:.3f} bpp{note}{job.note}", 0,
                   len(data_in), len(result.data), h.width * h.height)


def _is_scv_or_absent(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _decode_job(job: Job) -> Outcome:
    (device, max_pixels) = job.options
    from sccodec.bitstream import parse
    from sccodec.image_io import image_file_bytes

    try:
        data = read_input(job.source)
        container = parse(data, max_pixels)  # once: the codec decodes the parsed file
        header = container.header
        image = _codec_for(job, header.model, device, max_pixels).decode(container)
        suffix = Path(job.output).suffix.lower() if job.output != "-" else ""
        try:
            encoded = image_file_bytes(image, _pil_format(suffix) if suffix else "PNG")
        except (KeyError, ValueError, OSError) as e:
            raise OutputError(f"cannot write {job.output}: {e}") from None
        write_output(job.output, encoded, overwrite=job.overwrite, source=job.source,
                     exists_hint=job.exists_hint)
    except Exception as e:  # noqa: BLE001 (a batch reports every file's failure and goes on)
        return _failed(job, e)
    return Outcome(job.source, job.output, f"{header.width}x{header.height} {header.mode}{job.note}", 0,
                   len(data), len(encoded), header.width * header.height)


def _cached_codec(model: str | None, device: str, max_pixels: int, threads: int | None = None):
    """One loaded model per process (and per worker process) for a whole batch."""
    from sccodec.api import shared_codec
    from sccodec.weights import DEFAULT_MODEL

    return shared_codec(model or DEFAULT_MODEL, device, max_pixels, threads)


def _codec_for(job: Job, model: str | None, device: str, max_pixels: int):
    codec = _cached_codec(model, device, max_pixels, job.threads)
    codec.progress = _show_progress if job.progress else None
    return codec


#: Below this many tiles (1024-px windows) an image codes in a few seconds: no progress shown.
PROGRESS_FROM_TILES = 4


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _show_progress(stage: str, done: int, total: int) -> None:
    """``encoding: 3/12 tiles`` on one line of the terminal, rewritten in place."""
    if total >= PROGRESS_FROM_TILES:
        unit = "window passes" if stage == "refining" else "tiles"
        click.echo(f"\r{stage}: {done}/{total} {unit}", err=True, nl=done == total)


def _failed(job: Job, e: Exception) -> Outcome:
    return Outcome(job.source, job.output, *one_line(e))


def _output_for(source: str, output: str | None, out_dir: str | None, suffix: str, many: bool) -> str:
    if output is not None:
        if many:
            raise click.UsageError("-o/--output names one file; use --out-dir with several inputs")
        if out_dir is not None:
            raise click.UsageError("give -o/--output or --out-dir, not both")
        if output == "-" and _stdout_is_a_terminal():
            raise UsageProblem("not writing binary data to a terminal: redirect stdout (> FILE or | PROGRAM) "
                               "or give -o FILE")
        if output != "-" and (output.endswith(("/", os.sep)) or Path(output).is_dir()):
            raise OutputError(f"{output} is a folder; -o/--output names a file (use --out-dir for a folder)")
        _check_output_kind(output, suffix)
        return output
    if source == "-":
        raise click.UsageError("give -o/--output when reading from stdin")
    name = Path(source).with_suffix(suffix).name
    return str(Path(out_dir) / name) if out_dir else str(Path(source).with_suffix(suffix))


DECODED_NAMES = 1000  # INPUT.decoded.png, INPUT.decoded-2.png ... INPUT.decoded-999.png


def _free_decode_name(source: str) -> tuple[str, str]:
    """decode's default output without -o/--out-dir, and a note if it is not INPUT with .png:
    the first name that does not exist (nor is a dangling link) of INPUT.png, INPUT.decoded.png,
    INPUT.decoded-2.png, ... so that a default decode never replaces a file (the original of an
    ``encode photo.png`` is ``photo.png``)."""
    usual = Path(source).with_suffix(".png")
    if not os.path.lexists(usual):
        return str(usual), ""
    for i in range(1, DECODED_NAMES):
        name = usual.with_name(f"{usual.stem}.decoded{'' if i == 1 else f'-{i}'}.png")
        if not os.path.lexists(name):
            return str(name), f" ({usual} exists and is kept)"
    raise OutputError(f"{usual}, {usual.stem}.decoded.png and {usual.stem}.decoded-2 ... -{DECODED_NAMES - 1}.png "
                      "all exist; give -o to name the output")


def _check_output_kind(output: str, suffix: str) -> None:
    """An .scv file named like an image (or an image named .scv) is a mix-up of encode and decode."""
    from PIL import Image

    Image.init()
    named = Path(output).suffix.lower()
    if suffix == ".scv" and named != ".scv" and named in Image.EXTENSION:
        raise click.UsageError(f"encode writes .scv files, not {named} ({output}); to write an image, decode")
    if suffix != ".scv" and named == ".scv":
        raise click.UsageError(f"decode writes images, not .scv ({output}); give an image extension such as .png")


def _run(fn, jobs: list[Job], workers: int, verb: str, out_dir: str | None) -> None:
    """Run every job (a failure does not stop the others), report, exit non-zero on failure.
    ``out_dir`` is created once the command line has passed every check."""
    claimed: dict[Path, Job] = {}
    for j in jobs:
        if j.output != "-" and (first := claimed.setdefault(Path(j.output).resolve(), j)) is not j:
            if first.source == j.source:
                raise click.UsageError(f"{j.source} is given twice")
            raise click.UsageError(f"{first.source} and {j.source} would both be written to {j.output}")
    _make_dir(out_dir)
    if out_dir_missing := {str(Path(j.output).parent) for j in jobs if j.output != "-"
                           and not Path(j.output).parent.is_dir()}:
        raise OutputError(f"output folder does not exist: {sorted(out_dir_missing)[0]}")
    run_job = functools.partial(_job_with_warnings, fn)
    if len(jobs) == 1:
        outcome = run_job(dataclasses.replace(jobs[0], progress=_stderr_is_terminal()))
        _say_warnings(outcome)
        if outcome.exit_code:
            click.echo(f"sccodec: error: {about(outcome.source, outcome.message)}", err=True)
            sys.exit(outcome.exit_code)
        if jobs[0].output != "-":
            click.echo(f"{outcome.source} -> {outcome.output}: {outcome.message}", err=True)
        return
    if workers > 1:  # the workers share the cores, unless --threads says otherwise
        jobs = [dataclasses.replace(j, threads=j.threads or max(1, available_cores() // workers)) for j in jobs]
    outcomes = []
    show_bar = sys.stderr.isatty()
    try:
        with _pool(workers) as pool, click.progressbar(length=len(jobs), label=verb, file=sys.stderr,
                                                       show_eta=True, hidden=not show_bar) as bar:
            for outcome in pool(run_job, jobs):
                outcomes.append(outcome)
                bar.update(1)
                _say_warnings(outcome)
                if outcome.exit_code:
                    click.echo(f"sccodec: error: {about(outcome.source, outcome.message)}", err=True)
    except KeyboardInterrupt:
        for j in jobs:  # a worker stopped by force (see _pool) may have left its temp file
            if j.output != "-":
                atomic.remove_stale_temps(j.output)
        raise
    done = [o for o in outcomes if not o.exit_code]
    failed = [o for o in outcomes if o.exit_code]
    total_out = sum(o.out_bytes for o in done)
    pixels = sum(o.pixels for o in done)
    bpp = f", mean {8 * total_out / pixels:.3f} bpp" if pixels and verb == "encoding" else ""
    click.echo(f"{len(done)} of {len(outcomes)} files done, {len(failed)} failed; "
               f"{total_out} bytes written{bpp}", err=True)
    if failed:
        sys.exit(min(o.exit_code for o in failed))


def _say_warnings(outcome: Outcome) -> None:
    for line in outcome.warnings:
        click.echo(f"sccodec: warning: {about(outcome.source, line)}", err=True)


class _pool:
    """``with _pool(n) as run: run(fn, jobs)`` -> outcomes in order; n > 1 uses processes.

    Ctrl-C with worker processes: the workers ignore SIGINT (it reaches the whole process
    group); the main process stops them with SIGTERM, which interrupts a file in progress like
    Ctrl-C would (its temp file removed) and ends an idle worker at once, quietly; a worker
    still busy after a grace period (inside one long torch call) is killed, and ``_run``
    removes the temp file it left."""

    GRACE_S = 2.0

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor = None

    def __enter__(self):
        if self.workers <= 1:
            return lambda fn, jobs: map(fn, jobs)
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp

        self.executor = ProcessPoolExecutor(self.workers, mp.get_context("spawn"), initializer=_worker_init)
        return lambda fn, jobs: self.executor.map(fn, jobs)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.executor is None:
            return
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            processes = [p for p in list((getattr(self.executor, "_processes", None) or {}).values()) if p.is_alive()]
            for process in processes:
                process.terminate()
            deadline = time.monotonic() + self.GRACE_S
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
            self.executor.shutdown(wait=False, cancel_futures=True)
            return
        self.executor.shutdown(cancel_futures=True)


_in_job = False  # a worker process is converting a file (see _worker_stop)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)


def _worker_stop(signum: int, frame: object) -> None:
    if _in_job:
        raise KeyboardInterrupt  # unwinds the job: its atomic write removes its temp file
    os._exit(EXIT_INTERRUPTED)


_inputs = click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


_out_dir = click.option("--out-dir", type=click.Path(file_okay=False),
                        help="Folder for the outputs, created if missing [default: next to each input].")
_workers = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Files coded in parallel (each worker loads the model once).")
_threads = click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="Threads for each file's networks [default: the cores, shared among --workers]. "
                             "An image of several tiles codes up to four of them side by side, a few "
                             "hundred MB each; --threads 1 codes one at a time, in the least memory.")


@main.command()
@_inputs
@click.option("-o", "--output", help="Output .scv file ('-' for stdout) [default: INPUT with .scv].")
@_out_dir
@click.option("-q", "--quality", type=int, default=None,
              help=f"Quality level {QUALITIES[0]} (smallest) ... {QUALITIES[-1]} (best) in the default model "
                   f"[default: {DEFAULT_QUALITY}, or the best level of a model with fewer].")
@click.option("--target-bpp", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite,
              help="Instead of --quality: the best level whose file is at most this many bits per pixel "
                   "(the lowest level, with a note, if none is that small).")
@click.option("--target-psnr", type=click.FloatRange(min=0, min_open=True), default=None, metavar="DB",
              callback=_finite,
              help="Instead of --quality: the smallest file whose decoded image reaches this PSNR "
                   "(RGB, dB) against the input (the highest level, with a note, if none does). "
                   "Decodes each level it tries: slower.")
@click.option("--effort", type=click.IntRange(EFFORTS[0], EFFORTS[-1]), default=DEFAULT_EFFORT, show_default=True,
              help="Encoder effort: higher is slower and gives fewer bits at the same quality "
                   "(the file decodes the same way). 1: fixed rounding; 2: rate-aware rounding; 3 and 4 "
                   "also refine the code against the decoder, about 3x and 7x the encode time; at a "
                   "given --quality they spend a few more bits for a higher PSNR.")
@click.option("--model", default=None, metavar="NAME",
              help="Installed model to code with (see sccodec --version) [default: the shipped default]. "
                   "Decoding finds the model from the file.")
@_workers
@_threads
@_device
@_force
@_max_pixels
def encode(inputs: tuple[str, ...], output: str | None, out_dir: str | None, quality: int | None,
           target_bpp: float | None, target_psnr: float | None, effort: int, model: str | None, workers: int,
           threads: int | None, device: str, force: bool, max_pixels: int) -> None:
    """Encode images (PNG, JPEG, ...) to .scv.

    \b
    Examples:
      sccodec encode photo.png -o photo.scv --quality 6
      sccodec encode photo.png --target-bpp 0.5
      sccodec encode photo.png --target-psnr 32
      sccodec encode *.png --out-dir scv/ --workers 2
      sccodec encode photo.png --effort 4
    """
    if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
        raise click.UsageError("give one of --quality, --target-bpp and --target-psnr")
    many = len(inputs) > 1
    default_name = output is None and out_dir is None
    jobs = [Job(src, _output_for(src, output, out_dir, ".scv", many), force,
                (quality, target_bpp, target_psnr, effort, device, max_pixels, model), replaces_only_scv=default_name,
                threads=threads)
            for src in inputs]
    _run(_encode_job, jobs, workers, "encoding", out_dir)


@main.command()
@_inputs
@click.option("-o", "--output", help="Output image; format from its extension ('-' for PNG on stdout, "
                                     "not a terminal) [default: INPUT with .png, or if that exists "
                                     "INPUT.decoded.png, INPUT.decoded-2.png, ...].")
@_out_dir
@_workers
@_threads
@_device
@_decode_force
@_max_pixels
def decode(inputs: tuple[str, ...], output: str | None, out_dir: str | None, workers: int, threads: int | None,
           device: str, force: bool, max_pixels: int) -> None:
    """Decode .scv files to images.

    Without -o or --out-dir, decode never replaces a file: it writes INPUT with .png, or if
    that exists INPUT.decoded.png (then INPUT.decoded-2.png, ...). --force replaces only an
    output named with -o or --out-dir.

    \b
    Examples:
      sccodec decode photo.scv -o photo.png
      sccodec decode scv/*.scv --out-dir png/
    """
    many = len(inputs) > 1
    if output is None and out_dir is None:  # a default name: a free one, never replacing a file
        jobs = []
        for src in inputs:
            if src == "-":
                raise click.UsageError("give -o/--output when reading from stdin")
            name, note = _free_decode_name(src)
            if force:
                note = note[:-1] + "; --force applies to -o/--out-dir only)" if note else note
            jobs.append(Job(src, name, False, (device, max_pixels), note=note,
                            exists_hint="give -o to choose the output name", threads=threads))
    else:
        jobs = [Job(src, _output_for(src, output, out_dir, ".png", many), force, (device, max_pixels),
                    threads=threads)
                for src in inputs]
    _run(_decode_job, jobs, workers, "decoding", out_dir)


def _make_dir(folder: str | None) -> None:
    if folder is not None:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output folder {folder}: {e.strerror or e}") from None


def _pil_format(suffix: str) -> str:
    from PIL import Image

    Image.init()
    if suffix not in Image.EXTENSION:
        raise OutputError(f"unknown image extension {suffix!r}")
    return Image.EXTENSION[suffix]


@main.command()
@click.argument("input_path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_max_pixels
def info(input_path: str, as_json: bool, max_pixels: int) -> None:
    """Show the header and chunk layout of an .scv file (nothing is decoded).

    \b
    Example:
      sccodec info photo.scv --json
    """
    from sccodec import bitstream

    data = read_input(input_path)
    try:
        c = bitstream.parse(data, max_pixels)
    except SCVError as e:
        fail(e, input_path)
    h = c.header
    rows, cols = h.tile_grid
    record = {"format_version": h.version, "model": h.model, "weights_hash": h.weights_hash.hex(),
              **({"classes_hash": h.classes_hash.hex()} if h.classes_hash else {}),
              **({"pairs_hash": h.pairs_hash.hex()} if h.pairs_hash else {}),
              "quality": h.quality, "width": h.width, "height": h.height, "mode": h.mode,
              "bit_depth": h.bit_depth, "tile": h.tile, "tile_grid": [rows, cols],
              "coder": f"constriction {h.coder_version[0]}.{h.coder_version[1]}",
              "bytes": len(data), "bpp": round(len(data) * 8 / (h.width * h.height), 5),
              "tile_bytes": [len(t) for t in c.tiles],
              "ancillary_chunks": {bitstream.chunk_name(k): len(v) for k, v in c.ancillary.items()}}
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        for k, v in record.items():
            click.echo(f"{k:>16}: {v}")


@main.command()
@click.option("-q", "--quality", type=int, default=None, help=f"Quality level [default: {DEFAULT_QUALITY}].")
@click.option("--image", default=str(DEFAULT_SAMPLE), show_default=False, metavar="FILE",
              help="Image to use [default: the bundled astronaut photo].")
@_device
def demo(quality: int | None, image: str, device: str) -> None:
    """Encode and decode a photo in memory and print size, bpp, PSNR and timings.

    \b
    Example:
      sccodec demo --quality 3
    """
    from sccodec.api import Codec
    from sccodec.metrics import psnr_rgb
    from sccodec.image_io import read_image

    try:
        codec = Codec(device=device)
        quality = codec.default_quality if quality is None else quality
    except Exception as e:  # noqa: BLE001 (one line, never a traceback)
        fail(e)
    try:  # a missing or unreadable image is a bad input (exit 1), as in encode
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            src = read_image(read_input(image), codec.max_pixels)
    except Exception as e:  # noqa: BLE001
        fail(e, image)
    for w in caught:
        click.echo(f"sccodec: warning: {about(image, str(w.message))}", err=True)
    try:
        codec.network  # load outside the timed region
        t0 = time.perf_counter()
        data = codec.encode(src.pixels, quality)
        t1 = time.perf_counter()
        out, _ = codec.decode_array(data)
        t2 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 (one line, never a traceback)
        fail(e)
    psnr = psnr_rgb(src.pixels, out)
    click.echo(f"{Path(image).name}: {src.width}x{src.height}, quality {quality}: {len(data)} bytes, "
               f"{len(data) * 8 / (src.width * src.height):.3f} bpp, PSNR {psnr:.2f} dB, "
               f"encode {1000 * (t1 - t0):.0f} ms, decode {1000 * (t2 - t1):.0f} ms ({codec.device})")


if __name__ == "__main__":
    main()
