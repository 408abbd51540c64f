"""The `sccodec` command line: outputs, --force, exit codes (0 ok, 1 bad input, 2 usage,
3 output problem, 130 interrupted), one-line errors naming the file, and no temp files left
behind; a default output name never replaces a file (issue #34)."""
from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import sccodec
import sccodec.atomic
import sccodec.cli
from helpers import DEFAULT_MODEL, encode_png, gradient_image, psnr, rebuild, weights_hash
from sccodec import bitstream
from sccodec.cli_errors import EXIT_INTERRUPTED
from sccodec.cli import main


@pytest.fixture
def run():
    """Invoke the CLI in-process. Exceptions that escape the command are re-raised (a test
    failure), never silently turned into exit code 1 as CliRunner does by default."""
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart by default

    def invoke(*args: str, input: bytes | None = None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(autouse=True)
def no_temp_files_left(tmp_path):
    yield
    leftovers = [p.name for p in tmp_path.rglob(".*.tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode_png(gradient_image(20, 28)))
    return path


@pytest.fixture
def scv(tmp_path, small_scv):
    path = tmp_path / "small.scv"
    path.write_bytes(small_scv)
    return path


def assert_clean_exit(result) -> None:
    """The command ended through sys.exit (click's own exits included), not by an exception
    escaping it. (A check for "Traceback" in the output could never fail: CliRunner catches
    the exception, so no traceback is ever printed.)"""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"an exception escaped the command: {result.exception!r}"


def assert_one_line_error(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert_clean_exit(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(("sccodec: error:", "Error:")), lines[0]


# ---------------------------------------------------------------- encode / decode


def test_encode_default_output_name(run, png) -> None:
    result = run("encode", png)
    assert result.exit_code == 0, result.output
    header = bitstream.parse_header((png.with_suffix(".scv")).read_bytes())[0]
    assert (header.width, header.height, header.quality) == (28, 20, sccodec.DEFAULT_QUALITY)


def test_encode_quality_and_output(run, png, tmp_path) -> None:
    out = tmp_path / "custom.scv"
    assert run("encode", png, "-o", out, "-q", "2").exit_code == 0
    assert bitstream.parse_header(out.read_bytes())[0].quality == 2
    assert not png.with_suffix(".scv").exists()


@pytest.mark.parametrize("effort", sccodec.EFFORTS)
def test_encode_at_an_effort_writes_what_the_api_writes(run, png, tmp_path, effort) -> None:
    out = tmp_path / "e.scv"
    assert run("encode", png, "-o", out, "-q", "2", "--effort", str(effort)).exit_code == 0
    assert out.read_bytes() == sccodec.encode(str(png), 2, effort=effort)


@pytest.mark.parametrize("effort", ["0", str(max(sccodec.EFFORTS) + 1), "high"])
def test_bad_effort_is_a_usage_error(run, png, effort) -> None:
    result = run("encode", png, "--effort", effort)
    assert result.exit_code == 2, result.output
    assert "effort" in result.stderr.lower()
    assert not png.with_suffix(".scv").exists()


def test_decode_default_output_name(run, tmp_path, grey_scv) -> None:
    path = tmp_path / "grey.scv"
    path.write_bytes(grey_scv)
    assert run("decode", path).exit_code == 0
    with Image.open(tmp_path / "grey.png") as img:
        assert (img.format, img.size, img.mode) == ("PNG", (24, 20), "L")


@pytest.mark.parametrize(("name", "fmt"), [("out.jpg", "JPEG"), ("out.JPEG", "JPEG"), ("out.bmp", "BMP"),
                                           ("out.tif", "TIFF"), ("out.png", "PNG")])
def test_decode_format_follows_the_extension(run, scv, tmp_path, name, fmt) -> None:
    assert run("decode", scv, "-o", tmp_path / name).exit_code == 0
    with Image.open(tmp_path / name) as img:
        assert (img.format, img.size) == (fmt, (16, 16))


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.webp", "out.tif"])
def test_decode_keeps_the_icc_profile_in_every_output_format(run, tmp_path, name) -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.fromarray(gradient_image(20, 28)).save(src, icc_profile=profile)
    assert run("encode", src, "-o", tmp_path / "icc.scv", "-q", "1").exit_code == 0
    assert run("decode", tmp_path / "icc.scv", "-o", tmp_path / name).exit_code == 0
    with Image.open(tmp_path / name) as img:
        assert img.info.get("icc_profile") == profile


def test_decode_from_stdin(run, scv, tmp_path) -> None:
    out = tmp_path / "from_stdin.png"
    assert run("decode", "-", "-o", out, input=scv.read_bytes()).exit_code == 0
    with Image.open(out) as img:
        assert img.size == (16, 16)


def test_output_that_is_a_directory_is_an_output_error(run, scv, tmp_path) -> None:
    (tmp_path / "taken.png").mkdir()
    assert_one_line_error(run("decode", scv, "-o", tmp_path / "taken.png", "--force"), 3)


def test_decode_unknown_extension(run, scv, tmp_path) -> None:
    result = run("decode", scv, "-o", tmp_path / "out.nosuchformat")
    assert_one_line_error(result, 3)
    assert not (tmp_path / "out.nosuchformat").exists()


def test_stdin_and_stdout(run, png, tmp_path) -> None:
    out = tmp_path / "piped.scv"
    assert run("encode", "-", "-o", out, input=png.read_bytes()).exit_code == 0
    result = run("decode", out, "-o", "-")
    assert result.exit_code == 0
    with Image.open(io.BytesIO(result.stdout_bytes)) as img:
        assert (img.format, img.size) == ("PNG", (28, 20))


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_stdin_needs_an_output_name(run, command) -> None:
    assert run(command, "-", input=b"").exit_code == 2


# ---------------------------------------------------------------- overwriting


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_existing_output_needs_force(run, png, scv, tmp_path, command) -> None:
    source = png if command == "encode" else scv
    target = tmp_path / ("existing.scv" if command == "encode" else "existing.png")
    target.write_bytes(b"precious")
    result = run(command, source, "-o", target)
    assert_one_line_error(result, 3)
    assert "--force" in result.stderr
    assert target.read_bytes() == b"precious"
    assert run(command, source, "-o", target, "--force").exit_code == 0
    assert target.read_bytes() != b"precious"


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
def test_output_that_is_the_input_is_refused(run, png, tmp_path, spelling, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "photo"  # no extension, so only the same-file check can refuse it
    png.rename(source)
    output = {"same": str(source), "relative": "./photo", "symlink": "link"}[spelling]
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(source)
    before = source.read_bytes()
    result = run("encode", source, "-o", output, "--force", "-q", "1")
    assert_one_line_error(result, 3)
    assert "input" in result.stderr
    assert source.read_bytes() == before


@pytest.mark.parametrize(("command", "output"), [("encode", "out.jpg"), ("encode", "out.PNG"), ("decode", "out.scv")])
def test_encode_and_decode_mix_ups_are_usage_errors(run, png, scv, tmp_path, command, output) -> None:
    result = run(command, png if command == "encode" else scv, "-o", tmp_path / output)
    assert result.exit_code == 2 and ("writes .scv" in result.stderr or "writes images" in result.stderr)
    assert not (tmp_path / output).exists()


def test_encoding_an_scv_file_is_refused(run, scv, tmp_path) -> None:
    result = run("encode", scv, "-o", tmp_path / "again.scv")
    assert_one_line_error(result, 1)
    assert "already an .scv file" in result.stderr and not (tmp_path / "again.scv").exists()


def test_output_ending_in_a_slash_is_a_folder(run, png, tmp_path) -> None:
    result = run("encode", png, "-o", f"{tmp_path / 'newdir'}/")
    assert_one_line_error(result, 3)
    assert not (tmp_path / "newdir").exists()


def test_output_in_a_missing_folder(run, scv, tmp_path) -> None:
    result = run("decode", scv, "-o", tmp_path / "no" / "such" / "dir" / "out.png")
    assert_one_line_error(result, 3)


def test_failed_write_is_exit_3_and_leaves_nothing(run, scv, tmp_path, monkeypatch) -> None:
    """A write that fails half way (disk full, permission denied) is an output problem: exit 3,
    one line, the old file untouched, no temp file left."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def replace_fails(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sccodec.atomic.os, "replace", replace_fails)
    result = run("decode", scv, "-o", target, "--force")
    assert_one_line_error(result, 3)
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob("*.tmp"))


def test_output_permissions_follow_the_umask(run, png, tmp_path) -> None:
    """Like any file a user creates: 0666 minus the umask (mkstemp alone would give 0600)."""
    umask = os.umask(0o022)
    try:
        assert run("encode", png, "-o", tmp_path / "out.scv").exit_code == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.scv").stat().st_mode) == 0o644


# ---------------------------------------------------------------- bad input


def corrupt(small_scv: bytes, kind: str) -> bytes:
    flipped = bytearray(small_scv)
    flipped[-6] ^= 0x01
    return {"truncated": small_scv[:30], "bad magic": b"PK\x03\x04" + small_scv[4:],
            "flipped bit": bytes(flipped), "wrong weights": rebuild(small_scv, weights_hash=bytes(8)),
            "empty": b""}[kind]


@pytest.mark.parametrize(("command", "kind"), [
    (command, kind) for command in ("decode", "info")
    for kind in ("truncated", "bad magic", "flipped bit", "wrong weights", "empty")
    if (command, kind) != ("info", "wrong weights")  # info reads the container only: no model
])
def test_corrupt_input_is_exit_1_with_one_line(run, tmp_path, small_scv, command, kind) -> None:
    path = tmp_path / "bad.scv"
    path.write_bytes(corrupt(small_scv, kind))
    result = run(command, path)
    assert_one_line_error(result, 1)
    if kind == "wrong weights":
        assert DEFAULT_MODEL in result.stderr
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("content", [
    pytest.param(b"not an image", id="text"),
    pytest.param(b"", id="empty"),
    pytest.param(encode_png(gradient_image(32, 32))[:200], id="truncated PNG"),
    pytest.param(encode_png(np.zeros((8, 8, 4), np.uint8)), id="transparent"),
    pytest.param(encode_png(np.zeros((8, 8), np.uint16)), id="16-bit"),
])
def test_bad_image_is_exit_1_with_one_line(run, tmp_path, content) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    assert_one_line_error(run("encode", path), 1)
    assert not (tmp_path / "bad.scv").exists()


@pytest.mark.parametrize("command", ["decode", "info", "encode", "demo"])
def test_missing_input_is_exit_1(run, tmp_path, command) -> None:
    """One table for every command: a missing input is a bad input (exit 1), demo's --image too."""
    missing = tmp_path / "missing.scv"
    result = run(*(["demo", "--device", "cpu", "--image"] if command == "demo" else [command]), missing)
    assert_one_line_error(result, 1)
    assert result.stderr.startswith(f"sccodec: error: {missing}: ") and "No such file" in result.stderr
    assert result.stderr.count(str(missing)) == 1, "the file is named once"


def test_pixel_limit_is_exit_1(run, png, scv) -> None:
    assert_one_line_error(run("encode", png, "--max-pixels", "100"), 1)
    assert_one_line_error(run("decode", scv, "--max-pixels", "100"), 1)


@pytest.mark.parametrize("quality", ["0", str(max(sccodec.QUALITIES) + 1), "abc"])
def test_bad_quality_is_a_usage_error(run, png, quality) -> None:
    result = run("encode", png, "-q", quality)
    assert result.exit_code == 2, result.output
    assert_clean_exit(result)
    assert "quality" in result.stderr.lower()
    assert not png.with_suffix(".scv").exists()


@pytest.mark.parametrize(("command", "args"), [
    ("encode", ["--device", "tpu"]),
    ("encode", ["-q", "0"]),
    ("encode", ["-q", str(max(sccodec.QUALITIES) + 1)]),
    ("decode", ["--device", "tpu"]),
])
def test_parameter_errors_are_exit_2_with_one_line(run, png, scv, tmp_path, command, args) -> None:
    """A ParameterError raised inside the codec (device, quality level) is a usage error."""
    source, out = (png, tmp_path / "out.scv") if command == "encode" else (scv, tmp_path / "out.png")
    result = run(command, source, "-o", out, *args)
    assert_one_line_error(result, 2)
    assert result.stderr.startswith("sccodec: error: ")
    assert ("tpu" if "tpu" in args else "quality") in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_parameter_error_in_a_batch_is_exit_2(run, pngs, tmp_path, small_scv, grey_scv, command) -> None:
    if command == "encode":
        sources = pngs
    else:
        sources = [tmp_path / "a.scv", tmp_path / "b.scv"]
        for path, data in zip(sources, (small_scv, grey_scv)):
            path.write_bytes(data)
    result = run(command, *sources, "--out-dir", tmp_path / "out", "--device", "tpu")
    assert result.exit_code == 2, result.stderr
    assert_clean_exit(result)
    *errors, summary = result.stderr.strip().splitlines()
    assert len(errors) == len(sources), errors
    for line, source in zip(errors, sources):
        assert line.startswith(f"sccodec: error: {source}: ") and "tpu" in line, line
    assert summary.startswith("0 of 2 files done, 2 failed"), summary
    assert not list((tmp_path / "out").iterdir())


def test_unknown_command_is_a_usage_error(run) -> None:
    assert run("transmogrify").exit_code == 2


# ---------------------------------------------------------------- batches


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(16, 16), (20, 12)]):
        path = tmp_path / f"in{i}.png"
        path.write_bytes(encode_png(gradient_image(h, w, seed=i)))
        paths.append(path)
    return paths


def test_batch_encode_and_decode_into_folders(run, pngs, tmp_path) -> None:
    (tmp_path / "scv").mkdir()
    (tmp_path / "png").mkdir()
    assert run("encode", *pngs, "--out-dir", tmp_path / "scv", "-q", "2").exit_code == 0
    scvs = sorted((tmp_path / "scv").glob("*.scv"))
    assert [p.name for p in scvs] == ["in0.scv", "in1.scv"]
    result = run("decode", *scvs, "--out-dir", tmp_path / "png")
    assert result.exit_code == 0
    assert "2 of 2" in result.stderr
    with Image.open(tmp_path / "png" / "in1.png") as img:
        assert img.size == (12, 20)


def test_batch_with_worker_processes_matches_one_process(run, pngs, tmp_path) -> None:
    for folder, workers in (("one", "1"), ("two", "2")):
        assert run("encode", *pngs, "--out-dir", tmp_path / folder, "-q", "2", "--workers", workers).exit_code == 0
    for p in pngs:
        name = p.with_suffix(".scv").name
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def decoded_pixels(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as img:
        return img.mode, np.asarray(img)


def test_batch_decode_with_worker_processes_matches_one_process(run, tmp_path, small_scv, grey_scv,
                                                                tiled_scv) -> None:
    """Three different files (RGB, grey, six tiles) through two worker processes: each output
    is its own file's image, as one process decodes it."""
    sources = []
    for name, data in (("small", small_scv), ("grey", grey_scv), ("tiled", tiled_scv)):
        sources.append(tmp_path / f"{name}.scv")
        sources[-1].write_bytes(data)
    for folder, workers in (("one", "1"), ("two", "2")):
        result = run("decode", *sources, "--out-dir", tmp_path / folder, "--workers", workers, "--device", "cpu")
        assert result.exit_code == 0, result.stderr
        assert "3 of 3 files done, 0 failed" in result.stderr
    for source in sources:
        name = source.with_suffix(".png").name
        (mode_one, one), (mode_two, two) = (decoded_pixels(tmp_path / folder / name) for folder in ("one", "two"))
        header = bitstream.parse_header(source.read_bytes())[0]
        assert mode_one == mode_two == header.mode and one.shape[:2] == two.shape[:2] == (header.height, header.width)
        # the workers run with another torch thread count: a rare value may round the other way
        diff = np.abs(one.astype(np.int16) - two.astype(np.int16))
        assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999, (name, diff.max(), np.mean(diff == 0))


def test_batch_goes_on_after_a_bad_file(run, pngs, tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    (tmp_path / "out").mkdir()
    result = run("encode", pngs[0], bad, pngs[1], "--out-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert_clean_exit(result)
    assert "bad.png" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in0.scv", "in1.scv"]


def test_batch_usage_errors(run, pngs, tmp_path) -> None:
    out_dir = tmp_path / "never"
    assert run("encode", *pngs, "-o", tmp_path / "one.scv").exit_code == 2
    assert run("encode", pngs[0], "-q", "3", "--target-bpp", "0.5", "--out-dir", out_dir).exit_code == 2
    assert run("encode", pngs[0], "-o", tmp_path / "one.scv", "--out-dir", out_dir).exit_code == 2
    result = run("encode", pngs[0], pngs[0], "--out-dir", out_dir)
    assert result.exit_code == 2 and "given twice" in result.stderr
    assert not list(tmp_path.glob("*.scv")) and not out_dir.exists(), "nothing is written before the checks pass"


def test_batch_creates_a_missing_out_dir(run, pngs, tmp_path) -> None:
    assert run("encode", *pngs, "--out-dir", tmp_path / "new" / "scv").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "new" / "scv").iterdir()) == ["in0.scv", "in1.scv"]


def test_out_dir_that_cannot_be_created(run, pngs, tmp_path) -> None:
    (tmp_path / "file").write_bytes(b"")
    assert_one_line_error(run("encode", *pngs, "--out-dir", tmp_path / "file" / "sub"), 3)


def test_unexpected_failure_is_one_line_and_the_batch_goes_on(run, pngs, tmp_path, monkeypatch) -> None:
    """Not an SCVError (e.g. out of memory in torch): still a per-file line, exit 1, no traceback."""
    real = sccodec.cli._cached_codec(None, "cpu", bitstream.DEFAULT_MAX_PIXELS)

    class Flaky:
        def encode_with_info(self, data, *args, **kwargs):
            if data == pngs[0].read_bytes():
                raise RuntimeError("boom")
            return real.encode_with_info(data, *args, **kwargs)

    monkeypatch.setattr(sccodec.cli, "_cached_codec", lambda *a: Flaky())
    result = run("encode", *pngs, "--out-dir", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom" in result.stderr and "1 of 2 files done" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["in1.scv"]


def test_batch_never_writes_two_inputs_to_one_output(run, tmp_path) -> None:
    """a/x.png and b/x.png both map to out/x.scv: with --force the second would silently
    replace the first, and the run would still report success."""
    for folder, seed in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(encode_png(gradient_image(16, 16, seed)))
    (tmp_path / "out").mkdir()
    result = run("encode", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--out-dir", tmp_path / "out",
                 "--force")
    assert result.exit_code == 2 and "would both be written" in result.stderr, result.stderr
    assert not list((tmp_path / "out").iterdir())


def test_target_bpp_option(run, png, tmp_path) -> None:
    out = tmp_path / "fit.scv"
    assert run("encode", png, "-o", out, "--target-bpp", "100").exit_code == 0
    assert len(out.read_bytes()) * 8 / (28 * 20) <= 100


def test_unreachable_target_bpp_says_so(run, png, tmp_path) -> None:
    out = tmp_path / "small.scv"
    result = run("encode", png, "-o", out, "--target-bpp", "0.001")
    assert result.exit_code == 0
    assert "above the 0.001 bpp target" in result.stderr and bitstream.parse_header(out.read_bytes())[0].quality == 1


def test_target_psnr_option(run, png, tmp_path) -> None:
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    codec = sccodec.Codec(device="cpu")
    reached = {q: psnr(pixels, codec.decode_array(codec.encode(pixels, q))[0]) for q in codec.qualities}
    target = (reached[3] + reached[4]) / 2  # between two levels: the search has to run
    out = tmp_path / "psnr.scv"
    result = run("encode", png, "-o", out, "--target-psnr", f"{target:.4f}")
    assert result.exit_code == 0, result.stderr
    quality = bitstream.parse_header(out.read_bytes())[0].quality
    assert quality == min(q for q in reached if reached[q] >= round(target, 4))
    assert f"{reached[quality]:.2f} dB" in result.stderr and "below the" not in result.stderr


def test_unreachable_target_psnr_says_so(run, png, tmp_path) -> None:
    out = tmp_path / "best.scv"
    result = run("encode", png, "-o", out, "--target-psnr", "99")
    assert result.exit_code == 0
    assert "below the 99 dB target" in result.stderr
    assert bitstream.parse_header(out.read_bytes())[0].quality == max(sccodec.QUALITIES)


@pytest.mark.parametrize("args", [["-q", "3", "--target-psnr", "30"], ["--target-bpp", "1", "--target-psnr", "30"],
                                  ["--target-psnr", "0"], ["--target-psnr", "x"], ["--target-psnr", "nan"],
                                  ["--target-psnr", "inf"], ["--target-bpp", "inf"]])
def test_target_psnr_usage_errors(run, png, tmp_path, args) -> None:
    result = run("encode", png, "-o", tmp_path / "x.scv", *args)
    assert result.exit_code == 2
    assert_clean_exit(result)
    assert not (tmp_path / "x.scv").exists()


def test_encode_with_a_named_model(run, png, tmp_path) -> None:
    out = tmp_path / "m.scv"
    assert run("encode", png, "-o", out, "--model", "scvae-base", "-q", "2").exit_code == 0
    assert bitstream.parse_header(out.read_bytes())[0].model == "scvae-base"
    assert_one_line_error(run("encode", png, "-o", tmp_path / "n.scv", "--model", "no-such-model"), 1)
    assert not (tmp_path / "n.scv").exists()


def test_info_honours_max_pixels(run, tmp_path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(encode_png(gradient_image(16, 48)))
    assert run("encode", path, "--max-pixels", "800", "-q", "1").exit_code == 0
    assert_one_line_error(run("info", tmp_path / "wide.scv", "--max-pixels", "100"), 1)
    assert run("info", tmp_path / "wide.scv", "--max-pixels", "800").exit_code == 0


# ---------------------------------------------------------------- info, version, demo


def test_info_json(run, tmp_path, tiled_scv, model_file) -> None:
    path = tmp_path / "tiled.scv"
    path.write_bytes(tiled_scv)
    result = run("info", path, "--json")
    assert result.exit_code == 0
    record = json.loads(result.output)
    container = bitstream.parse(tiled_scv)
    assert record["format_version"] == container.header.version == model_file.coder.format_version
    assert record["model"] == DEFAULT_MODEL
    assert record["weights_hash"] == weights_hash().hex()
    assert record.get("classes_hash") == (container.header.classes_hash.hex() or None)
    assert record.get("pairs_hash") == (container.header.pairs_hash.hex() or None)
    assert (record["width"], record["height"], record["mode"]) == (70, 40, "RGB")
    assert (record["quality"], record["tile"], record["tile_grid"]) == (4, 32, [2, 3])
    assert record["bytes"] == len(tiled_scv)
    assert record["bpp"] == pytest.approx(len(tiled_scv) * 8 / (70 * 40), rel=1e-3)
    assert record["tile_bytes"] == [len(t) for t in container.tiles]


def test_info_human_readable(run, scv) -> None:
    result = run("info", scv)
    assert result.exit_code == 0
    assert DEFAULT_MODEL in result.output
    assert re.search(r"\b16\s*x\s*16\b|width\W+16\b", result.output), result.output


@pytest.mark.parametrize("args", [["--help"], ["encode", "--help"], ["decode", "--help"]])
def test_help_imports_neither_numpy_nor_a_runtime(args) -> None:
    """Help is for reading: it loads no model, no runtime and not even numpy (the coding API
    loads on first use of one of its names)."""
    script = ("import sys\n"
              "from sccodec.cli import main\n"
              "try:\n"
              f"    main({args!r}, prog_name='sccodec')\n"
              "except SystemExit as e:\n"
              "    assert not e.code, e.code\n"
              "print(sorted({'numpy', 'onnxruntime', 'torch', 'constriction', 'safetensors'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_the_package_loads_its_api_on_first_use() -> None:
    script = ("import sys, sccodec\n"
              "assert 'sccodec.api' not in sys.modules, 'imported eagerly'\n"
              "from sccodec import Codec, decode\n"
              "assert decode is sccodec.api.decode and Codec is sccodec.Codec\n"
              "assert sccodec.read_codes is sys.modules['sccodec.codes'].read_codes\n"
              "assert set(sccodec.__all__) <= set(dir(sccodec))\n"
              "try:\n"
              "    sccodec.no_such_name\n"
              "except AttributeError:\n"
              "    print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_version(run) -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert sccodec.__version__ in result.output
    assert "formats 1, 2" in result.output and DEFAULT_MODEL in result.output


def test_demo_with_a_bad_device_is_a_usage_error(run) -> None:
    assert_one_line_error(run("demo", "--device", "tpu"), 2)


def test_demo_failure_is_one_line(run, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sccodec.api.Codec, "encode", broken)
    result = run("demo", "--device", "cpu")
    assert_one_line_error(result, 1)
    assert "RuntimeError: out of memory" in result.stderr


def test_demo_on_a_small_image(run, tmp_path) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(encode_png(gradient_image(16, 24)))
    result = run("demo", "--image", path, "-q", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "bpp" in result.output and "PSNR" in result.output


# ---------------------------------------------------------------- a real process


def test_real_process_exit_code_and_message(tmp_path, small_scv) -> None:
    path = tmp_path / "bad.scv"
    path.write_bytes(small_scv[:-3])
    proc = subprocess.run([sys.executable, "-m", "sccodec.cli", "decode", str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sccodec: error:") and "truncated" in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "bad.png").exists()


# ---------------------------------------------------------------- all-or-nothing writes


def test_atomic_writes_leave_the_target_whole_or_untouched(tmp_path) -> None:
    target = tmp_path / "t[1].bin"  # glob characters in the name must not matter
    sccodec.atomic.write_bytes(target, b"first")
    with pytest.raises(RuntimeError), sccodec.atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first" and sorted(tmp_path.iterdir()) == [target]
    (tmp_path / f".{target.name}.deadbeef.tmp").write_bytes(b"left by a SIGKILL")
    (tmp_path / ".other.bin.deadbeef.tmp").write_bytes(b"someone else's")
    sccodec.atomic.remove_stale_temps(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.bin.deadbeef.tmp", target.name]
    (tmp_path / ".other.bin.deadbeef.tmp").unlink()


def test_atomic_write_of_a_long_non_ascii_name(tmp_path) -> None:
    """File-name limits count bytes: 120 'é' are 240 bytes, a legal name, whose temp name must fit too."""
    target = tmp_path / ("é" * 120 + ".scv")
    sccodec.atomic.write_bytes(target, b"data")
    assert target.read_bytes() == b"data" and sorted(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------- a default name never replaces a file


def test_encode_then_decode_never_replaces_the_original(run, png, tmp_path) -> None:
    """`sccodec encode photo.png && sccodec decode photo.scv` (and the same with --force)
    leave photo.png byte-identical; the decodes go to new, predictable names."""
    original = png.read_bytes()
    assert run("encode", png).exit_code == 0
    scv = png.with_suffix(".scv")
    for attempt, extra in enumerate([[], ["--force"], ["-f"]]):
        result = run("decode", scv, *extra)
        assert result.exit_code == 0, result.stderr
        expected = tmp_path / ("photo.decoded.png" if attempt == 0 else f"photo.decoded-{attempt + 1}.png")
        assert png.read_bytes() == original
        with Image.open(expected) as img:
            assert img.size == (28, 20)
        assert f"-> {expected}" in result.stderr and "photo.png exists and is kept" in result.stderr
        if extra:
            assert "--force applies to -o/--out-dir only" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.decoded-2.png", "photo.decoded-3.png",
                                                         "photo.decoded.png", "photo.png", "photo.scv"]


@pytest.mark.parametrize("existing", ["folder", "dangling symlink"])
def test_decode_default_name_skips_anything_in_the_way(run, scv, tmp_path, existing) -> None:
    taken = scv.with_suffix(".png")
    if existing == "folder":
        taken.mkdir()
    else:
        taken.symlink_to(tmp_path / "nowhere.png")
    assert run("decode", scv).exit_code == 0
    assert (tmp_path / "small.decoded.png").is_file()
    assert taken.is_dir() if existing == "folder" else (taken.is_symlink() and not taken.exists())


def test_decode_help_documents_the_default_name(run) -> None:
    text = " ".join(run("decode", "--help").output.split())
    assert "INPUT.decoded.png" in text and "never replaces a file" in text


def test_force_applies_to_an_explicit_out_dir(run, scv, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "small.png").write_bytes(b"old")
    result = run("decode", scv, "--out-dir", out)
    assert_one_line_error(result, 3)
    assert "--force" in result.stderr and (out / "small.png").read_bytes() == b"old"
    assert run("decode", scv, "--out-dir", out, "--force").exit_code == 0
    with Image.open(out / "small.png") as img:
        assert img.size == (16, 16)


def test_a_file_appearing_after_the_check_is_never_replaced(run, scv, tmp_path, monkeypatch) -> None:
    """The exists-check and the rename cannot race: a file created after the check (here: as
    the temp file is made) is left as it is, and the command says so (exit 3)."""
    target = tmp_path / "out.png"
    real_create_temp = sccodec.atomic._create_temp

    def create_temp_then_someone_writes_the_target(path):
        tmp = real_create_temp(path)
        target.write_bytes(b"appeared meanwhile")
        return tmp

    monkeypatch.setattr(sccodec.atomic, "_create_temp", create_temp_then_someone_writes_the_target)
    result = run("decode", scv, "-o", target)
    assert_one_line_error(result, 3)
    assert "appeared" in result.stderr and target.read_bytes() == b"appeared meanwhile"


def test_encode_default_name_with_force_replaces_only_an_scv_file(run, png, tmp_path) -> None:
    """encode's default output (INPUT.scv) is not an original image: --force may replace an
    .scv file there, but not some other file that happens to have that name."""
    default = png.with_suffix(".scv")
    default.write_bytes(b"not an scv file")
    assert_one_line_error(run("encode", png), 3)
    result = run("encode", png, "--force")
    assert_one_line_error(result, 3)
    assert "not an .scv file" in result.stderr and default.read_bytes() == b"not an scv file"
    default.unlink()
    assert run("encode", png, "-q", "1").exit_code == 0
    first = default.read_bytes()
    assert run("encode", png, "-q", "2", "--force").exit_code == 0
    assert default.read_bytes() != first and bitstream.parse_header(default.read_bytes())[0].quality == 2


# ---------------------------------------------------------------- binary output and terminals


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_binary_output_to_a_terminal_is_refused(run, png, scv, monkeypatch, command) -> None:
    monkeypatch.setattr(sccodec.cli, "_stdout_is_a_terminal", lambda: True)
    result = run(command, png if command == "encode" else scv, "-o", "-")
    assert_one_line_error(result, 2)
    assert "terminal" in result.stderr and result.stdout_bytes == b""


def test_binary_output_to_a_real_terminal_is_refused(scv) -> None:
    """The same through a pseudo-terminal: nothing binary reaches it, exit 2, one line."""
    pty = pytest.importorskip("pty")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "sccodec.cli", "decode", str(scv), "-o", "-"],
                              stdout=terminal, stderr=subprocess.PIPE, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        os.close(terminal)
        terminal = -1
        written = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sccodec: error:") and "terminal" in lines[0], lines
    assert written == b""


# ---------------------------------------------------------------- Ctrl-C


class Interrupted:
    def encode_with_info(self, *args, **kwargs):
        raise KeyboardInterrupt

    def decode(self, *args, **kwargs):
        raise KeyboardInterrupt


def assert_interrupted(result) -> None:
    assert result.exit_code == EXIT_INTERRUPTED == 130, (result.exit_code, result.stderr)
    assert_clean_exit(result)
    assert result.stderr.strip().splitlines() == ["sccodec: interrupted"], result.stderr


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_ctrl_c_is_exit_130_with_one_line(run, png, scv, tmp_path, monkeypatch, command) -> None:
    monkeypatch.setattr(sccodec.cli, "_cached_codec", lambda *a: Interrupted())
    out = tmp_path / ("out.scv" if command == "encode" else "out.png")
    assert_interrupted(run(command, png if command == "encode" else scv, "-o", out))
    assert not out.exists()


def test_ctrl_c_in_a_batch_is_exit_130(run, pngs, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sccodec.cli, "_cached_codec", lambda *a: Interrupted())
    assert_interrupted(run("encode", *pngs, "--out-dir", tmp_path / "out"))
    assert not list((tmp_path / "out").iterdir())


def test_ctrl_c_while_writing_leaves_no_partial_output(run, scv, tmp_path, monkeypatch) -> None:
    """Interrupted inside the atomic write (here: as the data is flushed): exit 130, no
    output, no temp file (the autouse fixture checks), an existing file untouched."""
    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(sccodec.atomic.os, "fsync", interrupted_fsync)
    assert_interrupted(run("decode", scv, "-o", tmp_path / "new.png"))
    assert not (tmp_path / "new.png").exists()
    (tmp_path / "old.png").write_bytes(b"old")
    assert_interrupted(run("decode", scv, "-o", tmp_path / "old.png", "--force"))
    assert (tmp_path / "old.png").read_bytes() == b"old"


def test_ctrl_c_in_demo_and_info_is_exit_130(run, scv, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sccodec.api.Codec, "encode", interrupted)
    assert_interrupted(run("demo", "--device", "cpu"))
    monkeypatch.setattr(bitstream, "parse", interrupted)
    assert_interrupted(run("info", scv))


# ---------------------------------------------------------------- messages name the file


@pytest.mark.parametrize("command", ["decode", "info"])
def test_a_text_file_is_named_and_said_not_scv(run, tmp_path, command) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping: milk, eggs\n")
    result = run(command, notes)
    assert_one_line_error(result, 1)
    assert result.stderr.startswith(f"sccodec: error: {notes}: not an .scv file"), result.stderr
    assert "b'" not in result.stderr


@pytest.mark.parametrize(("command", "name"), [("decode", "empty.scv"), ("info", "empty.scv"),
                                               ("encode", "empty.png")])
def test_an_empty_file_is_named_and_said_empty(run, tmp_path, command, name) -> None:
    empty = tmp_path / name
    empty.write_bytes(b"")
    result = run(command, empty)
    assert_one_line_error(result, 1)
    assert result.stderr.startswith(f"sccodec: error: {empty}: ") and "empty" in result.stderr, result.stderr
    assert result.stderr.count(str(empty)) == 1


def test_empty_stdin_is_said_empty(run, tmp_path) -> None:
    result = run("decode", "-", "-o", tmp_path / "out.png", input=b"")
    assert_one_line_error(result, 1)
    assert "stdin" in result.stderr and "0 bytes" in result.stderr


def test_batch_errors_name_each_file_once(run, pngs, tmp_path) -> None:
    empty, missing = tmp_path / "empty.png", tmp_path / "missing.png"
    empty.write_bytes(b"")
    result = run("encode", pngs[0], empty, missing, "--out-dir", tmp_path / "out")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("sccodec: error:")]
    assert errors == [f"sccodec: error: {empty}: file is empty (0 bytes)",
                      f"sccodec: error: {missing}: No such file or directory"], errors


def test_chunk_names_are_plain_text(run, tmp_path, small_scv) -> None:
    path = tmp_path / "odd.scv"
    path.write_bytes(small_scv + bitstream.pack_chunk(b"ZZZZ", b"x"))
    result = run("info", path)
    assert_one_line_error(result, 1)
    assert "ZZZZ" in result.stderr and "b'" not in result.stderr


# ---------------------------------------------------------------- ICC profiles


BROKEN_ICC = bytes((i * 151 + 7) % 256 for i in range(70_000))


def test_encoding_an_image_with_a_broken_profile_drops_it_with_one_warning(run, tmp_path) -> None:
    src = tmp_path / "broken_icc.png"
    Image.fromarray(gradient_image(20, 28)).save(src, icc_profile=BROKEN_ICC)
    result = run("encode", src, "-q", "1")
    assert result.exit_code == 0, result.stderr
    warnings_ = [line for line in result.stderr.splitlines() if line.startswith("sccodec: warning:")]
    assert len(warnings_) == 1 and warnings_[0].startswith(f"sccodec: warning: {src}: dropped the ICC profile")
    assert bitstream.ICC_CHUNK not in bitstream.parse(src.with_suffix(".scv").read_bytes()).ancillary


@pytest.mark.parametrize("profile", ["random", "oversized"])
def test_decoding_a_file_with_a_broken_profile_drops_it_with_one_warning(run, tmp_path, small_scv, profile) -> None:
    """A hostile iCCP chunk (garbage, or a well-formed profile above the cap) is not copied
    into the decoded image."""
    from PIL import ImageCms

    from sccodec.image_io import MAX_ICC_BYTES

    if profile == "random":
        icc = BROKEN_ICC
    else:
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        size = MAX_ICC_BYTES + 16
        icc = (size).to_bytes(4, "big") + srgb[4:] + bytes(size - len(srgb))
    c = bitstream.parse(small_scv)
    path = tmp_path / "icc.scv"
    path.write_bytes(bitstream.pack(bitstream.Container(c.header, c.tiles, {bitstream.ICC_CHUNK: icc})))
    result = run("decode", path, "-o", tmp_path / "out.png", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert f"sccodec: warning: {path}: dropped the ICC profile" in result.stderr
    with Image.open(tmp_path / "out.png") as img:
        assert "icc_profile" not in img.info


def test_large_images_show_progress_on_a_terminal_only(monkeypatch, tmp_path) -> None:
    """A file of 4 or more tiles reports each tile on stderr when stderr is a terminal."""
    from sccodec import cli
    from sccodec.refine import SCHEDULES

    shown = []
    monkeypatch.setattr(cli, "_show_progress", lambda stage, done, total: shown.append((stage, done, total)))
    monkeypatch.setattr(cli, "PROGRESS_FROM_TILES", 1)
    src = tmp_path / "big.png"
    Image.fromarray(gradient_image(40, 40)).save(src)
    for tty in (False, True):
        monkeypatch.setattr(cli, "_stderr_is_terminal", lambda tty=tty: tty)
        assert CliRunner().invoke(cli.main, ["encode", str(src), "-o", str(tmp_path / f"{tty}.scv")]).exit_code == 0
        assert CliRunner().invoke(cli.main, ["decode", str(tmp_path / f"{tty}.scv"), "-o",
                                             str(tmp_path / f"{tty}.png")]).exit_code == 0
        assert bool(shown) == tty
    assert shown == [("encoding", 1, 1), ("decoding", 1, 1)]
    shown.clear()
    assert CliRunner().invoke(cli.main, ["encode", str(src), "-o", str(tmp_path / "e4.scv"), "--effort", "4"]).exit_code == 0
    gradients = SCHEDULES[4].gradients  # one window, a synthesis pass per gradient
    assert shown == [("encoding", 1, 1), *(("refining", i, gradients) for i in range(1, gradients + 1))]


@pytest.mark.parametrize("threads", [None, "1", "3"])
def test_threads_reach_the_codec(run, pngs, tmp_path, monkeypatch, threads) -> None:
    """--threads sets each file's network threads (1: one tile at a time, the least memory);
    without it the codec uses the cores."""
    seen = []
    real = sccodec.cli._cached_codec

    def spy(model, device, max_pixels, threads=None):
        seen.append(threads)
        return real(model, device, max_pixels, threads)

    monkeypatch.setattr(sccodec.cli, "_cached_codec", spy)
    option = () if threads is None else ("--threads", threads)
    scv = tmp_path / "a.scv"
    assert run("encode", pngs[0], "-o", scv, "-q", "2", *option).exit_code == 0
    assert run("decode", scv, "-o", tmp_path / "a.png", *option).exit_code == 0
    assert seen == [None if threads is None else int(threads)] * 2


def test_worker_processes_share_the_cores_unless_threads_say(monkeypatch, tmp_path) -> None:
    """With --workers N each process gets cores // N threads; --threads overrides the share."""
    import contextlib

    given = []

    @contextlib.contextmanager
    def pool(workers):
        yield lambda run_job, jobs: [given.append(j.threads) or sccodec.cli.Outcome(j.source, j.output, "ok", 0)
                                     for j in jobs]

    monkeypatch.setattr(sccodec.cli, "available_cores", lambda: 8)
    monkeypatch.setattr(sccodec.cli, "_pool", pool)
    for threads, workers, share in ((None, 2, 4), (None, 3, 2), (3, 2, 3), (None, 16, 1)):
        jobs = [sccodec.cli.Job(f"{n}.png", str(tmp_path / f"{n}.scv"), False, (), threads=threads) for n in "ab"]
        given.clear()
        sccodec.cli._run(None, jobs, workers, "encoding", None)
        assert given == [share, share], (threads, workers)
