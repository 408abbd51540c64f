"""Models are data: safetensors weights + JSON sidecar, and the registry of shipped models.

A weights file holds the network parameters, the entropy tables the coder parses with
(computed once at export, never at load time) and, in its metadata, the model name and
architecture. Its SHA-256 (first 8 bytes) identifies it in every bitstream. The JSON sidecar
beside it holds what does not change a file's meaning: the training record, the measured RD
points, and the encoder's per-model settings (``EncoderSettings``).

A model file builds the two halves ``sccodec.api.Codec`` composes: the image model
(``ModelFile.network``: ONNX Runtime on the CPU from the graphs beside the weights, torch on a
GPU) and the symbol coder (``ModelFile.coder``). Nothing here imports torch.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as st_load_numpy

from sccodec.atom_pairs import PAIR_FILE_SUFFIX, PairTables, pair_file_path, read_pair_tables
from sccodec.block_classes import CLASS_FILE_SUFFIX, ClassTables, class_file_path, read_class_tables
from sccodec.curvature import CURVATURE_FILE_SUFFIX, Curvature, curvature_file_path, read_curvature
from sccodec.coder import ContextCoder
from sccodec.context import LEGACY_SCHEME
from sccodec.entropy import SymbolTables
from sccodec.errors import ModelMismatchError
from sccodec.model.config import Geometry, ModelConfig, geometry
from sccodec.model.interface import ImageModel

if TYPE_CHECKING:
    from torch import nn

DEFAULT_MODEL = "scvae-gdn"
TABLE_PREFIX = "tables."


@dataclass(frozen=True)
class Architecture:
    """A kind of network a weights file can hold: its torch class (``module:Class``, imported
    only to train, export or run on a GPU) and its geometry, known without building it."""

    torch_class: str
    geometry: Callable[[ModelConfig], Geometry]


#: Architecture name (a weights file's ``architecture`` metadata) -> how to build it. A new
#: transform adds its line here.
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({
    "scvae": Architecture("sccodec.model.scvae:SCVAE", geometry),
})
DEFAULT_ARCHITECTURE = "scvae"
T = TypeVar("T")


@dataclass(frozen=True)
class EncoderSettings:
    """Choices of the encoder alone, per model (sidecar key ``encoder``): files written with any
    settings decode the same, so they live beside the weights, not in the hashed file.

    ``default_quality``: the level used when none is asked for (None: ``sccodec.levels.DEFAULT_QUALITY``,
    capped to the model's levels). ``bits_weights``: per level, the rate-aware rounding's weight
    (``sccodec.rdo``); None, or a level past the end, keeps the fixed dead zone.
    """

    default_quality: int | None = None
    bits_weights: tuple[float | None, ...] = field(default=())

    @classmethod
    def from_sidecar(cls, sidecar: dict, source: Path) -> "EncoderSettings":
        raw = sidecar.get("encoder", {})
        try:
            quality, weights = raw.get("default_quality"), tuple(raw.get("bits_weights", ()))
            if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)):
                raise TypeError("default_quality is not an integer")
            if any(w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0)
                   for w in weights):
                raise TypeError("bits_weights holds something other than non-negative numbers and nulls")
        except (AttributeError, TypeError) as e:
            raise ModelMismatchError(f"cannot use the encoder settings in {source}: {e}") from None
        return cls(quality, tuple(None if w is None else float(w) for w in weights))


@dataclass(frozen=True)
class ModelFile:
    """A weights file read from disk: everything the decoder needs, nothing built yet."""

    name: str
    path: Path
    digest: bytes  # first 8 bytes of SHA-256 of the file
    config: ModelConfig
    tensors: dict[str, np.ndarray]
    context: str = LEGACY_SCHEME  # the coder's context scheme (sccodec.context.SCHEMES)
    encoder: EncoderSettings = EncoderSettings()
    architecture: str = DEFAULT_ARCHITECTURE  # a key of ARCHITECTURES

    @functools.cached_property
    def tables(self) -> SymbolTables:
        """Built once per file (a float64 copy: the coder's input type)."""
        try:
            arrays = {k[len(TABLE_PREFIX):]: v for k, v in self.tensors.items() if k.startswith(TABLE_PREFIX)}
            tables = SymbolTables.from_stored(arrays, self.config.groups, self.context)
        except (KeyError, ValueError) as e:  # e.g. a scheme from a newer sccodec
            raise ModelMismatchError(f"cannot use the tables of {self.path}: {e}") from None
        if (tables.qualities, tables.atoms) != (self.config.qualities, self.config.atoms):
            raise ModelMismatchError(f"cannot use the tables of {self.path}: they cover {tables.qualities} levels "
                                     f"and {tables.atoms} atoms, the model {self.config.qualities} and "
                                     f"{self.config.atoms}")
        return tables

    @property
    def kind(self) -> Architecture:
        try:
            return ARCHITECTURES[self.architecture]
        except KeyError:
            raise ModelMismatchError(f"{self.path} is a '{self.architecture}' model, which this sccodec does not "
                                     f"know (it knows {', '.join(ARCHITECTURES)})") from None

    @property
    def geometry(self) -> Geometry:
        """Stride and tile margins, without building anything (parsing needs the stride)."""
        return self.kind.geometry(self.config)

    @functools.cached_property
    def classes(self) -> ClassTables | None:
        """The block classes beside the weights (``NAME.classes.safetensors``), if there are any
        fitted for exactly these weights and tables: with them the coder writes format 6. A class
        file that cannot be read is an error; one fitted for other weights or tables is not used."""
        classes = _read_companion(class_file_path(self.path), read_class_tables, "class file")
        t = self.tables
        if classes is None or classes.model_digest != self.digest or t.signs is None or classes.fits(
                t.p_nonzero.shape, (*t.values.shape[:-1], t.value_range), t.signs.shape):
            return None
        return classes

    @functools.cached_property
    def pairs(self) -> PairTables | None:
        """The pair weights beside the weights (``NAME.pairs.safetensors``), if there are any fitted
        for exactly these weights, class file and tables: with them the coder writes format 7. A
        pair file that cannot be read is an error; one fitted for others is not used."""
        pairs = _read_companion(pair_file_path(self.path), read_pair_tables, "pair file")
        classes, t = self.classes, self.tables
        if (pairs is None or classes is None or pairs.model_digest != self.digest
                or pairs.classes_digest != classes.digest or pairs.fits(t.qualities, t.atoms, t.groups)):
            return None
        return pairs

    @functools.cached_property
    def curvature(self) -> Curvature | None:
        """The synthesis' curvature beside the weights (``NAME.curvature.safetensors``), if one was
        measured for exactly these weights: efforts 3 and 4 refine with it (``sccodec.refine``). A
        curvature file that cannot be read is an error; one measured for other weights is not used."""
        curvature = _read_companion(curvature_file_path(self.path), read_curvature, "curvature file")
        return curvature if curvature is not None and curvature.model_digest == self.digest else None

    @functools.cached_property
    def coder(self) -> ContextCoder:
        """The symbol coder that writes this model's files (``ContextCoder.reading`` for older formats)."""
        return ContextCoder.writing(self.tables, self.encoder.bits_weights, self.classes, self.pairs)

    def network(self, device: str = "cpu", threads: int | None = None) -> ImageModel:
        """The image model for ``device``: ``cpu`` runs the graphs beside the weights in ONNX
        Runtime (no torch); ``cuda``/``cuda:N`` runs the torch network there."""
        if device == "cpu":
            from sccodec.model.runtime import RuntimeModel

            return RuntimeModel(self.path, self.digest, self.config, threads)
        from sccodec.model.torch_model import TorchModel

        return TorchModel(self.build(), device)

    def build(self) -> "nn.Module":
        """The torch network with these weights, on the CPU (training, export, the reference)."""
        import torch

        module, _, name = self.kind.torch_class.partition(":")
        model = getattr(importlib.import_module(module), name)(self.config)
        state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in self.tensors.items()
                 if not k.startswith(TABLE_PREFIX)}
        model.load_state_dict(state)
        # channels_last: oneDNN's CPU convolutions run about a quarter faster on it
        return model.eval().to(memory_format=torch.channels_last)


def _read_companion(path: Path, read: Callable[[Path], T], what: str) -> T | None:
    """A file beside the weights (``sccodec.companion``) read by ``read``; None if there is none,
    ModelMismatchError naming it if it cannot be read."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except (OSError, SafetensorError, ValueError) as e:
        raise ModelMismatchError(f"{path} is not a usable {what}: {e}") from None


def shipped_dir() -> Path:
    return Path(str(resources.files("sccodec_weights")))


def available_models() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.safetensors")
                  if "@" not in p.stem and not p.name.endswith((CLASS_FILE_SUFFIX, PAIR_FILE_SUFFIX, CURVATURE_FILE_SUFFIX)))


def kept_version_path(name: str, digest: bytes, folder: Path | None = None) -> Path:
    """Where an earlier version of a model lives beside the current one: ``NAME@HASH.safetensors``.

    Why: a file names its model *and* weights hash, so retraining a model under the same name
    would strand every file coded with the old weights; ``sccodec export --force`` keeps the
    replaced weights here, and the decoder looks here for a hash the current file does not have.
    """
    return (folder or shipped_dir()) / f"{name}@{digest.hex()}.safetensors"


def shipped_config(name: str = DEFAULT_MODEL) -> ModelConfig:
    """A shipped model's architecture, from the file's header only (cheap: no tensors read)."""
    with safe_open(str(shipped_dir() / f"{name}.safetensors"), framework="numpy") as f:
        return ModelConfig.from_dict(json.loads(f.metadata()["config"]))


def read_model_file(path: str | Path) -> ModelFile:
    """A weights file and its sidecar (``.json`` beside it, if there is one); anything that is
    not a readable sccodec weights file raises ``ModelMismatchError`` naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        side_path = path.with_suffix(".json")
        sidecar = json.loads(side_path.read_text()) if side_path.is_file() else {}
        return _model_file(path, raw, meta, sidecar, side_path)
    except (OSError, SafetensorError, ValueError, KeyError, TypeError) as e:  # JSON errors are ValueErrors
        raise ModelMismatchError(f"{path} is not a usable sccodec weights file: {type(e).__name__}: {e}") from None


def _model_file(path: Path, raw: bytes, meta: dict, sidecar: dict, side_path: Path) -> ModelFile:
    return ModelFile(name=meta["name"], path=path, digest=hashlib.sha256(raw).digest()[:8],
                     config=ModelConfig.from_dict(json.loads(meta["config"])),
                     tensors=st_load_numpy(raw), context=meta.get("context", LEGACY_SCHEME),
                     encoder=EncoderSettings.from_sidecar(sidecar, side_path),
                     architecture=meta.get("architecture", DEFAULT_ARCHITECTURE))


MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # ASCII: it is written into every .scv header


def is_model_name(name: str) -> bool:
    return re.fullmatch(MODEL_NAME_PATTERN, name) is not None


def load_model_file(name: str = DEFAULT_MODEL, digest: bytes | None = None) -> ModelFile:
    """A shipped model by name; with ``digest``, insist on exactly those weights."""
    if not is_model_name(name):
        raise ModelMismatchError(f"model {name!r} is not installed (not a valid model name)")
    path = shipped_dir() / f"{name}.safetensors"
    kept = kept_version_path(name, digest) if digest is not None else None
    if kept is not None and kept.is_file():
        model_file = read_model_file(kept)
        if (model_file.name, model_file.digest) == (name, digest):
            return model_file
    if not path.is_file():
        have = ", ".join(available_models()) or "none"
        raise ModelMismatchError(f"model '{name}' is not installed (installed: {have})")
    model_file = read_model_file(path)
    if digest is not None and digest != model_file.digest:
        raise ModelMismatchError(
            f"file needs model '{name}' with weights hash {digest.hex()}, but the installed "
            f"'{name}' has hash {model_file.digest.hex()} (install the sccodec version that wrote it, "
            f"or put those weights in {shipped_dir()} as {kept.name})")
    return model_file
