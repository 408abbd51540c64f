"""Hostile files (issue #34): a tiny, valid file must not make the decoder do work that its
size does not pay for. Each crafted file below is under 1 kB, has correct CRCs, stays within
the DEFAULT pixel limit, and claims one tile above the reader's tile limit
(``bitstream.MAX_TILE``). Every way of decoding it must refuse it from the header alone:
before any tile is entropy-decoded or synthesised, so before anything is allocated from the
claimed size. Nothing here is timed: the tests make synthesis (and the symbol decoder) fail
loudly if they are ever reached.
"""
from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import sccodec
import sccodec.api
from helpers import rebuild
from sccodec import bitstream
from sccodec.bitstream import DEFAULT_MAX_PIXELS, MAX_TILE
from sccodec.cli import main
from sccodec.errors import LimitError, SCVError

ALL_ZERO_TILE = bytes(4)  # one all-zero ANS word: what the 82-byte file carried

# (width, height, tile): one tile each, every one above MAX_TILE, every image within the default limit
CLAIMS = {
    "one 65520-px tile, 11585x11585 (the default pixel limit)": (11585, 11585, 65520),
    "a tile just above the limit": (MAX_TILE + 16, MAX_TILE + 16, MAX_TILE + 16),
    "a 65520x2048 strip in one tile": (65520, 2048, 65520),
    "a 4096-px tile": (4096, 4096, 4096),
}


def crafted(small_scv: bytes, width: int, height: int, tile: int) -> bytes:
    header = bitstream.parse(small_scv).header
    claim = dataclasses.replace(header, width=width, height=height, tile=tile)
    return bitstream.pack(bitstream.Container(claim, [ALL_ZERO_TILE]))


@pytest.fixture(params=list(CLAIMS))
def hostile(request, small_scv) -> bytes:
    width, height, tile = CLAIMS[request.param]
    data = crafted(small_scv, width, height, tile)
    assert len(data) < 1024 and width * height <= DEFAULT_MAX_PIXELS and tile > MAX_TILE
    assert -(-width // tile) * -(-height // tile) == 1, "one tile, as the file says"
    return data


@pytest.fixture
def nothing_is_decoded(monkeypatch):
    """Synthesis and symbol decoding raise if reached: a refusal must come from the header.
    The network is what synthesises, whatever the method calling it is named: any use of it
    raises (a class property wins over the value a built codec cached)."""
    def reached(*args, **kwargs):
        raise AssertionError("a tile was decoded: the file was not refused from its header")

    monkeypatch.setattr(sccodec.api.Codec, "network", property(reached))
    for name in ("_synthesize_tile", "_synthesize"):  # the synthesis step, by its names so far
        if hasattr(sccodec.api.Codec, name):
            monkeypatch.setattr(sccodec.api.Codec, name, reached)
    monkeypatch.setattr(sccodec.api.Codec, "parse_symbols", reached)
    monkeypatch.setattr(sccodec.api, "parse_symbols", reached)


def cli_runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by default


def assert_tile_limit(err: pytest.ExceptionInfo) -> None:
    message = str(err.value)
    assert "tile size" in message and str(MAX_TILE) in message and "\n" not in message, message


def test_the_reader_refuses_it_at_the_default_limit(hostile) -> None:
    with pytest.raises(LimitError) as err:
        bitstream.parse(hostile)
    assert_tile_limit(err)
    with pytest.raises(LimitError):
        bitstream.parse_header(hostile)


def test_the_codec_refuses_it_before_any_decoding(hostile, codec, nothing_is_decoded) -> None:
    for decode in (codec.decode, codec.decode_array, sccodec.decode,
                   lambda data: sccodec.decode(data, device="cpu", as_array=True),
                   lambda data: sccodec.open(io.BytesIO(data), device="cpu")):
        with pytest.raises(LimitError) as err:
            decode(hostile)
        assert_tile_limit(err)


def test_pillow_refuses_it_without_decoding(hostile, nothing_is_decoded) -> None:
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(hostile))


@pytest.mark.parametrize("command", ["decode", "info"])
def test_the_command_line_refuses_it_in_one_line(hostile, tmp_path, nothing_is_decoded, command) -> None:
    path = tmp_path / "hostile.scv"
    path.write_bytes(hostile)
    result = cli_runner().invoke(main, [command, str(path), "--device", "cpu"] if command == "decode"
                                else [command, str(path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sccodec: error: {path}: ") and "tile size" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.scv"], "no output, no temp file"


def test_a_tile_at_the_limit_is_read(small_scv) -> None:
    """The limit refuses only what no sccodec writer produces: MAX_TILE itself parses (the
    decoder's cost for it is bounded by the pixels; that is sccodec.api's part)."""
    data = crafted(small_scv, MAX_TILE, MAX_TILE, MAX_TILE)
    assert bitstream.parse(data).header.tile == MAX_TILE


def test_a_huge_tile_is_refused_in_a_real_process(small_scv, tmp_path) -> None:
    """The whole path, as a user runs it: a real process, default limits, exit 1, one line.
    (Without the limit this file made the decoder synthesise a 65520-px tile.)"""
    path = tmp_path / "bomb.scv"
    path.write_bytes(crafted(small_scv, 11585, 11585, 65520))
    proc = subprocess.run([sys.executable, "-m", "sccodec.cli", "decode", str(path), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sccodec: error:")]
    assert len(errors) == 1 and "tile size 65520" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.scv"]


def test_every_error_is_an_scv_error(small_scv) -> None:
    """Each crafted claim, also at the limits of every header field, ends as an SCVError."""
    for width, height, tile in list(CLAIMS.values()) + [(2**32 - 1, 1, 65520), (1, 2**32 - 1, 16)]:
        with pytest.raises(SCVError):
            bitstream.parse(rebuild(small_scv, width=width, height=height, tile=tile))


def test_a_panic_in_the_entropy_coder_is_a_corrupt_file_error(small_scv, monkeypatch) -> None:
    """constriction's Rust panics arrive as pyo3's PanicException, a BaseException: not caught by
    ``except Exception``. The coder turns one into the file's error; other BaseExceptions pass."""
    import sccodec.coder
    from sccodec.api import Codec
    from sccodec.errors import CorruptFileError

    class PanicException(BaseException):
        pass

    def panics(*args, **kwargs):
        raise PanicException("probabilities must be finite")

    monkeypatch.setattr(sccodec.coder.entropy, "decode", panics)
    with pytest.raises(CorruptFileError, match="coder stopped"):
        Codec(device="cpu").parse_symbols(small_scv)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sccodec.coder.entropy, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Codec(device="cpu").parse_symbols(small_scv)
