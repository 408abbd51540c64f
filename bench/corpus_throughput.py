"""Corpus throughput on Dask (``sccodec.distributed``) beside the single-process CLI, and a
scaling model built from what it measures.

    python bench/corpus_throughput.py [--images ../shared/data/train] [--pattern 'bsd100_*'] [--count 32]

In one run, on the same photos (the first ``--count`` files matching ``--pattern``, sorted,
used as they are, spread over nested folders):

- the baseline: whole ``sccodec encode FILES --out-dir D --workers W`` and ``sccodec decode``
  processes, W = 1 and 2 (start-up and model loading included, as a user sees them);
- ``run_corpus`` on a ``LocalCluster`` of 1 worker process with 2 runtime threads and of 2 worker
  processes with 1 thread each (total threads = 2 both times), encode then decode; the time is the
  job's, with the model already loaded in every worker (``load_models``); starting the cluster and
  loading the model are reported apart; then the 2-worker encode once more with Dask's default
  worker environment (``MALLOC_TRIM_THRESHOLD_=65536``), which ``local_cluster`` leaves out;
- what the scaling model needs: the workers' time per image (wall and CPU), the scheduler's
  time per task (1,000 empty tasks; 256 small crops encoded, then resumed with every file
  skipped, at 1 and 8 files per task), the
  bytes each image moves, and the driver's time per file to list a tree.

Writes bench/results/corpus_throughput.json (the machine, its load before and after, every
number, and the model's predictions for N machines of C cores). Runs in about four minutes on
two cores shared with other work.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling bench scripts, also when loaded by file path

from speed import cpu_model  # noqa: E402

from sccodec import atomic  # noqa: E402
from sccodec.distributed.corpus import (DEFAULT_BATCH_SIZE, CorpusJob, FileResult, load_models,  # noqa: E402
                                        local_cluster, open_tree, run_corpus)

FOLDERS = 4  # the photos are spread over a/0 ... a/3 so that the mirrored tree is exercised
#: Assumed bandwidth of the shared file system all machines read and write (10 GbE NFS, say).
SHARED_FS_BYTES_PER_S = 1.0e9
MACHINES = (1, 2, 4, 8, 16, 64, 256)
CORES = (2, 16, 64)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def corpus(images: Path, pattern: str, count: int, root: Path) -> list[Path]:
    """Copies of the photos in a nested tree under ``root``; their paths, sorted."""
    chosen = sorted(images.glob(pattern))[:count]
    if len(chosen) < count:
        sys.exit(f"only {len(chosen)} files match {pattern} in {images}")
    copies = []
    for i, path in enumerate(chosen):
        target = root / "a" / str(i % FOLDERS) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def cli_run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sccodec.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def baseline(files: list[Path], work: Path, quality: int) -> list[dict]:
    rows = []
    for workers in (1, 2):
        scv, png = work / f"cli-scv-{workers}", work / f"cli-png-{workers}"
        encode_s = cli_run(["encode", *map(str, files), "--out-dir", str(scv), "-q", str(quality),
                            "--workers", str(workers)])
        decode_s = cli_run(["decode", *map(str, sorted(scv.glob("*.scv"))), "--out-dir", str(png),
                            "--workers", str(workers)])
        rows.append({"how": f"sccodec encode/decode --workers {workers}", "processes": workers,
                     "encode_s": round(encode_s, 3), "decode_s": round(decode_s, 3),
                     "encode_images_per_s": round(len(files) / encode_s, 3),
                     "decode_images_per_s": round(len(files) / decode_s, 3)})
        print(rows[-1], flush=True)
    return rows


def task_overhead(client) -> dict:
    """Seconds per empty task through the scheduler (submit, run, gather), 1,000 of them."""
    n = 1000
    client.gather(client.map(abs, range(-10, 0), pure=False))  # connections warm
    start = time.perf_counter()
    client.gather(client.map(abs, range(-n, 0), pure=False))
    return {"empty_tasks": n, "seconds_per_task": round((time.perf_counter() - start) / n, 6)}


def small_files(source: Path, work: Path, client, quality: int) -> dict:
    """Where batching matters: 256 crops of 64x64 (8 from each of the first 32 photos), encoded
    with 1 and with 8 files per task, then each job resumed (every file skipped)."""
    from PIL import Image

    tiny = work / "tiny"
    for i, photo in enumerate(sorted(source.rglob("*.*"))[:32]):
        with Image.open(photo) as im:
            rgb = im.convert("RGB")
        for k in range(8):
            target = tiny / str(i % FOLDERS) / f"{photo.stem}-{k}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            rgb.crop((64 * k, 0, 64 * k + 64, 64)).save(target)
    count = len(list(tiny.rglob("*.png")))
    out = {"small_files": count, "small_file_pixels": 64 * 64}
    for batch in (1, 8):
        job = CorpusJob("encode", str(tiny), str(work / f"tiny-scv-{batch}"), quality=quality, batch_size=batch)
        first = run_corpus(job, client)
        again = run_corpus(job, client)
        if first.done != count or again.skipped != count:
            sys.exit(f"the small files must code whole: {first.failed}")
        out[f"batch_{batch}"] = {"tasks": first.tasks, "encode_images_per_s": round(first.images_per_second, 2),
                                 "encode_worker_cpu_s_per_image": round(first.worker_cpu_seconds / count, 4),
                                 "resumed_s_per_file": round(again.seconds / count, 5),
                                 "resumed_s_per_task": round(again.seconds / again.tasks, 5)}
    return out


def dask_runs(source: Path, work: Path, quality: int, count: int) -> tuple[list[dict], dict]:
    from distributed import Client

    rows, overhead = [], {}
    for workers, threads in ((1, 2), (2, 1)):
        start = time.perf_counter()
        with local_cluster(workers) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - start
            loading = load_models(CorpusJob("encode", str(source), "", quality=quality, threads=threads), client)
            scv, png = work / f"dask-scv-{workers}", work / f"dask-png-{workers}"
            encoded = run_corpus(CorpusJob("encode", str(source), str(scv), quality=quality, threads=threads), client)
            decoded = run_corpus(CorpusJob("decode", str(scv), str(png), threads=threads), client)
            if encoded.failed or decoded.failed or encoded.done != count:
                sys.exit(f"the bench corpus must code whole: {encoded.failed + decoded.failed}")
            row = {"how": f"LocalCluster {workers} worker(s) x {threads} runtime thread(s)", "workers": workers,
                   "threads_per_worker": threads, "cluster_start_s": round(startup, 3),
                   "model_load_s_per_worker": round(max(loading.values()), 3),
                   "encode_s": round(encoded.seconds, 3), "decode_s": round(decoded.seconds, 3),
                   "encode_images_per_s": round(encoded.images_per_second, 3),
                   "decode_images_per_s": round(decoded.images_per_second, 3),
                   "encode_end_to_end_images_per_s": round(count / (startup + max(loading.values())
                                                                    + encoded.seconds), 3),
                   "encode_worker_s_per_image": round(encoded.worker_seconds / count, 4),
                   "decode_worker_s_per_image": round(decoded.worker_seconds / count, 4),
                   "encode_worker_cpu_s_per_image": round(encoded.worker_cpu_seconds / count, 4),
                   "decode_worker_cpu_s_per_image": round(decoded.worker_cpu_seconds / count, 4),
                   "encode_tasks": encoded.tasks, "decode_tasks": decoded.tasks,
                   "source_bytes_per_image": round(encoded.in_bytes / count),
                   "scv_bytes_per_image": round(encoded.out_bytes / count),
                   "png_bytes_per_image": round(decoded.out_bytes / count),
                   "pixels_per_image": round(encoded.pixels / count)}
            if workers == 2:
                overhead = task_overhead(client)
                overhead.update(small_files(source, work, client, quality))
            rows.append(row)
            print(row, flush=True)
    return rows, overhead


def dask_default_malloc(source: Path, work: Path, quality: int, count: int) -> dict:
    """The same 2-worker encode on a LocalCluster with Dask's default worker environment
    (``MALLOC_TRIM_THRESHOLD_=65536``), against which ``local_cluster`` is chosen. Run last: the
    nanny leaves the variable in this process's environment, for every process started after."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        trim = set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values())
        load_models(CorpusJob("encode", str(source), "", quality=quality, threads=1), client)
        encoded = run_corpus(CorpusJob("encode", str(source), str(work / "dask-default-scv"), quality=quality,
                                       threads=1), client)
    return {"how": "LocalCluster(n_workers=2, threads_per_worker=1), Dask's worker environment",
            "worker_MALLOC_TRIM_THRESHOLD_": sorted(map(str, trim)),
            "encode_images_per_s": round(encoded.images_per_second, 3),
            "encode_worker_cpu_s_per_image": round(encoded.worker_cpu_seconds / count, 4)}


def message_bytes(source: Path, work: Path, first: Path) -> dict:
    """Pickled sizes of one task's arguments and of one file's result: what the scheduler and
    the driver move per task besides the image data (which the workers read and write themselves)."""
    job = CorpusJob("encode", str(source), str(work / "dask-scv-2"))
    name = first.relative_to(source).as_posix()
    pair = (name, str(Path(name).with_suffix(".scv").as_posix()))
    result = FileResult(name, "done", in_bytes=first.stat().st_size, out_bytes=10_000, pixels=153_600, seconds=0.1)
    return {"task_arguments_bytes_batch_of_1": len(pickle.dumps((job, [pair], {"127.0.0.1": 2}))),
            "result_bytes_per_file": len(pickle.dumps(result))}


def listing_seconds_per_file(images: Path) -> dict:
    tree = open_tree(str(images))
    start = time.perf_counter()
    names = tree.files(frozenset({".jpg", ".jpeg", ".png"}))
    return {"files": len(names), "seconds_per_file": round((time.perf_counter() - start) / max(1, len(names)), 7)}


def scaling_model(rows: list[dict], overhead: dict, listing: dict) -> dict:
    """Images/s for N machines of C cores: the least of what the cores, the scheduler and the
    shared file system allow (each assumption is stated in the record)."""
    two = next(r for r in rows if r["workers"] == 2)  # one runtime thread per worker: CPU s = core s
    core_seconds = {kind: two[f"{kind}_worker_cpu_s_per_image"] for kind in ("encode", "decode")}
    per_task = overhead["seconds_per_task"]
    batch = DEFAULT_BATCH_SIZE
    moved = {"encode": two["source_bytes_per_image"] + two["scv_bytes_per_image"],
             "decode": two["scv_bytes_per_image"] + two["png_bytes_per_image"]}
    limits = {kind: {"scheduler_images_per_s": round(batch / per_task),
                     "shared_fs_images_per_s": round(SHARED_FS_BYTES_PER_S / moved[kind])} for kind in moved}
    predictions = []
    for kind in ("encode", "decode"):
        for cores in CORES:
            for machines in MACHINES:
                compute = machines * cores / core_seconds[kind]
                rate = min(compute, limits[kind]["scheduler_images_per_s"], limits[kind]["shared_fs_images_per_s"])
                bound = ("cores" if rate == compute else "scheduler"
                         if rate == limits[kind]["scheduler_images_per_s"] else "shared file system")
                predictions.append({"kind": kind, "machines": machines, "cores_per_machine": cores,
                                    "images_per_s": round(rate, 1), "bound_by": bound,
                                    "hours_per_million_images": round(1e6 / rate / 3600, 2)})
    return {
        "formula": "images/s = min(N*C / t_core, b / o_task, B_fs / bytes_moved_per_image)",
        "t_core_s_per_image": core_seconds,
        "o_task_s": per_task, "batch_size_b": batch,
        "bytes_moved_per_image": moved, "B_fs_bytes_per_s_assumed": SHARED_FS_BYTES_PER_S,
        "driver_listing_s_per_file": listing["seconds_per_file"],
        "driver_listing_s_per_million_files": round(listing["seconds_per_file"] * 1e6, 1),
        "assumptions": [
            "t_core: the CPU seconds per image of the 2-worker x 1-thread run (one core per image, "
            "this corpus's image size; CPU time, so the other work on this shared machine stretches "
            "it less than wall time); work grows with the pixels",
            "one dask worker process per core, one runtime thread each, on dedicated cores; cores "
            "add up linearly across machines, as 1 -> 2 processes do here",
            "o_task: the measured cost of an empty task (scheduler, network and worker bookkeeping "
            "together); one scheduler handles every task, so b / o_task bounds images/s",
            "B_fs: an assumed shared file system bandwidth that all machines' reads and writes share",
            "the driver lists the source tree once, before the job, in one thread (driver_listing)",
            "cluster start and model loading (model_load_s_per_worker) are paid once per worker, not per image",
        ],
        "limits": limits,
        "predictions": predictions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=HERE.parents[1] / "shared" / "data" / "train")
    parser.add_argument("--pattern", default="bsd100_*")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--quality", type=int, default=6)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "corpus_throughput.json")
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no photos at {args.images} (give --images)")
    load_before = loadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        files = corpus(args.images, args.pattern, args.count, work / "photos")
        cli = baseline(files, work, args.quality)
        rows, overhead = dask_runs(work / "photos", work, args.quality, args.count)
        messages = message_bytes(work / "photos", work, files[0])
        default_malloc = dask_default_malloc(work / "photos", work, args.quality, args.count)
    listing = listing_seconds_per_file(args.images)
    record = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": loadavg(), "python": sys.version.split()[0]},
        "corpus": {"images": str(args.images), "pattern": args.pattern, "count": args.count,
                   "as_is": "the files as they are (not resized)", "quality": args.quality,
                   "pixels_per_image": rows[0]["pixels_per_image"]},
        "baseline_cli": cli,
        "dask": rows,
        "dask_default_malloc": default_malloc,
        "task_overhead": overhead,
        "messages": messages,
        "listing": listing,
        "scaling_model": scaling_model(rows, overhead, listing),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    atomic.write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("machine", "baseline_cli", "dask", "task_overhead")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
