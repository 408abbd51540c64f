"""Forward-adaptive block classes (.scv format 6): per block of B×B latent positions the encoder
picks one of C table classes and codes its choice; a class changes the model's tables by
factors that all atoms share.

    symbols ─contexts─▶ bits per (block, class) ─choose─▶ class map ─▶ coded before the symbols
    class c of level q, on the integer tables of format 5 (``sccodec.frequencies``):
        P(x != 0 | atom, flag context x)    odds × flag_scale[q, c, x] / 256
        magnitude row (atom, row r)         weights × magnitude_factor[q, c, r, |v|], normalised
        P(v > 0 | atom, sign context s)     odds × sign_scale[q, c, s] / 256
    class of a block: coded with class_frequencies[q, class of the block to its left]
                      (row C in a tile's first block column)

Why: the static tables average over the training photos, and one image holds flat sky and
dense texture side by side; the per-tile adaptation moves the whole tile at once. Classes let
the encoder say, block by block, which kind of region it is in. Factors shared by the atoms keep
the class file small (a weights file may not pass 20 MB); what they save is measured in
docs/design.md, "Block classes".

Everything the decoder computes here is integer arithmetic on integers stored in the class
file (docs/format.md, section 13); the float code lengths are the encoder's estimates only.
The class file lives beside the weights (``NAME.classes.safetensors``), names the weights it
was fitted for, and its own hash goes into every format-6 header.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save_numpy

from sccodec.companion import companion_path, read_companion
from sccodec.frequencies import PRECISION, TOTAL, IntegerTables, normalise, scale_odds_frequency

CLASS_FILE_SUFFIX = ".classes.safetensors"
SCALE_BITS = 8  # odds multipliers are k / 2^8
MAX_SCALE = 4095  # odds multipliers below 2^12: scale_odds_frequency's products stay below 2^63
FACTOR_SHIFT = 1  # (f − 1)·factor >> 1 stays below 2^39, as ``normalise`` needs
MAX_FACTOR = (1 << 16) - 1
#: the class file's arrays and their stored types
_ARRAYS = {"flag_scale": np.uint16, "sign_scale": np.uint16, "magnitude_factor": np.uint16,
           "class_frequencies": np.int32}


def factored_rows(f: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Magnitude rows f (..., R) (int64, each summing to 2^24) times per-entry factors in
    [1, 2^16): a_j = ((f_j − 1)·factor_j) >> 1, then ``normalise`` (each >= 1, summing to 2^24)."""
    return normalise(((np.asarray(f, dtype=np.int64) - 1) * np.asarray(factor, dtype=np.int64)) >> FACTOR_SHIFT)


@dataclass(frozen=True)
class LevelClasses:
    """The classes of one quality level, on that level's integer tables (``base``)."""

    base: IntegerTables  # (K, X) nonzero, (K, V, R) magnitudes, (K, S) positive
    flag_scale: np.ndarray  # (C, X)
    sign_scale: np.ndarray  # (C, S)
    magnitude_factor: np.ndarray  # (C, V, R)
    class_frequencies: np.ndarray  # (C + 1, C), rows summing to 2^24
    block: int

    @property
    def classes(self) -> int:
        return self.flag_scale.shape[0]

    def nonzero(self, f1: np.ndarray, cls: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """f(x != 0) of symbols with base frequencies f1, classes ``cls`` and flag contexts ``ctx``
        (gathered on flat indices, so both must lie in range: a context past the table's width
        would read the next class's row rather than raise)."""
        return scale_odds_frequency(f1, np.take(self.flag_scale, cls * self.flag_scale.shape[1] + ctx), SCALE_BITS)

    def positive(self, f1: np.ndarray, cls: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """f(v > 0) of values with base frequencies f1, classes ``cls`` and sign contexts ``ctx``."""
        return scale_odds_frequency(f1, self.sign_scale[cls, ctx], SCALE_BITS)

    @functools.cached_property
    def positive_table(self) -> np.ndarray:
        """(C·K, S): ``positive`` of every (class, atom, sign context), indexed by class·K + atom;
        built once per level (a few thousand entries), so coding gathers instead of rescaling."""
        c, s = self.sign_scale.shape
        f1 = self.positive(self.base.positive[None], np.arange(c)[:, None, None], np.arange(s)[None, None, :])
        return f1.reshape(-1, s)

    def magnitudes(self, rows: np.ndarray, cls: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Magnitude rows (n, R) of values with classes ``cls`` and value rows ``row``."""
        return factored_rows(rows, self.magnitude_factor[cls, row])

    def grid(self, h: int, w: int) -> tuple[int, int]:
        """(rows, columns) of blocks over an h × w latent tile."""
        return -(-h // self.block), -(-w // self.block)

    def position_classes(self, labels: np.ndarray, h: int, w: int) -> np.ndarray:
        """(h, w): each latent position's class, from the (rows, columns) class map."""
        return labels.repeat(self.block, 0).repeat(self.block, 1)[:h, :w]

    @functools.cached_property
    def _bits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encoder only: −log2 P of every outcome under every class, before the tile's
        adaptation: flags (K·X·2, C), magnitudes (K·V·R, C), signs (K·S·2, C), float32."""
        # one class at a time: a few MB of temporaries instead of a few hundred (a fresh process
        # pays for every new page it touches)
        base = self.base
        flags = np.empty((*base.nonzero.shape, 2, self.classes), dtype=np.float32)
        signs = np.empty((*base.positive.shape, 2, self.classes), dtype=np.float32)
        rows = np.empty((base.magnitudes.size, self.classes), dtype=np.float32)
        for c in range(self.classes):
            for out, f1 in ((flags, scale_odds_frequency(base.nonzero, self.flag_scale[c], SCALE_BITS)),
                            (signs, scale_odds_frequency(base.positive, self.sign_scale[c], SCALE_BITS))):
                out[..., 0, c] = PRECISION - np.log2(TOTAL - f1)
                out[..., 1, c] = PRECISION - np.log2(f1)
            rows[:, c] = PRECISION - np.log2(factored_rows(base.magnitudes, self.magnitude_factor[c]).ravel())
        return flags.reshape(-1, self.classes), rows, signs.reshape(-1, self.classes)

    def block_bits(self, symbols: np.ndarray, flag_ctx: np.ndarray, value_ctx: np.ndarray,
                   sign_contexts: int) -> np.ndarray:
        """(rows, columns, C): the ideal code length of each block's symbols under each class
        (escapes left out: they cost the same in every class). Encoder only."""
        flag_bits, magnitude_bits, sign_bits = self._bits
        k, h, w = symbols.shape
        x = self.base.nonzero.shape[-1]
        v, r = self.base.magnitudes.shape[-2:]
        nz = symbols != 0
        atom = np.arange(k, dtype=np.int64)[:, None, None]
        entries = ((atom * x + flag_ctx) * 2 + nz).reshape(k, -1)
        # (h·w, C), summed atom by atom into one buffer: a (K, h·w, C) gather would be tens of MB
        per_position = np.zeros((h * w, self.classes), dtype=np.float32)
        gathered = np.empty_like(per_position)
        for atom_entries in entries:
            per_position += np.take(flag_bits, atom_entries, axis=0, out=gathered)
        a, i = np.nonzero(nz.reshape(k, -1))
        values = symbols.reshape(k, -1)[a, i]
        vc = value_ctx.reshape(k, -1)[a, i]
        row = (a * v + vc // sign_contexts) * r + np.minimum(np.abs(values), r) - 1
        sign = (a * sign_contexts + vc % sign_contexts) * 2 + (values > 0)
        value_bits = magnitude_bits[row] + sign_bits[sign]  # (n, C)
        for c in range(self.classes):
            per_position[:, c] += np.bincount(i, weights=value_bits[:, c], minlength=h * w)
        rows, cols = self.grid(h, w)
        b = self.block
        padded = np.zeros((rows * b, cols * b, self.classes), dtype=np.float64)
        padded[:h, :w] = per_position.reshape(h, w, -1)
        return padded.reshape(rows, b, cols, b, -1).sum((1, 3))

    def choose(self, bits: np.ndarray) -> np.ndarray:
        """(rows, columns) class map of fewest bits, the class code included: column by column,
        each block given its left neighbour's choice (greedy; int64)."""
        side = (PRECISION - np.log2(self.class_frequencies)).astype(np.float64)  # (C + 1, C)
        rows, cols, c = bits.shape
        labels = np.zeros((rows, cols), dtype=np.int64)
        left = np.full(rows, c)
        for j in range(cols):
            labels[:, j] = (bits[:, j] + side[left]).argmin(1)
            left = labels[:, j]
        return labels

    def map_rows(self, left: np.ndarray) -> np.ndarray:
        """Integer frequency rows (n, C) of class symbols whose left blocks have classes ``left``
        (C: none)."""
        return self.class_frequencies[left]


@dataclass(frozen=True)
class ClassTables:
    """Block classes for one model file, every level: integer arrays read from a class file."""

    flag_scale: np.ndarray  # (Q, C, X) odds multipliers k / 256, 1 <= k <= MAX_SCALE
    sign_scale: np.ndarray  # (Q, C, S)
    magnitude_factor: np.ndarray  # (Q, C, V, R), 1 <= factor <= MAX_FACTOR
    class_frequencies: np.ndarray  # (Q, C + 1, C), rows summing to 2^24, each entry >= 1
    block: int  # block edge B in latent positions
    model_digest: bytes  # the weights file the classes were fitted for
    digest: bytes = b""  # first 8 bytes of SHA-256 of the class file (written into format-6 headers)

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.int64))
        if self.flag_scale.ndim != 3 or len(self.model_digest) != 8:
            raise ValueError(f"flag_scale has shape {self.flag_scale.shape} (not levels × classes × contexts) "
                             f"or the weights hash is not 8 bytes")
        q, c, x = self.flag_scale.shape
        problems = []
        if self.sign_scale.ndim != 3 or self.sign_scale.shape[:2] != (q, c):
            problems.append(f"sign_scale has shape {self.sign_scale.shape}")
        if self.magnitude_factor.ndim != 4 or self.magnitude_factor.shape[:2] != (q, c):
            problems.append(f"magnitude_factor has shape {self.magnitude_factor.shape}")
        if self.class_frequencies.shape != (q, c + 1, c):
            problems.append(f"class_frequencies has shape {self.class_frequencies.shape}, not {(q, c + 1, c)}")
        elif (self.class_frequencies < 1).any() or (self.class_frequencies.sum(-1) != TOTAL).any():
            problems.append("class_frequencies rows must be >= 1 and sum to 2^24")
        for name in ("flag_scale", "sign_scale"):
            a = getattr(self, name)
            if a.size and (a.min() < 1 or a.max() > MAX_SCALE):
                problems.append(f"{name} entries must lie in 1..{MAX_SCALE}")
        m = self.magnitude_factor
        if m.size and (m.min() < 1 or m.max() > MAX_FACTOR):
            problems.append(f"magnitude_factor entries must lie in 1..{MAX_FACTOR}")
        if not 1 <= self.block <= 64 or c < 2:
            problems.append(f"block {self.block} and {c} classes (need 1..64 and at least 2)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def classes(self) -> int:
        return self.flag_scale.shape[1]

    def fits(self, nonzero_shape: tuple[int, ...], magnitude_shape: tuple[int, ...],
             positive_shape: tuple[int, ...]) -> str | None:
        """Why these classes cannot act on tables of these (Q, K, ...) shapes, or None."""
        q, x, s = self.flag_scale.shape[0], self.flag_scale.shape[2], self.sign_scale.shape[2]
        want = ((q, x), (q, *self.magnitude_factor.shape[2:]), (q, s))
        have = ((nonzero_shape[0], nonzero_shape[-1]), (magnitude_shape[0], *magnitude_shape[-2:]),
                (positive_shape[0], positive_shape[-1]))
        return None if want == have else f"classes for (levels, contexts) {want}, tables {have}"

    def level(self, quality_index: int, base: IntegerTables) -> LevelClasses:
        """One level's classes on its integer tables (those of the weights the classes belong
        to: the level's are built once and kept)."""
        levels = self._levels
        if quality_index not in levels:
            q = quality_index
            levels[q] = LevelClasses(base, self.flag_scale[q], self.sign_scale[q], self.magnitude_factor[q],
                                     self.class_frequencies[q], self.block)
        return levels[quality_index]

    @functools.cached_property
    def _levels(self) -> dict[int, LevelClasses]:
        return {}

    def to_bytes(self) -> bytes:
        """The class file: safetensors of the int32/uint16 arrays, block and bound weights in the metadata."""
        arrays = {name: getattr(self, name).astype(dtype) for name, dtype in _ARRAYS.items()}
        return st_save_numpy(arrays, metadata={"block": str(self.block), "model_digest": self.model_digest.hex()})


def class_file_path(weights_path: Path) -> Path:
    """Where a weights file's classes live: ``NAME.classes.safetensors`` beside ``NAME.safetensors``."""
    return companion_path(weights_path, CLASS_FILE_SUFFIX)


def read_class_tables(path: Path) -> ClassTables:
    """A class file; ValueError (or OSError) naming what is wrong."""
    arrays, meta, raw = read_companion(path)
    missing = [n for n in _ARRAYS if n not in arrays]
    if missing or "block" not in meta or "model_digest" not in meta:
        raise ValueError(f"{path} is not a class file (missing {', '.join(missing) or 'metadata'})")
    wrong = [f"{n} is {arrays[n].dtype}, not {np.dtype(t)}" for n, t in _ARRAYS.items() if arrays[n].dtype != t]
    if wrong or not re.fullmatch("[0-9a-f]{16}", meta["model_digest"]) or not meta["block"].isdigit():
        raise ValueError(f"{path} is not a valid class file: {'; '.join(wrong) or 'bad metadata'}")
    return ClassTables(**{n: arrays[n] for n in _ARRAYS}, block=int(meta["block"]),
                       model_digest=bytes.fromhex(meta["model_digest"]),
                       digest=hashlib.sha256(raw).digest()[:8])
