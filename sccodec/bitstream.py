"""The .scv container (format versions 1 to 6): header dataclass, typed chunks with CRC32, strict parsing.

    header (fixed fields + CRC32) │ chunk │ chunk │ …      chunk = type(4) len(4) payload crc(4)

Every field is validated before anything is allocated from it; every failure raises an
``SCVError`` subclass with a one-line message. The byte-level spec is docs/format.md.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from sccodec.errors import CorruptFileError, FormatError, LimitError

MAGIC = b"\x89SCV\r\n\x1a\n"
# The versions differ only in how TILE payloads are entropy-coded: 1 with the checkerboard
# contexts, 2 with the quad ones (sccodec.context), 3 with the quad ones adapted per tile
# (sccodec.adaptation), 4 with the nested ones adapted per tile, 5 as 4 with integer
# frequencies (sccodec.frequencies), 6 as 5 with block classes (sccodec.block_classes), whose
# file's hash the version-6 header adds, 7 as 6 with pair weights (sccodec.atom_pairs), whose
# file's hash the version-7 header adds after it; sccodec.entropy.FORMATS has the table. A
# model's tables fix the scheme (and its class and pair files whether it can write 6 or 7), so
# the writer takes the newest version it can.
FORMAT_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
CLASSES_FROM_VERSION = 6  # headers from this version on carry the class file's hash
PAIRS_FROM_VERSION = 7  # and from this one on also the pair file's
FORMAT_VERSION = FORMAT_VERSIONS[-1]
DEFAULT_MAX_PIXELS = 1 << 27  # ~134 Mpx; raise on purpose with max_pixels / --max-pixels
# Reader limit on the header's tile edge (pixels). A decoder entropy-decodes a tile as one
# stream, so the tile size, not only the pixel count, bounds its working memory: without a
# limit a file of under 100 bytes could claim one 11585x11585 tile (within the default pixel
# limit). Writers accept 16..MAX_TILE (Codec.encode(tile=...)); the default tile is 1024, and
# 2048 is the largest a decoder synthesising whole tiles handles in about 2 GB. Not adjustable
# at run time; a file with a larger tile is refused with a LimitError.
MAX_TILE = 2048
MODE_CODES = {"RGB": 0, "L": 1}
TILE = b"TILE"
ICC_CHUNK = b"iCCP"  # ancillary chunk carrying the original's ICC profile unchanged

_FIXED = struct.Struct(">8sBBBB")  # magic, version, coder major, coder minor, name length
_FIELDS = struct.Struct(">8sBIIBBH")  # hash, quality, width, height, mode, bit depth, tile
_CLASSES_HASH = struct.Struct(">8s")  # version 6 on: first 8 bytes of the class file's SHA-256
_PAIRS_HASH = struct.Struct(">8s")  # version 7 on: first 8 bytes of the pair file's SHA-256
_CHUNK_HEAD = struct.Struct(">4sI")
_CRC = struct.Struct(">I")


@dataclass(frozen=True)
class Header:
    model: str  # model name, ASCII, 1..64 chars
    weights_hash: bytes  # first 8 bytes of the SHA-256 of the weights file
    quality: int  # 1..255 (the model says which are valid)
    width: int
    height: int
    mode: str = "RGB"  # colour mode of the original: "RGB" or "L"
    bit_depth: int = 8
    tile: int = 1024  # tile edge in pixels, a multiple of 16, at most MAX_TILE
    coder_version: tuple[int, int] = (0, 5)
    version: int = FORMAT_VERSION
    classes_hash: bytes = b""  # version 6 on: first 8 bytes of the SHA-256 of the model's class file
    pairs_hash: bytes = b""  # version 7 on: first 8 bytes of the SHA-256 of the model's pair file

    def __post_init__(self) -> None:
        for digest, first, what in ((self.classes_hash, CLASSES_FROM_VERSION, "class file"),
                                    (self.pairs_hash, PAIRS_FROM_VERSION, "pair file")):
            if (len(digest) == 8) != (self.version >= first):
                raise ValueError(f"a version-{self.version} header "
                                 f"{'needs' if self.version >= first else 'has no'} {what} hash")

    @property
    def tile_grid(self) -> tuple[int, int]:
        """(rows, columns) of tiles, raster order in the file."""
        return -(-self.height // self.tile), -(-self.width // self.tile)

    @property
    def num_tiles(self) -> int:
        rows, cols = self.tile_grid
        return rows * cols

    def pack(self) -> bytes:
        name = self.model.encode("ascii")
        body = (_FIXED.pack(MAGIC, self.version, *self.coder_version, len(name)) + name
                + _FIELDS.pack(self.weights_hash, self.quality, self.width, self.height,
                               MODE_CODES[self.mode], self.bit_depth, self.tile)
                + (_CLASSES_HASH.pack(self.classes_hash) if self.version >= CLASSES_FROM_VERSION else b"")
                + (_PAIRS_HASH.pack(self.pairs_hash) if self.version >= PAIRS_FROM_VERSION else b""))
        return body + _CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class Container:
    header: Header
    tiles: list[bytes]
    ancillary: dict[bytes, bytes] = field(default_factory=dict)  # e.g. b"iCCP" -> profile


def pack_chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(payload)) + payload + _CRC.pack(zlib.crc32(kind + payload))


def pack(container: Container) -> bytes:
    parts = [container.header.pack()]
    parts += [pack_chunk(k, v) for k, v in container.ancillary.items()]
    parts += [pack_chunk(TILE, t) for t in container.tiles]
    return b"".join(parts)


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise CorruptFileError(f"truncated file: {what} needs {n} bytes at offset {pos}, "
                               f"only {max(0, len(data) - pos)} left")


def chunk_name(kind: bytes) -> str:
    """A chunk type as plain text for messages (``TILE``, not ``b'TILE'``); bytes that are not
    printable ASCII are shown as ``\\xNN``."""
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in kind)


def parse_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, int]:
    """Validate and return the header and the offset of the first chunk."""
    if not data:
        raise FormatError("not an .scv file (it is empty: 0 bytes)")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not an .scv file (bad magic bytes)")
    _need(data, 0, _FIXED.size, "header")
    _, version, cmaj, cmin, name_len = _FIXED.unpack_from(data, 0)
    if version not in FORMAT_VERSIONS:
        raise FormatError(f"unsupported .scv format version {version} (this sccodec reads "
                          f"{', '.join(map(str, FORMAT_VERSIONS))})")
    pos = _FIXED.size
    classes_size = _CLASSES_HASH.size if version >= CLASSES_FROM_VERSION else 0
    pairs_size = _PAIRS_HASH.size if version >= PAIRS_FROM_VERSION else 0
    _need(data, pos, name_len + _FIELDS.size + classes_size + pairs_size + _CRC.size, "header")
    name = data[pos : pos + name_len]
    pos += name_len
    digest, quality, width, height, mode, depth, tile = _FIELDS.unpack_from(data, pos)
    pos += _FIELDS.size
    classes_hash = data[pos : pos + classes_size]
    pos += classes_size
    pairs_hash = data[pos : pos + pairs_size]
    pos += pairs_size
    (crc,) = _CRC.unpack_from(data, pos)
    if zlib.crc32(data[:pos]) != crc:
        raise CorruptFileError("header CRC mismatch (file is corrupted)")
    pos += _CRC.size
    if not (1 <= name_len <= 64) or not name.isascii() or not name.decode("ascii").isprintable():
        raise CorruptFileError("implausible header: bad model name")
    modes = {v: k for k, v in MODE_CODES.items()}
    if mode not in modes or depth != 8:
        raise CorruptFileError(f"implausible header: colour mode {mode}, bit depth {depth}")
    if width < 1 or height < 1 or tile < 16 or tile % 16 or quality < 1:
        raise CorruptFileError(f"implausible header: size {width}x{height}, tile {tile}, quality {quality}")
    if tile > MAX_TILE:
        raise LimitError(f"tile size {tile} is above the reader limit of {MAX_TILE} pixels "
                         f"(sccodec writes tiles of 16 to {MAX_TILE})")
    if width * height > max_pixels:
        raise LimitError(f"image is {width}x{height} = {width * height} pixels, above the limit of "
                         f"{max_pixels} (raise it with --max-pixels / max_pixels= if you trust the file)")
    header = Header(model=name.decode("ascii"), weights_hash=digest, quality=quality, width=width,
                    height=height, mode=modes[mode], bit_depth=depth, tile=tile,
                    coder_version=(cmaj, cmin), version=version, classes_hash=classes_hash,
                    pairs_hash=pairs_hash)
    return header, pos


def parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
    header, pos = parse_header(data, max_pixels)
    tiles: list[bytes] = []
    ancillary: dict[bytes, bytes] = {}
    while pos < len(data):
        _need(data, pos, _CHUNK_HEAD.size, "chunk header")
        kind, length = _CHUNK_HEAD.unpack_from(data, pos)
        pos += _CHUNK_HEAD.size
        _need(data, pos, length + _CRC.size, f"chunk {chunk_name(kind)}")
        payload = data[pos : pos + length]
        (crc,) = _CRC.unpack_from(data, pos + length)
        if zlib.crc32(kind + payload) != crc:
            raise CorruptFileError(f"CRC mismatch in chunk {len(tiles) + len(ancillary)} ({chunk_name(kind)})")
        pos += length + _CRC.size
        if kind == TILE:
            if len(tiles) == header.num_tiles:
                raise CorruptFileError(f"more tile chunks than the {header.num_tiles} the header announces")
            tiles.append(payload)
        elif kind[:1].islower() and kind.isalpha():
            ancillary[kind] = payload  # ancillary (PNG convention): safe to ignore if unknown
        else:
            raise CorruptFileError(f"unknown critical chunk type {chunk_name(kind)}")
    if len(tiles) != header.num_tiles:
        raise CorruptFileError(f"truncated file: {len(tiles)} of {header.num_tiles} tile chunks present")
    return Container(header, tiles, ancillary)
