"""A search index over .scv files: their names and descriptors, nearest neighbours by distance.

    paths ─read_codes, describe─▶ names + (n, D) descriptors ─save─▶ index.npz ─load, query─▶ [Match]

The index is one .npz file holding plain arrays only (names as a Unicode array), so loading it
never unpickles anything (``np.load(allow_pickle=False)``). It records the model (name and
weights hash) the descriptors come from: descriptors of another model's files live in another
latent space and are refused rather than compared.

Search is exact (brute force) by scikit-learn's ``NearestNeighbors``, imported when a query
runs: with D = 320 a million images is 1.3 GB of float32 and a query one matrix-vector product,
so an approximate index (faiss and the like) would pay only beyond that.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sccodec import atomic
from sccodec.analysis.describe import describe
from sccodec.bitstream import DEFAULT_MAX_PIXELS
from sccodec.codes import Codes, read_codes
from sccodec.errors import FormatError, ModelMismatchError, ParameterError, SCVError

#: Written into every index file; an index without it (or with another) is not one of ours.
INDEX_FORMAT = "sccodec-index-1"


class Match(NamedTuple):
    """One search result: the indexed name and its Euclidean distance to the query (0 to 2)."""

    name: str
    distance: float


def model_key(codes: Codes) -> str:
    """``name@weights-hash`` of the model a file was coded with: what makes descriptors comparable."""
    return f"{codes.header.model}@{codes.header.weights_hash.hex()}"


@dataclass(frozen=True, eq=False)
class Index:
    """Names and their (n, D) float32 descriptors (``sccodec.analysis.describe``); ``model`` is the
    ``model_key`` of the files described, or "" where the descriptors came from elsewhere."""

    names: tuple[str, ...]
    descriptors: np.ndarray
    model: str = ""

    def __post_init__(self) -> None:
        d = self.descriptors
        if d.ndim != 2 or d.shape[0] != len(self.names) or d.shape[1] < 1:
            raise ParameterError(f"descriptors must be an (n, D) array for {len(self.names)} names, got {d.shape}")
        if not np.all(np.isfinite(d)):
            raise ParameterError("descriptors must be finite numbers")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_descriptors(cls, names: list[str], descriptors: np.ndarray, *, model: str = "") -> "Index":
        return cls(tuple(str(n) for n in names), np.asarray(descriptors, dtype=np.float32), model)

    @classmethod
    def build(cls, paths: Iterable[str | os.PathLike], *, on_error: Callable[[str, SCVError], None] | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> "Index":
        """Read and describe each file (named by its path as given).

        Without ``on_error`` the first file that cannot be read raises its ``SCVError``; with it,
        that file is passed to ``on_error(name, error)`` and left out. A file of another model than
        the first one read is such an error (``ModelMismatchError``)."""
        names: list[str] = []
        descriptors: list[np.ndarray] = []
        model = ""
        for path in paths:
            name = os.fspath(path)
            try:
                codes = read_codes(path, max_pixels=max_pixels)
                key = model_key(codes)
                if model and key != model:
                    raise ModelMismatchError(f"{name}: coded with model {key}, the index holds {model}")
                descriptors.append(describe(codes))
            except SCVError as e:
                if on_error is None:
                    raise
                on_error(name, e)
                continue
            model = key
            names.append(name)
        if not names:
            raise ParameterError("no file to index" if on_error is None else "no file could be indexed")
        return cls(tuple(names), np.stack(descriptors), model)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index as .npz, whole or not at all (``sccodec.atomic``)."""
        atomic.write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """The .npz file's bytes."""
        buf = io.BytesIO()
        np.savez(buf, format=np.array(INDEX_FORMAT), model=np.array(self.model),
                 names=np.array(self.names, dtype=str), descriptors=self.descriptors)
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Index":
        """Read an index written by ``save``; anything else raises a ``FormatError`` naming the file."""
        name = os.fspath(path)
        try:
            loaded = np.load(path, allow_pickle=False)
        except OSError as e:
            raise FormatError(f"cannot read {name}: {e.strerror or e}") from None
        except (ValueError, EOFError, zipfile.BadZipFile) as e:
            raise FormatError(f"{name}: not an sccodec index ({e})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise FormatError(f"{name}: not an sccodec index (a single array, not an .npz archive)")
        with loaded as npz:
            try:
                kind = npz["format"].item() if "format" in npz.files else None
                if kind != INDEX_FORMAT:
                    raise FormatError(f"{name}: not an sccodec index (format {kind!r}, expected {INDEX_FORMAT!r})")
                return cls(tuple(str(n) for n in npz["names"].tolist()), npz["descriptors"].astype(np.float32),
                           str(npz["model"].item()))
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
                raise FormatError(f"{name}: not a usable sccodec index ({type(e).__name__}: {e})") from None

    def query(self, query: Codes | np.ndarray, k: int = 10) -> list[Match]:
        """The ``k`` nearest entries (at most all of them) to a file's codes or a descriptor, nearest first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ParameterError(f"k must be a whole number >= 1, got {k!r}")
        if isinstance(query, Codes):
            if self.model and model_key(query) != self.model:
                raise ModelMismatchError(f"the query was coded with model {model_key(query)}, "
                                         f"the index holds {self.model}")
            query = describe(query)
        vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.descriptors.shape[1]:
            raise ParameterError(f"the query descriptor has {vector.shape[1]} numbers, the index's "
                                 f"{self.descriptors.shape[1]}")
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=min(k, len(self)), algorithm="brute", metric="euclidean")
        distances, rows = search.fit(self.descriptors).kneighbors(vector)
        return [Match(self.names[i], float(d)) for i, d in zip(rows[0], distances[0])]


def scv_files(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Files named, and the *.scv files under folders named (recursively, sorted), in order."""
    found: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            found += sorted(str(p) for p in Path(path).rglob("*.scv") if p.is_file())
        else:
            found.append(os.fspath(path))
    return found
