"""The .scv container: the writer agrees with docs/format.md, and the reader rejects bad files
with SCVError subclasses and one-line messages (sccodec.bitstream, sccodec.api.parse_symbols)."""
from __future__ import annotations

import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest

import sccodec
from helpers import DEFAULT_MODEL, WEIGHTS, make_tables, rebuild, weights_hash
from sccodec import bitstream, entropy
from sccodec.api import parse_symbols
from sccodec.bench.fuzz import repair_crcs
from sccodec.context import SCHEMES
from sccodec.entropy import FORMATS
from sccodec.errors import CorruptFileError, FormatError, LimitError, ModelMismatchError, SCVError

def read_by_hand(data: bytes) -> tuple[dict, list[tuple[bytes, bytes]]]:
    """An independent reader written from docs/format.md alone."""
    fields: dict = {}
    assert data[0:8] == b"\x89SCV\r\n\x1a\n"
    fields["version"], fields["coder_major"], fields["coder_minor"], n = data[8], data[9], data[10], data[11]
    fields["name"] = data[12 : 12 + n].decode("ascii")
    fields["hash"] = data[12 + n : 20 + n]
    fields["quality"] = data[20 + n]
    fields["width"], fields["height"] = struct.unpack(">II", data[21 + n : 29 + n])
    fields["mode"], fields["bit_depth"] = data[29 + n], data[30 + n]
    (fields["tile"],) = struct.unpack(">H", data[31 + n : 33 + n])
    end = 33 + n
    if fields["version"] >= 6:  # the class file's hash
        fields["classes_hash"], end = data[end : end + 8], end + 8
    if fields["version"] >= 7:  # the pair file's hash
        fields["pairs_hash"], end = data[end : end + 8], end + 8
    (crc,) = struct.unpack(">I", data[end : end + 4])
    assert crc == zlib.crc32(data[:end]), "header CRC covers every header byte before it"
    chunks = []
    pos = end + 4
    while pos < len(data):
        kind, length = struct.unpack(">4sI", data[pos : pos + 8])
        payload = data[pos + 8 : pos + 8 + length]
        assert len(payload) == length
        (chunk_crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert chunk_crc == zlib.crc32(kind + payload), f"chunk {len(chunks)} CRC (type + payload)"
        chunks.append((kind, payload))
        pos += 12 + length
    assert pos == len(data), "nothing may follow the last chunk"
    return fields, chunks


@pytest.mark.parametrize(("name", "quality", "size", "mode", "tile", "grid"), [
    ("tiled_scv", 4, (70, 40), 0, 32, (2, 3)),
    ("grey_scv", 2, (24, 20), 1, 1024, (1, 1)),
    ("small_scv", 3, (16, 16), 0, 1024, (1, 1)),
])
def test_writer_follows_the_spec(request, model_file, name, quality, size, mode, tile, grid) -> None:
    data = request.getfixturevalue(name)
    fields, chunks = read_by_hand(data)
    assert fields["version"] == model_file.coder.format_version
    assert (fields["coder_major"], fields["coder_minor"]) == (0, 5)
    assert fields["name"] == DEFAULT_MODEL
    assert fields["hash"] == weights_hash()
    assert fields["quality"] == quality
    assert (fields["width"], fields["height"]) == size
    assert fields["mode"] == mode and fields["bit_depth"] == 8
    assert fields["tile"] == tile and tile % 16 == 0
    assert [kind for kind, _ in chunks] == [b"TILE"] * (grid[0] * grid[1])
    for _, payload in chunks:
        assert payload and len(payload) % 4 == 0, "a TILE payload is whole little-endian u32 words"


def test_reference_parser_agrees_with_the_hand_reader(tiled_scv) -> None:
    fields, chunks = read_by_hand(tiled_scv)
    c = bitstream.parse(tiled_scv)
    h = c.header
    assert (h.model, h.weights_hash, h.quality, h.width, h.height, h.tile) == (
        fields["name"], fields["hash"], fields["quality"], fields["width"], fields["height"], fields["tile"])
    assert (h.classes_hash, h.pairs_hash) == (fields.get("classes_hash", b""), fields.get("pairs_hash", b""))
    assert h.tile_grid == (2, 3) and h.num_tiles == 6
    assert c.tiles == [payload for _, payload in chunks]
    assert bitstream.pack(c) == tiled_scv, "parse -> pack reproduces the file byte for byte"


def test_weights_sidecar_names_the_same_hash() -> None:
    sidecar = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert sidecar["name"] == DEFAULT_MODEL
    assert bytes.fromhex(sidecar["weights_hash"]) == weights_hash()


def test_weights_name_their_context_scheme(model_file, tmp_path) -> None:
    """Weights written before the key existed (0.3 and older) read as checkerboard; a scheme
    this sccodec does not know, or tables that do not fit the named scheme, are a
    ModelMismatchError (one line in the CLI), never a wrong decode."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from sccodec.weights import read_model_file

    with safe_open(str(WEIGHTS), framework="numpy") as f:
        meta = f.metadata()
    assert meta.get("context", "checkerboard") == model_file.context == model_file.tables.context
    legacy = tmp_path / "legacy.safetensors"
    save_file(model_file.tensors, str(legacy), metadata={k: v for k, v in meta.items() if k != "context"})
    old = read_model_file(legacy)
    assert old.context == "checkerboard"
    other = next(name for name in SCHEMES if name != model_file.context)
    for context in (other, "hexagonal"):
        with pytest.raises(ModelMismatchError, match="cannot use the tables"):
            _ = dataclasses.replace(model_file, context=context).tables
    fewer_atoms = {k: a[:, :-4] if k.startswith("tables.") else a for k, a in model_file.tensors.items()}
    with pytest.raises(ModelMismatchError, match="atoms"):
        _ = dataclasses.replace(model_file, tensors=fewer_atoms).tables


def test_ancillary_chunks_are_skipped_and_critical_ones_refused(small_scv, model_file) -> None:
    c = bitstream.parse(small_scv)
    expected = parse_symbols(small_scv, model_file).tiles[0]
    with_ancillary = bitstream.pack(bitstream.Container(c.header, c.tiles, {b"zzZz": b"hello"}))
    assert bitstream.parse(with_ancillary).ancillary == {b"zzZz": b"hello"}
    assert (parse_symbols(with_ancillary, model_file).tiles[0] == expected).all()
    repeated = small_scv + bitstream.pack_chunk(b"iCCP", b"first") + bitstream.pack_chunk(b"iCCP", b"last")
    assert bitstream.parse(repeated).ancillary == {b"iCCP": b"last"}  # docs/format.md: the last one wins
    critical = small_scv + bitstream.pack_chunk(b"ZZZZ", b"x")
    with pytest.raises(CorruptFileError, match="critical"):
        bitstream.parse(critical)


@pytest.mark.parametrize(("damage", "name"), [("unknown critical", "ZZZZ"), ("bad crc", "TILE"),
                                            ("truncated", "TILE"), ("odd bytes", "\\x00Z\\x5cZ")])
def test_chunk_types_are_named_as_plain_text(small_scv, damage, name) -> None:
    """Messages name chunk types as text (TILE), never as Python bytes reprs (b'TILE')."""
    data = {"unknown critical": small_scv + bitstream.pack_chunk(b"ZZZZ", b"x"),
            "bad crc": small_scv[:-1] + bytes([small_scv[-1] ^ 1]),
            "truncated": small_scv[:-2],
            "odd bytes": small_scv + bitstream.pack_chunk(b"\x00Z\\Z", b"x")}[damage]
    with pytest.raises(CorruptFileError) as err:
        bitstream.parse(data)
    message = str(err.value)
    assert name in message and "b'" not in message and 'b"' not in message, message
    assert_one_line(err)


def test_extra_tile_chunk_is_refused(small_scv) -> None:
    c = bitstream.parse(small_scv)
    with pytest.raises(CorruptFileError, match="more tile chunks"):
        bitstream.parse(small_scv + bitstream.pack_chunk(b"TILE", c.tiles[0]))


def test_missing_tile_chunk_is_refused(tiled_scv) -> None:
    c = bitstream.parse(tiled_scv)
    data = bitstream.pack(bitstream.Container(c.header, c.tiles[:-1]))
    with pytest.raises(CorruptFileError, match="5 of 6"):
        bitstream.parse(data)


# ---------------------------------------------------------------- corrupt files


def assert_one_line(err: pytest.ExceptionInfo) -> None:
    message = str(err.value)
    assert message and "\n" not in message, repr(message)


@pytest.mark.parametrize(("data", "error", "match"), [
    (b"", FormatError, "empty"),
    (b"GIF89a\x01\x00\x01\x00", FormatError, "magic"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), FormatError, "magic"),
    (b"\x89SCV\r\n\x1a\n", CorruptFileError, "truncated"),
])
def test_not_an_scv_file(data, error, match) -> None:
    with pytest.raises(error, match=match) as err:
        parse_symbols(data)
    assert_one_line(err)


def test_wrong_format_version(small_scv, model_file) -> None:
    unknown = bitstream.FORMAT_VERSIONS[-1] + 1
    with pytest.raises(FormatError, match=f"version {unknown}") as err:
        bitstream.parse(rebuild(small_scv, version=unknown))
    assert_one_line(err)
    # a version this sccodec reads, but for another context scheme than the model's tables
    other = next(v for v, coding in FORMATS.items() if coding.context != model_file.tables.context)
    with pytest.raises(FormatError, match=f"format {other} file") as err:
        parse_symbols(rebuild(small_scv, version=other), model_file)
    assert_one_line(err)


def test_every_format_version_has_a_tile_coding_and_every_scheme_a_format() -> None:
    assert bitstream.FORMAT_VERSIONS == tuple(sorted(FORMATS))
    assert {coding.context for coding in FORMATS.values()} == set(SCHEMES)


def tables_of_scheme(model_file, context: str) -> entropy.SymbolTables:
    """The model's own tables if they are of ``context``, else random ones of that scheme in
    the model's shape (parsing needs only tables of the right scheme, not good ones)."""
    if model_file.tables.context == context:
        return model_file.tables
    t, scheme = model_file.tables, SCHEMES[context]
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, (t.qualities, t.atoms, scheme.flag_contexts))
    v = rng.dirichlet(np.ones(2 * t.value_range), (t.qualities, t.atoms, scheme.value_contexts))
    return make_tables(p, v, t.groups, context)


@pytest.mark.parametrize("version", list(FORMATS))
def test_files_of_every_format_version_decode(codec, tiled_scv, model_file, version) -> None:
    """Files of every format version sccodec ever wrote (checkerboard, quad, quad adapted,
    nested adapted) parse back to their symbols and decode to the same pixels, when the
    model they name has tables of their scheme."""
    mine = parse_symbols(tiled_scv, model_file)
    q = mine.header.quality - 1
    coding = FORMATS[version]
    tables = tables_of_scheme(model_file, coding.context)
    arrays = {f"tables.{k}": a for k, a in tables.stored().items()}
    other = dataclasses.replace(model_file, context=coding.context,
                                tensors={**{k: a for k, a in model_file.tensors.items() if not k.startswith("tables.")},
                                         **arrays})
    if coding.pairs and other.pairs is None:
        pytest.skip("the installed model has no pair file")
    classes = other.classes.level(q, tables.frequencies(q)) if coding.classes else None
    pairs = other.pairs.level(q) if coding.pairs else None
    words = [entropy.encode(t, tables, q, coding.adaptive, coding.integer, classes, pairs).astype("<u4").tobytes()
             for t in mine.tiles]
    container = bitstream.parse(tiled_scv)
    header = dataclasses.replace(container.header, version=version,
                                 classes_hash=other.classes.digest if coding.classes else b"",
                                 pairs_hash=other.pairs.digest if coding.pairs else b"")
    data = bitstream.pack(bitstream.Container(header, words))
    for theirs, ours in zip(parse_symbols(data, other).tiles, mine.tiles):
        np.testing.assert_array_equal(theirs, ours)
    other_codec = sccodec.Codec(other, device="cpu")
    np.testing.assert_array_equal(other_codec.decode_array(data)[0], codec.decode_array(tiled_scv)[0])


def test_every_truncation_is_an_error(tiled_scv, model_file) -> None:
    for n in range(len(tiled_scv)):
        with pytest.raises(SCVError) as err:
            parse_symbols(tiled_scv[:n], model_file)
        assert_one_line(err)
        if n >= 8:  # past the magic bytes: the message says what happened
            assert "truncated" in str(err.value), (n, str(err.value))


def test_every_single_bit_flip_is_detected(small_scv, model_file) -> None:
    """CRC-32 catches every single-bit error, in the header and in every chunk."""
    for i in range(len(small_scv)):
        for bit in range(8):
            corrupt = bytearray(small_scv)
            corrupt[i] ^= 1 << bit
            with pytest.raises(SCVError) as err:
                parse_symbols(bytes(corrupt), model_file)
            assert_one_line(err)


@pytest.mark.parametrize(("where", "match"), [("header", "header CRC"), ("chunk", "CRC mismatch in chunk 0")])
def test_crc_messages_say_where(small_scv, where, match) -> None:
    name_len = small_scv[11]
    hashes = 8 * ((small_scv[8] >= bitstream.CLASSES_FROM_VERSION) + (small_scv[8] >= bitstream.PAIRS_FROM_VERSION))
    offset = {"header": 21 + name_len, "chunk": 37 + name_len + hashes}[where]  # width / first payload byte
    corrupt = bytearray(small_scv)
    corrupt[offset] ^= 0x10
    with pytest.raises(CorruptFileError, match=match):
        bitstream.parse(bytes(corrupt))


@pytest.mark.parametrize("changes", [
    {"width": 0}, {"height": 0}, {"tile": 8}, {"tile": 40}, {"quality": 0}, {"bit_depth": 16},
])
def test_implausible_header_fields(small_scv, changes) -> None:
    with pytest.raises(CorruptFileError, match="implausible") as err:
        bitstream.parse(rebuild(small_scv, **changes))
    assert_one_line(err)


def _patch_header(data: bytes, offset: int, new: bytes) -> bytes:
    """Overwrite header bytes and re-seal the CRCs, so that only the change is wrong."""
    return repair_crcs(data[:offset] + new + data[offset + len(new) :])


def test_bad_model_names_and_colour_modes_are_implausible(small_scv) -> None:
    name_len = small_scv[11]
    bad_name = _patch_header(small_scv, 12, b"scvae\x07")  # a non-printable byte in the name
    bad_mode = _patch_header(small_scv, 29 + name_len, b"\x09")
    for data, match in ((bad_name, "model name"), (bad_mode, "colour mode")):
        with pytest.raises(CorruptFileError, match=match) as err:
            bitstream.parse(data)
        assert_one_line(err)


def test_quality_the_model_does_not_have(small_scv, model_file) -> None:
    missing = model_file.config.qualities + 1
    with pytest.raises(CorruptFileError, match=f"quality {missing}"):
        parse_symbols(rebuild(small_scv, quality=missing), model_file)


def test_tile_payload_not_whole_words(small_scv, model_file) -> None:
    c = bitstream.parse(small_scv)
    data = bitstream.pack(bitstream.Container(c.header, [c.tiles[0] + b"\x01"]))
    with pytest.raises(CorruptFileError, match="32-bit words"):
        parse_symbols(data, model_file)


def test_garbage_tile_payloads_are_detected_despite_valid_crcs(small_scv, model_file) -> None:
    """Random words, or the real words with one byte changed or the last word zeroed, inside
    valid CRCs: the ANS decoder must end exactly where the data does, so these are
    CorruptFileErrors naming the tile, never another exception. Three of the 30 allowed: a
    short stream can, by chance, decode to a valid code that ends exactly (an 8-byte random
    one did with the 0.4.2 weights; with format 3, that one and one of the 16 one-byte changes
    of this 16-byte stream; with the 0.5.1 weights, a 16-byte random one and two one-byte
    changes). What catches real damage is the chunk CRC."""
    c = bitstream.parse(small_scv)
    random_words = [bytes((seed * 37 + i * 101) % 256 for i in range(4 * (1 + seed))) for seed in range(10)]
    broken = [payload[:-4] + bytes(4) for payload in random_words[::3]]  # zero last word: invalid ANS data
    real = c.tiles[0]
    broken += [real[:i] + bytes([real[i] ^ 0x55]) + real[i + 1:] for i in range(len(real))]
    decoded = 0
    for payload in random_words + broken:
        try:
            parse_symbols(bitstream.pack(bitstream.Container(c.header, [payload])), model_file)
        except CorruptFileError as e:
            assert "tile 0" in str(e)
        else:
            decoded += 1
    assert decoded <= 3, f"{decoded} of {len(random_words + broken)} random or damaged payloads decoded"


# ---------------------------------------------------------------- limits and models


def test_pixel_limit(tiled_scv) -> None:
    pixels = 40 * 70
    assert bitstream.parse(tiled_scv, max_pixels=pixels).header.width == 70  # at the limit: fine
    with pytest.raises(LimitError, match=str(pixels)) as err:
        bitstream.parse(tiled_scv, max_pixels=pixels - 1)
    assert_one_line(err)


@pytest.mark.parametrize("tile", [bitstream.MAX_TILE + 16, 4096, 65520])
def test_tile_size_above_the_reader_limit_is_refused(small_scv, tile) -> None:
    """docs/format.md: a reader refuses a tile edge above MAX_TILE, whatever the image size
    (the tile, not only the pixel count, bounds a decoder's working memory)."""
    with pytest.raises(LimitError, match=f"tile size {tile} is above the reader limit of {bitstream.MAX_TILE}") as err:
        bitstream.parse(rebuild(small_scv, tile=tile))
    assert_one_line(err)


def test_tile_size_at_the_reader_limit_is_accepted(small_scv) -> None:
    assert bitstream.MAX_TILE % 16 == 0 and bitstream.MAX_TILE >= 1024, "the default tile must stay readable"
    assert bitstream.parse(rebuild(small_scv, tile=bitstream.MAX_TILE)).header.tile == bitstream.MAX_TILE


def test_huge_header_is_refused_before_anything_is_allocated(small_scv) -> None:
    with pytest.raises(LimitError):
        parse_symbols(rebuild(small_scv, width=2**32 - 1, height=2**32 - 1))


def test_unknown_model_name(small_scv) -> None:
    with pytest.raises(ModelMismatchError, match="'no-such-model'") as err:
        parse_symbols(rebuild(small_scv, model="no-such-model"))
    assert_one_line(err)


def test_wrong_weights_hash_names_the_model(small_scv) -> None:
    with pytest.raises(ModelMismatchError, match=DEFAULT_MODEL) as err:
        parse_symbols(rebuild(small_scv, weights_hash=bytes(8)))
    assert "0000000000000000" in str(err.value)
    assert_one_line(err)


def test_model_name_is_not_a_path(small_scv) -> None:
    """The name comes from an untrusted file: it must not reach outside the installed models
    (here '../weights/<default model>' would resolve to the real weights through the filesystem)."""
    name = f"../{WEIGHTS.parent.name}/{DEFAULT_MODEL}"
    with pytest.raises(ModelMismatchError):
        parse_symbols(rebuild(small_scv, model=name))


def test_unknown_entropy_coder_version_is_refused(small_scv, model_file) -> None:
    """docs/format.md: coder version 0.5; ANS output is only stable within it, so a file from
    another coder version must be refused, not decoded to garbage."""
    with pytest.raises(SCVError, match="coder"):
        parse_symbols(rebuild(small_scv, coder_version=(1, 0)), model_file)
