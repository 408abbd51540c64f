"""Cross-atom flag corrections (.scv format 7): which other atoms already fire at and around a
position changes how likely an atom is to fire there.

    decoded symbols ─▶ per (atom, position) an integer sum s of pair weights ─▶ bucket (s + 2) >> 2
        ─▶ odds factor[q, bucket] / 256 on the flag's frequency (after the block class)

The flag contexts of ``sccodec.context`` count how many atoms fire nearby and how strongly the
same atom fires at decoded neighbours, never *which* other atoms fire. But a sparse code explains
a patch with few atoms: one atom firing makes atoms that would explain the same structure less
likely at that place, and some pairs fire together. For atom k at a position, in 1/64 nat:

    s = bias[q, k] + Σ_k' centre[q, k, k'] · [x_k' ≠ 0 here, decoded before k]
                   + Σ_k' near[q, k, k'] · #(decoded neighbours at distance 1 where x_k' ≠ 0)
                   + Σ_k' far[q, k, k']  · #(decoded neighbours at distance 2 where x_k' ≠ 0)

"Decoded before": a neighbour counts when its phase comes earlier; at the position itself, the
atoms of earlier groups and, within the atom's own group, those of earlier *batches* of
``batch`` atoms (the decoder reads a step's flags batch by batch, so later batches see earlier
ones). The bucket of s is clamped to the factor table; its entry m gives the flag frequency
``scale_odds_frequency(f, m, SCALE_BITS)`` of the class-scaled f, before the tile's adaptation.

Every sum is of small integers, exact in float32 (|s| < 2^24 by construction of the limits
below), so BLAS computes it exactly in any order and the decoder involves no rounding
(docs/format.md, section 14). The weights are fitted per level on training photos
(``sccodec.train.atom_pairs``); the pair file lives beside the weights
(``NAME.pairs.safetensors``), names the weights and the class file it was fitted with, and its
hash goes into every format-7 header.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save_numpy

from sccodec.companion import companion_path, read_companion
from sccodec.context import _window_sum_at
from sccodec.frequencies import scale_odds_frequency

PAIR_FILE_SUFFIX = ".pairs.safetensors"
SCALE_BITS = 8  # bucket factors are m / 2^8
MAX_SCALE = 4095  # as the block classes' odds multipliers: scale_odds_frequency stays below 2^63
BUCKET_SHIFT = 2  # sums in 1/64 nat -> buckets of 1/16 nat, rounded half up (a zero sum is bucket 0)
#: |weight| and |bias| limits: every sum stays below 2^24 in magnitude (2047·(1 + 8 + 16)·K + bias
#: for K <= 256), so float32 holds every partial sum exactly
MAX_WEIGHT = 2047
MAX_BIAS = 32767
MAX_LOWEST = 1 << 20  # |the first factor's bucket|
#: the neighbours each pair matrix reads: distance 1 (8 positions) and distance 2 (16 positions)
NEAR = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
FAR = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2)
#: the pair file's arrays and their stored types
_ARRAYS = {"centre": np.int16, "near": np.int16, "far": np.int16, "bias": np.int16, "factor": np.uint16}


@dataclass(frozen=True)
class LevelPairs:
    """One level's pair weights as exact float32 matrices, and the bucket factors."""

    centre: np.ndarray  # (K, K) float32; centre[k, k'] zero unless k' is decoded before k
    near: np.ndarray  # (K, K) float32
    far: np.ndarray  # (K, K) float32
    bias: np.ndarray  # (K,) float32
    factor: np.ndarray  # (B,) int64
    lowest: int  # bucket of factor[0]
    batch: int

    def ring_sums(self, nonzero: np.ndarray, decoded: np.ndarray, lattice: tuple[int, int, int]) -> np.ndarray:
        """(K, n): bias + the neighbours' pair terms for every atom at the n positions of a phase's
        lattice, from the atoms firing at decoded positions (``nonzero`` (K, h, w) bool,
        ``decoded`` (h, w) bool: the positions of earlier phases). Only atoms that fire at some
        decoded position enter the products (few at low rates)."""
        fired = nonzero & decoded
        some = np.flatnonzero(fired.any((1, 2)))
        lattice_rows, lattice_cols = (len(range(start, size, lattice[2])) for start, size in
                                      zip(lattice[:2], fired.shape[1:]))
        sums = np.repeat(self.bias[:, None], lattice_rows * lattice_cols, axis=1)
        for weights, ring in ((self.near, NEAR), (self.far, FAR)):
            counts = _window_sum_at(fired[some], ring, lattice)
            if counts.any():
                sums += weights[:, some] @ counts.astype(np.float32)
        return sums

    @staticmethod
    def indicators(fired: np.ndarray) -> np.ndarray:
        """Which atoms fire (bool) as the float32 0/1 that ``factors`` multiplies exactly."""
        return fired.astype(np.float32)

    def factors(self, ring: np.ndarray, fired_here: np.ndarray, atoms: slice) -> np.ndarray:
        """(atoms, n) odds factors for the flags of a run of ``atoms`` (a batch, or the encoder's
        whole group) at a phase's n positions. ``ring``: ``ring_sums`` of the phase;
        ``fired_here`` (K, n) float32, 1 where an atom fires: only atoms decoded before each
        atom's batch are read (the masked centre is zero elsewhere, so the product leaves out the
        atoms from the run's last batch on: exact, as every partial sum is an integer below 2^24)."""
        earlier = (atoms.stop - 1) // self.batch * self.batch
        s = ring[atoms] + self.centre[atoms, :earlier] @ fired_here[:earlier]
        bucket = s.astype(np.int64)
        bucket += 1 << (BUCKET_SHIFT - 1)
        bucket >>= BUCKET_SHIFT
        bucket -= self.lowest
        return np.take(self.factor, bucket, mode="clip")  # buckets past either end take the end's factor

    def flag_frequencies(self, f1: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """f(x != 0) of flags with class-scaled frequencies f1, changed by their pair factors."""
        return scale_odds_frequency(f1, factors, SCALE_BITS)


@dataclass(frozen=True)
class PairTables:
    """Pair weights for one model file, every level: integer arrays read from a pair file."""

    centre: np.ndarray  # (Q, K, K), 1/64 nat, |entry| <= MAX_WEIGHT
    near: np.ndarray  # (Q, K, K)
    far: np.ndarray  # (Q, K, K)
    bias: np.ndarray  # (Q, K) int16
    factor: np.ndarray  # (Q, B) odds multipliers m / 256, 1 <= m <= MAX_SCALE
    lowest: int  # the bucket of factor[:, 0]
    batch: int  # atoms per batch within a group
    model_digest: bytes  # the weights file the pairs were fitted for
    classes_digest: bytes  # and its class file
    digest: bytes = b""  # first 8 bytes of SHA-256 of the pair file (written into format-7 headers)

    def __post_init__(self) -> None:
        for name in _ARRAYS:  # integers as given (the file's int16 stay int16: 4 MB, not 16)
            a = np.asarray(getattr(self, name))
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name} must hold integers, not {a.dtype}")
            object.__setattr__(self, name, np.asarray(a, dtype=np.int64) if name == "factor" else a)
        q, k = self.bias.shape if self.bias.ndim == 2 else (0, 0)
        problems = []
        if self.bias.ndim != 2:
            problems.append(f"bias has shape {self.bias.shape}, not (levels, atoms)")
        for name in ("centre", "near", "far"):
            a = getattr(self, name)
            if a.shape != (q, k, k):
                problems.append(f"{name} has shape {a.shape}, not {(q, k, k)}")
            elif a.size and (a.min() < -MAX_WEIGHT or a.max() > MAX_WEIGHT):
                problems.append(f"{name} entries must lie in -{MAX_WEIGHT}..{MAX_WEIGHT}")
        if k > 256:
            problems.append(f"{k} atoms: pair sums are exact for at most 256")
        if self.factor.ndim != 2 or self.factor.shape[0] != q or self.factor.shape[1] < 1:
            problems.append(f"factor has shape {self.factor.shape}, not ({q}, buckets)")
        elif self.factor.min() < 1 or self.factor.max() > MAX_SCALE:
            problems.append(f"factor entries must lie in 1..{MAX_SCALE}")
        if self.bias.size and (self.bias.min() < -MAX_BIAS or self.bias.max() > MAX_BIAS):
            problems.append(f"bias entries must lie in -{MAX_BIAS}..{MAX_BIAS}")
        if abs(self.lowest) > MAX_LOWEST:
            problems.append(f"lowest bucket {self.lowest} outside -{MAX_LOWEST}..{MAX_LOWEST}")
        if self.batch < 1:
            problems.append(f"batch {self.batch} (need at least 1)")
        if len(self.model_digest) != 8 or len(self.classes_digest) != 8:
            problems.append("the weights and class file hashes must be 8 bytes")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def atoms(self) -> int:
        return self.bias.shape[1]

    def fits(self, levels: int, atoms: int, groups: int) -> str | None:
        """Why these pairs cannot code symbols of this many levels, atoms and groups, or None."""
        if self.bias.shape != (levels, atoms):
            return f"pairs for (levels, atoms) {self.bias.shape}, tables {(levels, atoms)}"
        if atoms % groups or (atoms // groups) % self.batch:
            return f"batches of {self.batch} atoms do not divide groups of {atoms // groups}"
        return None

    def level(self, quality_index: int) -> LevelPairs:
        """One level's weights as float32 matrices, the centre masked to atoms decoded earlier
        (built once per level and kept)."""
        levels = self._levels
        if quality_index not in levels:
            q, k = quality_index, self.atoms
            index = np.arange(k)
            order = index // self.batch  # batches are consecutive atoms, in coding order across groups
            earlier = order[None, :] < order[:, None]
            levels[q] = LevelPairs(np.where(earlier, self.centre[q], 0).astype(np.float32),
                                   self.near[q].astype(np.float32), self.far[q].astype(np.float32),
                                   self.bias[q].astype(np.float32), self.factor[q], self.lowest, self.batch)
        return levels[quality_index]

    @functools.cached_property
    def _levels(self) -> dict[int, LevelPairs]:
        return {}

    def to_bytes(self) -> bytes:
        """The pair file: safetensors of the integer arrays; batch, lowest bucket and the hashes
        of the weights and class file in the metadata."""
        arrays = {name: getattr(self, name).astype(dtype) for name, dtype in _ARRAYS.items()}
        return st_save_numpy(arrays, metadata={"batch": str(self.batch), "lowest": str(self.lowest),
                                               "model_digest": self.model_digest.hex(),
                                               "classes_digest": self.classes_digest.hex()})


@contextlib.contextmanager
def products_on_one_thread(needed: bool = True) -> Iterator[None]:
    """The pair sums are many small matrix products (a few per coding step). OpenBLAS spreads each
    over every core, and beside the other tiles' threads it then waits more than it computes (a
    tile's parse took 10× as long with another process busy), so while an image is coded with
    pairs they run on one thread. The BLAS thread count is the process's: this sets it and
    restores it in the calling thread (OpenBLAS ignored a restore from a worker thread), around
    the whole image, whose tiles the workers then code. Without threadpoolctl nothing is limited
    (only speed depends on it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        needed = False
    if not needed:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def pair_file_path(weights_path: Path) -> Path:
    """Where a weights file's pairs live: ``NAME.pairs.safetensors`` beside ``NAME.safetensors``."""
    return companion_path(weights_path, PAIR_FILE_SUFFIX)


def read_pair_tables(path: Path) -> PairTables:
    """A pair file; ValueError (or OSError) naming what is wrong."""
    arrays, meta, raw = read_companion(path)
    missing = [n for n in _ARRAYS if n not in arrays]
    keys = ("batch", "lowest", "model_digest", "classes_digest")
    if missing or any(key not in meta for key in keys):
        raise ValueError(f"{path} is not a pair file (missing {', '.join(missing) or 'metadata'})")
    wrong = [f"{n} is {arrays[n].dtype}, not {np.dtype(t)}" for n, t in _ARRAYS.items() if arrays[n].dtype != t]
    if (wrong or not all(re.fullmatch("[0-9a-fA-F]{16}", meta[key]) for key in keys[2:])
            or not re.fullmatch("[0-9]{1,7}", meta["batch"]) or not re.fullmatch("-?[0-9]{1,7}", meta["lowest"])):
        raise ValueError(f"{path} is not a valid pair file: {'; '.join(wrong) or 'bad metadata'}")
    return PairTables(**{n: arrays[n] for n in _ARRAYS}, lowest=int(meta["lowest"]), batch=int(meta["batch"]),
                      model_digest=bytes.fromhex(meta["model_digest"]),
                      classes_digest=bytes.fromhex(meta["classes_digest"]),
                      digest=hashlib.sha256(raw).digest()[:8])
