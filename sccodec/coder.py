"""The symbol coder: the seam between a model's symbols and a file's TILE chunks.

    encoder: real-valued s (K,h,w) ─quantize─▶ integer symbols ─encode_tile─▶ chunk bytes
    decoder: chunk bytes ─decode_tile─▶ integer symbols (no neural network)

``sccodec.api.Codec`` composes one coder with one image model (``sccodec.model.interface``).
``ContextCoder`` is the coder of every shipped model: static tables from the model file, integer
contexts (``sccodec.context``), per-tile adaptation (``sccodec.adaptation``), constriction's ANS
(``sccodec.entropy``) and the rate-aware rounding of ``sccodec.rdo``. A coder for another
entropy model implements ``SymbolCoder`` and is composed the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from sccodec import entropy, rdo
from sccodec.atom_pairs import PairTables
from sccodec.block_classes import ClassTables
from sccodec.entropy import CODER_VERSION, FORMATS, SymbolTables, newest_format
from sccodec.errors import CorruptFileError, FormatError, ModelMismatchError
from sccodec.levels import DEFAULT_EFFORT, EFFORTS


@runtime_checkable
class SymbolCoder(Protocol):
    """Integer symbols of one tile <-> the payload of its TILE chunk, at one quality level."""

    @property
    def format_version(self) -> int:
        """The .scv format version the coder writes (and the one it reads)."""

    @property
    def coder_version(self) -> tuple[int, int]:
        """The entropy coder's version, recorded in every header: its output is stable within it."""

    @property
    def classes_hash(self) -> bytes:
        """What else a header of ``format_version`` names: format 6's class file hash (else b"")."""

    @property
    def pairs_hash(self) -> bytes:
        """And format 7's pair file hash (else b"")."""

    @property
    def qualities(self) -> int:
        """How many quality levels the coder has tables for."""

    @property
    def atoms(self) -> int:
        """Symbol channels K per position."""

    def reading(self, version: int, coder_version: tuple[int, int], classes_hash: bytes = b"",
                pairs_hash: bytes = b"") -> "SymbolCoder":
        """This coder set to read a file of that format, coder version, class file and pair file
        hash; ``FormatError`` or ``ModelMismatchError`` if it cannot."""

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = DEFAULT_EFFORT) -> np.ndarray:
        """Real-valued symbols (K,h,w) -> the int32 symbols the encoder codes, choosing harder
        (slower, fewer bits) at higher ``effort`` (one of ``EFFORTS``)."""

    def encode_tile(self, symbols: np.ndarray, quality_index: int) -> bytes:
        """Integer symbols (K,h,w) -> payload."""

    def decode_tile(self, payload: bytes, quality_index: int, shape: tuple[int, int, int]) -> np.ndarray:
        """Payload -> integer symbols of ``shape``; damaged data raises ``CorruptFileError``."""


@dataclass(frozen=True)
class ContextCoder:
    """Context-modelled ANS over a model's static tables (``SymbolTables``).

    ``bits_weights``: per quality level, the rate-aware rounding's weight (``sccodec.rdo``); a
    level without one (None, or past the tuple's end) rounds with the fixed dead zone. Encoder
    only: files decode the same whatever the weights are. ``classes``: the model's block classes
    (``sccodec.block_classes``), which formats 6 and 7 need; without them the coder writes format 5.
    ``pairs``: the pair weights fitted with those classes (``sccodec.atom_pairs``), which format 7
    needs; without them the coder writes format 6.
    """

    tables: SymbolTables
    format_version: int
    bits_weights: tuple[float | None, ...] = ()
    classes: ClassTables | None = None
    pairs: PairTables | None = None

    def __post_init__(self) -> None:
        if FORMATS[self.format_version].classes and self.classes is None:
            raise ValueError(f"format {self.format_version} codes with block classes: the coder needs them")
        if FORMATS[self.format_version].pairs and self.pairs is None:
            raise ValueError(f"format {self.format_version} codes with pair weights: the coder needs them")
        unfit = None if self.pairs is None else self.pairs.fits(self.tables.qualities, self.tables.atoms,
                                                                 self.tables.groups)
        if unfit:
            raise ValueError(f"pair weights that do not fit the tables: {unfit}")

    @classmethod
    def writing(cls, tables: SymbolTables, bits_weights: tuple[float | None, ...] = (),
                classes: ClassTables | None = None, pairs: PairTables | None = None) -> "ContextCoder":
        """The coder that writes the newest format for the tables' context scheme (and classes
        and pairs, if any)."""
        version = newest_format(tables.context, classes is not None, pairs is not None)
        return cls(tables, version, tuple(bits_weights), classes, pairs)

    def reading(self, version: int, coder_version: tuple[int, int] = CODER_VERSION,
                classes_hash: bytes = b"", pairs_hash: bytes = b"") -> "ContextCoder":
        """This coder set to read a file of format ``version`` written by entropy coder
        ``coder_version`` (with the class file of hash ``classes_hash``, formats 6 and 7, and the
        pair file of hash ``pairs_hash``, format 7)."""
        if coder_version != CODER_VERSION:
            raise FormatError(f"file was written with entropy coder {coder_version[0]}.{coder_version[1]}; "
                              f"this sccodec reads {CODER_VERSION[0]}.{CODER_VERSION[1]}")
        if FORMATS[version].context != self.tables.context:
            raise FormatError(f".scv format {version} file ({FORMATS[version].context} contexts), but its model "
                              f"has {self.tables.context} tables (format {newest_format(self.tables.context)})")
        if FORMATS[version].classes and (self.classes is None or self.classes.digest != classes_hash):
            have = "none" if self.classes is None else f"hash {self.classes.digest.hex()}"
            raise ModelMismatchError(f"file needs its model's block classes with hash {classes_hash.hex()}, "
                                     f"but the installed model has {have}")
        if FORMATS[version].pairs and (self.pairs is None or self.pairs.digest != pairs_hash):
            have = "none" if self.pairs is None else f"hash {self.pairs.digest.hex()}"
            raise ModelMismatchError(f"file needs its model's pair weights with hash {pairs_hash.hex()}, "
                                     f"but the installed model has {have}")
        return self if version == self.format_version else replace(self, format_version=version)

    @property
    def coder_version(self) -> tuple[int, int]:
        return CODER_VERSION

    @property
    def classes_hash(self) -> bytes:
        return self.classes.digest if FORMATS[self.format_version].classes else b""

    @property
    def pairs_hash(self) -> bytes:
        return self.pairs.digest if FORMATS[self.format_version].pairs else b""

    @property
    def qualities(self) -> int:
        return self.tables.qualities

    @property
    def atoms(self) -> int:
        return self.tables.atoms

    @property
    def adaptive(self) -> bool:
        """Whether each tile starts with its table adaptation (``sccodec.adaptation``)."""
        return FORMATS[self.format_version].adaptive

    def bits_weight(self, quality_index: int) -> float | None:
        weights = self.bits_weights
        return weights[quality_index] if quality_index < len(weights) else None

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = DEFAULT_EFFORT) -> np.ndarray:
        """Effort 1: the fixed dead zone (no context pass). Effort 2 and up: rate-aware zeroing
        of ±1s (``sccodec.rdo.quantize``) at the levels the model's sidecar gives a weight; efforts
        3 and 4 then refine the result against the synthesis (``sccodec.refine``, in the codec)."""
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {EFFORTS}, got {effort!r}")
        return rdo.quantize(s, self.tables, quality_index, self.bits_weight(quality_index) if effort >= 2 else None)

    def encode_tile(self, symbols: np.ndarray, quality_index: int) -> bytes:
        coding = FORMATS[self.format_version]
        words = entropy.encode(symbols, self.tables, quality_index, coding.adaptive, coding.integer,
                               self._level_classes(quality_index), self._level_pairs(quality_index))
        return words.astype("<u4").tobytes()

    def _level_classes(self, quality_index: int):  # noqa: ANN202 (LevelClasses | None)
        if not FORMATS[self.format_version].classes:
            return None
        return self.classes.level(quality_index, self.tables.frequencies(quality_index))

    def _level_pairs(self, quality_index: int):  # noqa: ANN202 (LevelPairs | None)
        if not FORMATS[self.format_version].pairs:
            return None
        return self.pairs.level(quality_index)

    def decode_tile(self, payload: bytes, quality_index: int, shape: tuple[int, int, int]) -> np.ndarray:
        if len(payload) % 4:
            raise CorruptFileError("tile chunk length is not a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4")
        try:
            coding = FORMATS[self.format_version]
            return entropy.decode(words, self.tables, quality_index, shape, coding.adaptive, coding.integer,
                                  self._level_classes(quality_index), self._level_pairs(quality_index))
        except (ValueError, RuntimeError, IndexError) as e:
            raise CorruptFileError(f"cannot be entropy-decoded: {e}") from None
        except BaseException as e:
            # constriction's Rust panics reach Python as pyo3's PanicException, a BaseException
            if type(e).__name__ != "PanicException":
                raise
            raise CorruptFileError(f"cannot be entropy-decoded: the coder stopped ({e})") from None
