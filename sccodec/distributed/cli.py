"""``sccodec cluster encode|decode|index``: a corpus on a Dask cluster; the work is in ``corpus``.

Without ``--cluster`` the command starts a cluster of worker processes on this machine and
stops it at the end; with ``--cluster tcp://host:8786`` it sends the work to a running
scheduler (``dask scheduler``, and ``dask worker tcp://host:8786`` on each machine).
Exit codes as for every sccodec command (``sccodec.cli_errors``): 1 if any file failed.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from sccodec.bitstream import DEFAULT_MAX_PIXELS
from sccodec.cli_errors import EXIT_INPUT, InputError, OutputError, UsageProblem, fail, one_line
from sccodec.distributed.corpus import (DEFAULT_BATCH_SIZE, CorpusJob, CorpusReport, check_job, load_models,
                                        local_cluster, open_tree, run_corpus)
from sccodec.errors import SCVError

#: Seconds to wait for a scheduler named with --cluster before giving up.
CONNECT_TIMEOUT_S = 20


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cluster() -> None:
    """Encode, decode or index a whole folder tree on a Dask cluster.

    The output tree mirrors the input tree (SRC/a/b/c.png -> DST/a/b/c.scv). Outputs that
    already exist are skipped, so an interrupted job is resumed by running it again; outputs
    are written whole or not at all. A file that fails is listed at the end and the others
    go on (exit code 1 if any failed).

    \b
    One machine (a local cluster of --workers processes):
      sccodec cluster encode photos/ scv/ --quality 6
    A cluster (a scheduler, and workers that see the same paths):
      dask scheduler                      # on one machine: prints tcp://HOST:8786
      dask worker tcp://HOST:8786 --nthreads 1   # on each machine (docs/corpus.md)
      sccodec cluster encode photos/ scv/ --cluster tcp://HOST:8786
    """


def _cluster_options(fn):
    options = [
        click.option("--cluster", "address", metavar="ADDRESS", default=None,
                     help="A running Dask scheduler (tcp://host:8786) [default: start workers on this machine]."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes of the local cluster [default: this machine's cores]."),
        click.option("--threads-per-worker", "threads", type=click.IntRange(min=1), default=None,
                     help="The network's threads in each worker [default: each machine's cores / its workers]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
                     help="Files per task (larger for many small images)."),
        click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
                     help="Refuse images larger than this (decompression-bomb guard)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cluster.command()
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("-q", "--quality", type=int, default=None, help="Quality level [default: the model's default].")
@click.option("--model", default=None, metavar="NAME",
              help="Installed model to code with [default: the shipped default].")
@_cluster_options
def encode(source: str, destination: str, quality: int | None, model: str | None, address: str | None,
           workers: int | None, threads: int | None, batch_size: int, max_pixels: int) -> None:
    """Encode every image under SRC to DST/same/path.scv.

    \b
    Example:
      sccodec cluster encode photos/ scv/ --quality 6 --workers 2
    """
    job = CorpusJob("encode", source, destination, quality=quality, model=model, threads=threads,
                    batch_size=batch_size, max_pixels=max_pixels)
    _run(job, address, workers)


@cluster.command()
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("--suffix", default=".png", show_default=True,
              help="Output image format by its suffix (.png, .jpg, .webp, ...).")
@_cluster_options
def decode(source: str, destination: str, suffix: str, address: str | None, workers: int | None,
           threads: int | None, batch_size: int, max_pixels: int) -> None:
    """Decode every .scv file under SRC to DST/same/path.png.

    \b
    Example:
      sccodec cluster decode scv/ png/ --cluster tcp://scheduler:8786
    """
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    job = CorpusJob("decode", source, destination, suffix=suffix, threads=threads, batch_size=batch_size,
                    max_pixels=max_pixels)
    _run(job, address, workers)


@cluster.command()
@click.argument("source", metavar="SRC")
@click.option("-o", "--output", required=True, metavar="INDEX.npz", help="The index file to write.")
@click.option("--force", "-f", is_flag=True, help="Replace an existing index file.")
@_cluster_options
def index(source: str, output: str, force: bool, address: str | None, workers: int | None, threads: int | None,
          batch_size: int, max_pixels: int) -> None:
    """Describe every .scv file under SRC from its sparse codes and save one search index.

    \b
    Example:
      sccodec cluster index scv/ -o scv.npz
      sccodec similar query.scv --index scv.npz
    """
    if os.path.lexists(output) and not force:
        raise OutputError(f"{output} exists; use --force to replace it")
    job = CorpusJob("index", source, output, threads=threads, batch_size=batch_size, max_pixels=max_pixels)
    _run(job, address, workers)


def _run(job: CorpusJob, address: str | None, workers: int | None) -> None:
    if address is not None and workers is not None:
        raise click.UsageError("give --cluster or --workers, not both (a running cluster has its own workers)")
    try:
        check_job(job)  # before any cluster starts: a job that could only fail
        if not open_tree(job.source).is_folder():
            raise InputError(f"{job.source}: no such folder")
    except SCVError as e:
        fail(e)
    _prepare_output(job)
    with _client(address, workers) as client:
        if job.kind != "index":  # the index job parses only: no network to load
            _load_models(job, client)
        show = _progress_line() if sys.stderr.isatty() else None
        try:
            report = run_corpus(job, client, show)
        except SCVError as e:
            fail(e)
        except OSError as e:
            raise OutputError(f"cannot write to {job.destination}: {e.strerror or e}") from None
    _summarise(job, report)
    if report.failed or (job.kind == "index" and report.index_path is None):
        sys.exit(EXIT_INPUT)


def _prepare_output(job: CorpusJob) -> None:
    """The output folder (made now), or the index file's folder (which must exist)."""
    target = Path(job.destination)
    if job.kind == "index":
        if target.is_dir():
            raise OutputError(f"{target} is a folder; -o names the index file")
        if not target.parent.is_dir():
            raise OutputError(f"output folder does not exist: {target.parent}")
        return
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {target}: {e.strerror or e}") from None


def _load_models(job: CorpusJob, client: object) -> None:
    """Every worker loads the model before the first file: a worker that cannot (no sccodec, no
    model, another version) stops the job here with one line, not every file with the same error."""
    try:
        load_models(job, client)
    except Exception as e:  # noqa: BLE001 (raised on a worker: any type)
        raise InputError(f"a worker cannot load the model: {one_line(e)[0]}") from None


@contextmanager
def _client(address: str | None, workers: int | None) -> Iterator[object]:
    """A client of the scheduler at ``address``, or of a cluster of processes started here."""
    from distributed import Client

    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except ValueError as e:
            raise UsageProblem(f"--cluster {address}: {e}") from None
        except OSError as e:
            raise InputError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        with client:
            yield client
        return
    with local_cluster(workers or os.cpu_count() or 1) as local, Client(local) as client:
        yield client


def _progress_line() -> Callable[[CorpusReport, int], None]:
    """``encode: 120/1000 files, 3 failed, 4.2 images/s`` on one terminal line, rewritten in place."""
    start = time.perf_counter()

    def show(report: CorpusReport, total: int) -> None:
        finished, elapsed = report.total, time.perf_counter() - start
        rate = report.done / elapsed if elapsed > 0 else 0.0
        click.echo(f"\r{report.kind}: {finished}/{total} files, {len(report.failed)} failed, {rate:.1f} images/s",
                   err=True, nl=finished == total)

    return show


def _summarise(job: CorpusJob, report: CorpusReport) -> None:
    """The warnings and failures (one line each, naming the file), then one summary line."""
    root = Path(job.source)
    for name, line in report.warnings:
        click.echo(f"sccodec: warning: {root / name}: {line}", err=True)
    for name, reason in report.failed:
        click.echo(f"sccodec: error: {root / name}: {reason}", err=True)
    rate = f"{report.images_per_second:.2f} images/s"
    if job.kind == "encode" and report.pixels:
        written = f"; {report.out_bytes} bytes written, mean {8 * report.out_bytes / report.pixels:.3f} bpp"
    elif job.kind == "index":
        written = (f"; index of {report.done} files written to {report.index_path}" if report.index_path
                   else f"; nothing to index, {job.destination} not written")
    else:
        written = f"; {report.out_bytes} bytes written" if report.done else ""
    click.echo(f"{job.kind}: {report.done} done, {report.skipped} skipped, {len(report.failed)} failed "
               f"of {report.total} files in {report.seconds:.1f} s ({rate}{written})", err=True)
