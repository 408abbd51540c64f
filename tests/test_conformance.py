"""Conformance: committed .scv files (tests/data/conformance, written by its make.py) must keep
parsing to the same integer symbols and decoding to the same pixels.

Parsing is integer-exact, so the symbols' hash must match exactly. Decoded pixels come out of
float convolutions and may differ by one level in rare values across CPUs and kernels, so they
are compared with a tolerance: at most 1 level anywhere, identical in at least 99.9% of values.
A decoder whose output drifts (a scaled output, a shifted tile, a wrong edge) fails here even
when every round trip still looks plausible.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sccodec
from sccodec import bitstream
from sccodec.api import parse_symbols
from sccodec.errors import ModelMismatchError
from sccodec.weights import ModelFile, load_model_file

HERE = Path(__file__).resolve().parent / "data" / "conformance"
MANIFEST = json.loads((HERE / "manifest.json").read_text())
ENTRIES = {entry["file"]: entry for entry in MANIFEST["files"]}
REGENERATE = "python tests/data/conformance/make.py"
MIN_IDENTICAL = 0.999  # share of pixel values that must be bit-identical to the stored PNG


def model_for(name: str, header: bitstream.Header) -> ModelFile:
    """The weights the file was written with: the installed model, or an earlier version kept
    beside it as NAME@HASH. Neither: a clear failure saying what to do."""
    try:
        return load_model_file(header.model, header.weights_hash)
    except ModelMismatchError as e:
        pytest.fail(f"{name} no longer decodes: {e}\nFiles coded with the old weights must keep decoding "
                    f"(keep them as NAME@HASH, as 'sccodec export --force' does). If the break is intended, "
                    f"regenerate the conformance files with: {REGENERATE}", pytrace=False)


def symbols_sha256(tiles: list[np.ndarray]) -> str:
    """As make.py hashes them: every tile's symbols in file order, as int32 little-endian."""
    digest = hashlib.sha256()
    for tile in tiles:
        as_int32 = np.ascontiguousarray(tile, dtype="<i4")
        np.testing.assert_array_equal(as_int32, tile, err_msg="symbols outside the int32 range")
        digest.update(as_int32.tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module", params=sorted(ENTRIES))
def case(request) -> tuple[str, dict, bytes, bitstream.Header]:
    name = request.param
    data = (HERE / name).read_bytes()
    return name, ENTRIES[name], data, bitstream.parse_header(data)[0]


def test_the_manifest_covers_every_file_and_the_cases_that_matter() -> None:
    on_disk = {p.name for p in HERE.iterdir() if p.suffix in (".scv", ".png")}
    listed = set(ENTRIES) | {entry["pixels"] for entry in ENTRIES.values()}
    assert on_disk == listed, f"files and manifest disagree; regenerate with {REGENERATE}"
    entries = list(ENTRIES.values())
    assert any(e["mode"] == "L" for e in entries), "a grey file"
    assert any(e["tiles"] > 1 for e in entries), "a multi-tile file"
    assert len({e["quality"] for e in entries}) >= 3, "low, default and high quality"
    assert any(e["quality"] == sccodec.DEFAULT_QUALITY for e in entries)
    written = {load_model_file(e["model"]).coder.format_version for e in entries}
    assert {e["format_version"] for e in entries} >= written | {4}, "the formats written now, and format 4"


def test_file_bytes_and_header_match_the_manifest(case) -> None:
    name, entry, data, header = case
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name} changed on disk without the manifest"
    assert (header.model, header.weights_hash.hex(), header.version, header.quality) == (
        entry["model"], entry["weights_hash"], entry["format_version"], entry["quality"])
    assert (header.width, header.height, header.mode, header.tile, header.num_tiles) == (
        entry["width"], entry["height"], entry["mode"], entry["tile"], entry["tiles"])


def test_symbols_are_exactly_the_committed_ones(case) -> None:
    name, entry, data, header = case
    parsed = parse_symbols(data, model_for(name, header))
    assert len(parsed.tiles) == entry["tiles"]
    assert symbols_sha256(parsed.tiles) == entry["symbols_sha256"], \
        f"{name}: the entropy decoder now reads different symbols from an unchanged file"


def test_decoded_pixels_match_the_committed_ones(case) -> None:
    name, entry, data, header = case
    model_for(name, header)  # a clear message, rather than a decode error, when the weights are gone
    decoded = sccodec.decode(data, device="cpu")
    with Image.open(HERE / entry["pixels"]) as stored:
        stored.load()
    assert decoded.mode == stored.mode == entry["mode"], (decoded.mode, stored.mode, entry["mode"])
    assert decoded.size == stored.size == (entry["width"], entry["height"])
    got, want = np.asarray(decoded).astype(np.int16), np.asarray(stored).astype(np.int16)
    diff = np.abs(got - want)
    identical = float(np.mean(diff == 0))
    assert diff.max() <= 1 and identical >= MIN_IDENTICAL, (
        f"{name}: decoded pixels drifted from the committed ones: max difference {diff.max()} levels, "
        f"{100 * identical:.3f}% identical, mean signed difference {np.mean(got - want):+.3f} levels")


def test_a_file_whose_weights_are_gone_fails_with_a_way_out() -> None:
    """What the suite promises: a file needing weights that are neither installed nor kept
    fails with a message naming make.py, not with an obscure decode error."""
    name = sorted(ENTRIES)[0]
    header = bitstream.parse_header((HERE / name).read_bytes())[0]
    gone = dataclasses.replace(header, weights_hash=bytes(8))
    with pytest.raises(pytest.fail.Exception, match="tests/data/conformance/make.py"):
        model_for(name, gone)
