"""The `sccodec` command line: outputs, --force, exit codes (0 ok, 1 bad input, 2 usage,
3 output problem), one-line errors, and no temp files left behind."""
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
from sccodec.entropy import newest_format
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


def assert_one_line_error(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
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


@pytest.mark.parametrize("command", ["decode", "info", "encode"])
def test_missing_input_is_exit_1(run, tmp_path, command) -> None:
    result = run(command, tmp_path / "missing.scv")
    assert_one_line_error(result, 1)
    assert result.stderr.startswith("sccodec: error: ") and "No such file" in result.stderr


def test_pixel_limit_is_exit_1(run, png, scv) -> None:
    assert_one_line_error(run("encode", png, "--max-pixels", "100"), 1)
    assert_one_line_error(run("decode", scv, "--max-pixels", "100"), 1)


@pytest.mark.parametrize("quality", ["0", str(max(sccodec.QUALITIES) + 1), "abc"])
def test_bad_quality_is_a_usage_error(run, png, quality) -> None:
    result = run("encode", png, "-q", quality)
    assert result.exit_code == 2, result.output
    assert "quality" in result.stderr.lower() and "Traceback" not in result.output
    assert not png.with_suffix(".scv").exists()


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


def test_batch_goes_on_after_a_bad_file(run, pngs, tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    (tmp_path / "out").mkdir()
    result = run("encode", pngs[0], bad, pngs[1], "--out-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert "bad.png" in result.stderr and "Traceback" not in result.output
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
    assert result.exit_code == 2 and "Traceback" not in result.output
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
    assert record["format_version"] == container.header.version == newest_format(model_file.tables.context)
    assert record["model"] == DEFAULT_MODEL
    assert record["weights_hash"] == weights_hash().hex()
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
