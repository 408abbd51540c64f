"""Mutation fuzzing of the .scv decoder: every failure must be an SCVError, fast and bounded.

Seeds are small valid files (several sizes, qualities, multi-tile). Each case applies one
mutation: truncation, bit flips, random header bytes, random chunk lengths, dropped or
duplicated chunks, random bytes, concatenation. Half of the cases then repair every CRC, so
the damage reaches the entropy decoder and the model instead of stopping at the checksum.
"""
from __future__ import annotations

import random
import resource
import signal
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from sccodec.api import Codec
from sccodec.bitstream import CLASSES_FROM_VERSION, MAGIC, PAIRS_FROM_VERSION
from sccodec.errors import SCVError

CASE_TIMEOUT_S = 10


@dataclass
class FuzzReport:
    cases: int = 0
    scv_errors: int = 0
    decoded: int = 0  # mutated files that still decode (e.g. a flipped bit in a symbol)
    other_exceptions: list[str] = field(default_factory=list)
    hangs: int = 0
    slowest_s: float = 0.0
    slowest_mutation: str = ""
    peak_rss_mb: float = 0.0
    by_message: Counter = field(default_factory=Counter)


def make_seeds(codec: Codec) -> list[bytes]:
    rng = np.random.default_rng(0)
    seeds = []
    for (h, w), q, tile in (((16, 16), 1, 1024), ((33, 47), 4, 1024), ((40, 70), 8, 32), ((1, 1), 3, 1024)):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 4, yy * 5, (xx + yy) * 3], -1) % 256 + rng.integers(0, 20, (h, w, 3))
        seeds.append(codec.encode(img.clip(0, 255).astype(np.uint8), q, tile=tile))
    return seeds


def _chunks(data: bytes, start: int) -> list[tuple[int, int]]:
    """(offset, total length) of each well-formed chunk from ``start``."""
    out, pos = [], start
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos + 4)
        if pos + 12 + length > len(data):
            break
        out.append((pos, 12 + length))
        pos += 12 + length
    return out


def _header_len(data: bytes) -> int:
    hashes = 8 * ((data[8] >= CLASSES_FROM_VERSION) + (data[8] >= PAIRS_FROM_VERSION))
    return 12 + data[11] + 8 + 1 + 4 + 4 + 1 + 1 + 2 + hashes + 4


def repair_crcs(data: bytes) -> bytes:
    """Recompute the header and chunk CRCs so a mutation is not caught by the checksum."""
    if len(data) < 12 or data[:8] != MAGIC:
        return data
    hl = _header_len(data)
    if hl > len(data):
        return data
    buf = bytearray(data)
    buf[hl - 4 : hl] = struct.pack(">I", zlib.crc32(bytes(buf[: hl - 4])))
    for pos, total in _chunks(bytes(buf), hl):
        covered = bytes(buf[pos : pos + 4]) + bytes(buf[pos + 8 : pos + total - 4])  # type + payload
        buf[pos + total - 4 : pos + total] = struct.pack(">I", zlib.crc32(covered))
    return bytes(buf)


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> tuple[bytes, str]:
    kind = rng.choice(["truncate", "bitflip", "header", "length", "drop", "dup", "random", "concat", "splice"])
    buf = bytearray(data)
    hl = _header_len(data)
    if kind == "truncate":
        return bytes(buf[: rng.randrange(len(buf))]), kind
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == "header":
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(8, hl)] = rng.randrange(256)
    elif kind == "length":
        chunks = _chunks(data, hl)
        if chunks:
            pos, _ = rng.choice(chunks)
            buf[pos + 4 : pos + 8] = struct.pack(">I", rng.choice([0, 1, 3, 2**31, 2**32 - 1, rng.randrange(2**16)]))
    elif kind in ("drop", "dup"):
        chunks = _chunks(data, hl)
        if chunks:
            pos, total = rng.choice(chunks)
            piece = buf[pos : pos + total]
            buf[pos : pos + total] = b"" if kind == "drop" else piece + piece
    elif kind == "random":
        n = rng.randrange(0, 400)
        body = bytes(rng.randrange(256) for _ in range(n))
        return (MAGIC + body if rng.random() < 0.7 else body), kind
    elif kind == "concat":
        return bytes(buf) + rng.choice(seeds), kind
    elif kind == "splice":
        other = rng.choice(seeds)
        cut = rng.randrange(1, len(buf))
        return bytes(buf[:cut]) + other[rng.randrange(len(other)) :], kind
    return bytes(buf), kind


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise _Timeout()


def run_fuzz(codec: Codec, cases: int, seed: int = 0, progress=None) -> FuzzReport:
    """Decode ``cases`` mutated files with ``codec``; a non-SCVError exception is a finding."""
    rng = random.Random(seed)
    seeds = make_seeds(codec)
    report = FuzzReport()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(cases):
            data, kind = mutate(rng.choice(seeds), rng, seeds)
            if rng.random() < 0.5:
                data, kind = repair_crcs(data), kind + "+crc"
            t0 = time.perf_counter()
            signal.alarm(CASE_TIMEOUT_S)
            try:
                codec.decode_array(data)
                report.decoded += 1
            except SCVError as e:
                report.scv_errors += 1
                report.by_message[str(e).split(":")[0][:60]] += 1
            except _Timeout:
                report.hangs += 1
            except Exception as e:  # noqa: BLE001 - the point of fuzzing
                report.other_exceptions.append(f"{kind}: {type(e).__name__}: {e}"[:300])
            finally:
                signal.alarm(0)
            dt = time.perf_counter() - t0
            if dt > report.slowest_s:
                report.slowest_s, report.slowest_mutation = dt, kind
            report.cases += 1
            if progress is not None:
                progress(i)
    finally:
        signal.signal(signal.SIGALRM, old)
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report
