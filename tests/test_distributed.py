"""A corpus on a Dask cluster (sccodec.distributed): mirrored output trees, a failure list that
never stops the job, resumable runs, atomic outputs, the ``sccodec cluster`` command and the
distributed index.

One local cluster of two worker processes serves the whole module; the corpus is seven tiny
images in nested folders, one of them a corrupt file.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

distributed = pytest.importorskip("distributed")

import sccodec  # noqa: E402
import sccodec.atomic  # noqa: E402
from helpers import astronaut_crop, encode_png, gradient_image, luma_correlation, textured_image  # noqa: E402
from sccodec import bitstream  # noqa: E402
from sccodec.cli import main  # noqa: E402
from sccodec.distributed import corpus  # noqa: E402
from sccodec.distributed.corpus import (CorpusJob, LocalTree, code_batch, open_tree, plan,  # noqa: E402
                                        run_corpus, worker_threads)
from sccodec.errors import ImageInputError, ParameterError  # noqa: E402

QUALITY = 3
BROKEN = "a/b/broken.png"


def _images() -> dict[str, tuple[bytes, np.ndarray, str]]:
    """name -> (file bytes, the pixels as coded, mode): PNG, JPEG and WebP, RGB and grey."""
    grey = gradient_image(64, 80, seed=4)[..., 1]
    images = {
        "top.png": (gradient_image(64, 64, seed=1), "RGB"),
        "a/one.png": (astronaut_crop(96, 128), "RGB"),
        "a/b/three.png": (grey, "L"),
        "c/five.png": (textured_image(80, 96, seed=5), "RGB"),
        "c/d/e/six.png": (gradient_image(128, 64, seed=6), "RGB"),
    }
    out = {name: (encode_png(pixels, mode), pixels, mode) for name, (pixels, mode) in images.items()}
    for name, kind in (("a/two.jpg", "JPEG"), ("c/d/seven.webp", "WEBP")):
        pixels = astronaut_crop(64, 96)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, kind, quality=95)
        with Image.open(buffer) as im:
            out[name] = (buffer.getvalue(), np.asarray(im.convert("RGB")), "RGB")
    return out


IMAGES = _images()


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with corpus.local_cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "photos"
    for name, (data, _, _) in IMAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n but then nothing of a PNG")
    (root / "a" / "notes.txt").write_text("not an image: never listed")
    (root / "a" / ".hidden.png").write_bytes(IMAGES["top.png"][0])  # hidden: never listed
    return root


@pytest.fixture(scope="module")
def encoded(client, source, tmp_path_factory):
    destination = tmp_path_factory.mktemp("scv")
    report = run_corpus(CorpusJob("encode", str(source), str(destination), quality=QUALITY), client)
    return destination, report


@pytest.fixture(scope="module")
def decoded(client, encoded, tmp_path_factory):
    destination = tmp_path_factory.mktemp("png")
    report = run_corpus(CorpusJob("decode", str(encoded[0]), str(destination)), client)
    return destination, report


def invoke(*args: object):
    """``sccodec ...`` in-process; an exception that escapes the command fails the test."""
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- encode and decode


def test_encode_mirrors_the_tree_and_lists_the_broken_file(source, encoded) -> None:
    destination, report = encoded
    expected = sorted(str(Path(name).with_suffix(".scv").as_posix()) for name in IMAGES)
    assert files_under(destination) == expected, "one .scv per image, at the mirrored path, and nothing else"
    assert (report.done, report.skipped) == (len(IMAGES), 0)
    assert [name for name, _ in report.failed] == [BROKEN]
    assert "image" in report.failed[0][1] and "\n" not in report.failed[0][1]
    for name in IMAGES:
        header = bitstream.parse((destination / name).with_suffix(".scv").read_bytes()).header
        pixels = IMAGES[name][1]
        assert (header.height, header.width, header.quality) == (*pixels.shape[:2], QUALITY)
    assert report.out_bytes == sum(p.stat().st_size for p in destination.rglob("*.scv"))


def test_decode_gives_back_each_image(codec, encoded, decoded) -> None:
    destination, report = decoded
    assert files_under(destination) == sorted(Path(name).with_suffix(".png").as_posix() for name in IMAGES)
    assert (report.done, report.skipped, report.failed) == (len(IMAGES), 0, [])
    for name, (_, pixels, mode) in IMAGES.items():
        with Image.open((destination / name).with_suffix(".png")) as im:
            assert im.mode == mode
            out = np.asarray(im.convert("RGB"))
        here = np.asarray(codec.decode((encoded[0] / name).with_suffix(".scv").read_bytes()).convert("RGB"))
        assert out.shape == here.shape == (*pixels.shape[:2], 3)
        assert np.abs(out.astype(int) - here).max() <= 2, f"{name}: not what decoding the file here gives"
        assert luma_correlation(out, np.asarray(Image.fromarray(pixels, mode).convert("RGB"))) > 0.5, name


def test_a_second_run_skips_every_finished_output(client, source, encoded) -> None:
    destination, _ = encoded
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in destination.rglob("*.scv")}
    again = run_corpus(CorpusJob("encode", str(source), str(destination), quality=QUALITY), client)
    assert (again.done, again.skipped) == (0, len(IMAGES))
    assert [name for name, _ in again.failed] == [BROKEN], "the broken file is tried, and listed, again"
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in destination.rglob("*.scv")} == before


def test_every_batch_runs_when_there_are_more_than_fit_in_flight(client, source, encoded, tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(corpus, "IN_FLIGHT_PER_SLOT", 1)  # 2 batches in flight, 7 to run
    report = run_corpus(CorpusJob("decode", str(encoded[0]), str(tmp_path), batch_size=1), client)
    assert (report.tasks, report.done, report.failed) == (len(IMAGES), len(IMAGES), [])
    assert len(files_under(tmp_path)) == len(IMAGES)


def test_resuming_codes_only_what_is_missing_or_unreadable(client, source, encoded, tmp_path) -> None:
    destination = tmp_path / "scv"
    shutil.copytree(encoded[0], destination)
    (destination / "top.scv").unlink()  # never written
    damaged = destination / "a" / "one.scv"
    damaged.write_bytes(damaged.read_bytes()[:-5])  # not an .scv file that parses: coded again
    kept = destination / "c" / "five.scv"
    kept_inode = kept.stat().st_ino
    report = run_corpus(CorpusJob("encode", str(source), str(destination), quality=QUALITY), client)
    assert (report.done, report.skipped) == (2, len(IMAGES) - 2)
    for name in ("top.scv", "a/one.scv"):
        assert bitstream.parse((destination / name).read_bytes()).header.quality == QUALITY
    assert kept.stat().st_ino == kept_inode


def test_a_killed_writers_temp_files_are_removed_and_the_output_written(client, source, encoded, tmp_path) -> None:
    destination = tmp_path / "scv"
    shutil.copytree(encoded[0], destination)
    (destination / "c" / "five.scv").unlink()
    stale = destination / "c" / ".five.scv.0badf00d.tmp"  # what sccodec.atomic leaves under SIGKILL
    stale.write_bytes(b"half a file")
    report = run_corpus(CorpusJob("encode", str(source), str(destination), quality=QUALITY), client)
    assert report.done == 1 and not stale.exists()
    bitstream.parse((destination / "c" / "five.scv").read_bytes())


# ---------------------------------------------------------------- atomic outputs (in this process)


def test_outputs_appear_only_by_renaming_a_complete_temp_file(source, tmp_path, monkeypatch) -> None:
    renames = []
    real_replace = sccodec.atomic.os.replace

    def replace(src, dst):
        renames.append((Path(src), Path(dst), Path(src).read_bytes()))
        return real_replace(src, dst)

    monkeypatch.setattr(sccodec.atomic.os, "replace", replace)
    job = CorpusJob("encode", str(source), str(tmp_path), quality=QUALITY, threads=1)
    results = code_batch(job, [("a/one.png", "a/one.scv"), ("top.png", "top.scv")], {})
    assert [r.status for r in results] == ["done", "done"]
    assert [dst for _, dst, _ in renames] == [tmp_path / "a" / "one.scv", tmp_path / "top.scv"]
    for src, dst, data in renames:
        assert src.parent == dst.parent and src.name.startswith(".") and src.suffix == ".tmp"
        assert dst.read_bytes() == data, "the file renamed into place is the whole output"


def test_an_interrupted_write_leaves_neither_output_nor_temp_file(source, tmp_path, monkeypatch) -> None:
    def interrupted(src, dst):
        raise KeyboardInterrupt  # Ctrl-C, or a worker stopped, after the data and before the rename

    monkeypatch.setattr(sccodec.atomic.os, "replace", interrupted)
    job = CorpusJob("encode", str(source), str(tmp_path), quality=QUALITY, threads=1)
    with pytest.raises(KeyboardInterrupt):
        code_batch(job, [("top.png", "top.scv")], {})
    assert files_under(tmp_path) == [] and not list(tmp_path.rglob(".*"))


def test_a_failing_file_does_not_stop_its_batch(source, tmp_path) -> None:
    job = CorpusJob("encode", str(source), str(tmp_path), quality=QUALITY, threads=1)
    results = code_batch(job, [(BROKEN, "a/b/broken.scv"), ("missing.png", "missing.scv"), ("top.png", "top.scv")], {})
    assert [r.status for r in results] == ["failed", "failed", "done"]
    assert "No such file" in results[1].reason
    assert files_under(tmp_path) == ["top.scv"]


# ---------------------------------------------------------------- planning (no cluster)


def test_inputs_that_would_share_an_output_are_refused_one_by_one(tmp_path) -> None:
    for name in ("x/photo.png", "x/photo.jpg", "x/other.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(IMAGES["top.png"][0])
    pairs, refused = plan(CorpusJob("encode", str(tmp_path), str(tmp_path / "out")))
    assert pairs == [("x/other.png", "x/other.scv"), ("x/photo.jpg", "x/photo.scv")]
    assert refused == [("x/photo.png", "its output x/photo.scv is already x/photo.jpg's")]


def test_only_local_trees_for_now(tmp_path) -> None:
    assert open_tree(f"file://{tmp_path}") == LocalTree(tmp_path)
    with pytest.raises(ParameterError, match="s3://"):
        open_tree("s3://bucket/photos")
    with pytest.raises(ImageInputError, match="no such folder"):
        plan(CorpusJob("encode", str(tmp_path / "absent"), str(tmp_path / "out")))


def test_local_workers_keep_glibcs_malloc_thresholds(client) -> None:
    """Dask's default MALLOC_TRIM_THRESHOLD_ for workers makes the network's allocations slow."""
    seen = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert len(seen) == 2 and set(seen.values()) == {os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def test_tasks_get_a_share_of_the_cores(client) -> None:
    shares = client.gather(client.map(worker_threads, [CorpusJob("encode", ".", ".")] * 4,
                                      [corpus.slots_by_host(client)] * 4, pure=False))
    assert shares == [max(1, len(os.sched_getaffinity(0)) // 2)] * 4  # two workers on this machine


def test_importing_the_package_imports_no_dask() -> None:
    code = ("import sys, sccodec.distributed, sccodec.distributed.corpus; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_workers_share_the_cores_unless_told() -> None:
    assert worker_threads(CorpusJob("encode", ".", ".", threads=3), {}) == 3
    assert worker_threads(CorpusJob("encode", ".", "."), {}) == len(os.sched_getaffinity(0))  # outside a worker


# ---------------------------------------------------------------- the command


def test_cluster_command_lists_failures_and_exits_1(client, source, tmp_path) -> None:
    result = invoke("cluster", "encode", source, tmp_path / "scv", "-q", QUALITY, "--cluster", client.scheduler.address)
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"sccodec: error: {source / BROKEN}: ")
    assert lines[-1].startswith(f"encode: {len(IMAGES)} done, 0 skipped, 1 failed of {len(IMAGES) + 1} files in ")
    assert "images/s" in lines[-1]
    assert len(files_under(tmp_path / "scv")) == len(IMAGES)


def test_cluster_command_on_a_local_cluster_exits_0(encoded, tmp_path) -> None:
    result = invoke("cluster", "decode", encoded[0], tmp_path / "jpg", "--suffix", ".jpg", "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "jpg") == sorted(Path(n).with_suffix(".jpg").as_posix() for n in IMAGES)
    assert result.stderr.strip().splitlines()[-1].startswith(f"decode: {len(IMAGES)} done, 0 skipped, 0 failed")


@pytest.mark.parametrize("args, code, message", [
    (["encode", "{src}", "{out}", "-q", "99"], 2, "quality must be one of"),
    (["encode", "{src}", "{out}", "--cluster", "tcp://127.0.0.1:1", "--workers", "2"], 2, "not both"),
    (["encode", "{src}/absent", "{out}"], 1, "absent: no such folder"),
    (["decode", "{src}", "{out}", "--suffix", ".scv"], 2, "decode writes images"),
    (["index", "{src}", "-o", "{out}/missing/index.npz"], 3, "output folder does not exist"),
    (["encode", "{src}", "{out}", "--cluster", "nonsense"], 2, "--cluster nonsense"),
])
def test_cluster_command_errors_are_one_line_before_any_work(source, tmp_path, args, code, message) -> None:
    result = invoke("cluster", *[a.format(src=source, out=tmp_path) for a in args])
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------- index


@pytest.fixture
def mixed_tree(encoded, tmp_path) -> Path:
    """The encoded tree, plus a corrupt .scv and a file of the other shipped model."""
    root = tmp_path / "scv"
    shutil.copytree(encoded[0], root)
    (root / "c" / "corrupt.scv").write_bytes((root / "top.scv").read_bytes()[:40])
    other = sccodec.Codec("scvae-base", device="cpu").encode(IMAGES["top.png"][1], QUALITY)
    (root / "zz_other_model.scv").write_bytes(other)
    return root


def test_index_job_gathers_every_descriptor_into_one_index(client, mixed_tree, tmp_path) -> None:
    from sccodec.analysis import Index, describe, read_codes

    output = tmp_path / "corpus.npz"
    report = run_corpus(CorpusJob("index", str(mixed_tree), str(output)), client)
    assert report.done == len(IMAGES) and report.index_path == str(output)
    assert [name for name, _ in report.failed] == ["c/corrupt.scv", "zz_other_model.scv"]
    assert "coded with model scvae-base@" in report.failed[1][1]
    index = Index.load(output)
    expected = sorted(Path(n).with_suffix(".scv").as_posix() for n in IMAGES)
    assert list(index.names) == [os.path.join(str(mixed_tree), n) for n in expected]
    for name, descriptor in zip(index.names, index.descriptors):
        assert np.allclose(descriptor, describe(read_codes(name)), atol=1e-6), name
    assert index.model.startswith(f"{bitstream.parse((mixed_tree / 'top.scv').read_bytes()).header.model}@")
    nearest = index.query(read_codes(mixed_tree / "a" / "one.scv"), k=1)[0]
    assert nearest.name.endswith("a/one.scv") and nearest.distance < 1e-5


def test_cluster_index_command(client, mixed_tree, tmp_path) -> None:
    output = tmp_path / "corpus.npz"
    result = invoke("cluster", "index", mixed_tree, "-o", output, "--cluster", client.scheduler.address)
    assert result.exit_code == 1, result.stderr  # two files could not be indexed
    assert f"sccodec: error: {mixed_tree / 'c' / 'corrupt.scv'}: " in result.stderr
    assert f"index of {len(IMAGES)} files written to {output}" in result.stderr.splitlines()[-1]
    again = invoke("cluster", "index", mixed_tree, "-o", output, "--cluster", client.scheduler.address)
    assert again.exit_code == 3 and "exists; use --force" in again.stderr
