"""Models are data: safetensors weights + JSON sidecar, and the registry of shipped models.

A weights file holds the network parameters, the entropy tables the coder parses with
(computed once at export, never at load time) and, in its metadata, the model name and
architecture. Its SHA-256 (first 8 bytes) identifies it in every bitstream. The JSON sidecar
beside it holds what does not change a file's meaning: the training record, the measured RD
points, and the encoder's per-model settings (``EncoderSettings``).

A model file builds the two halves ``sccodec.api.Codec`` composes: the image model
(``ModelFile.build``, by the architecture named in the file: ``ARCHITECTURES``) and the symbol
coder (``ModelFile.coder``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load as st_load_numpy
from safetensors.torch import save as st_save

from sccodec import atomic
from sccodec.coder import ContextCoder
from sccodec.context import LEGACY_SCHEME
from sccodec.entropy import SymbolTables
from sccodec.errors import ModelMismatchError
from sccodec.model.interface import ImageModel
from sccodec.model.scvae import SCVAE, ModelConfig

DEFAULT_MODEL = "scvae-gdn"
TABLE_PREFIX = "tables."
#: Architecture name (a weights file's ``architecture`` metadata) -> image model class; built
#: from the file's ``ModelConfig``. A new transform registers itself here.
ARCHITECTURES: Mapping[str, type[ImageModel]] = MappingProxyType({"scvae": SCVAE})
DEFAULT_ARCHITECTURE = "scvae"


@dataclass(frozen=True)
class EncoderSettings:
    """Choices of the encoder alone, per model (sidecar key ``encoder``): files written with any
    settings decode the same, so they live beside the weights, not in the hashed file.

    ``default_quality``: the level used when none is asked for (None: ``sccodec.api.DEFAULT_QUALITY``,
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

    def to_sidecar(self) -> dict:
        return {"default_quality": self.default_quality, "bits_weights": list(self.bits_weights)}


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
    def model_class(self) -> type[ImageModel]:
        """The image model's class: its geometry (stride, margins) without building it."""
        try:
            return ARCHITECTURES[self.architecture]
        except KeyError:
            raise ModelMismatchError(f"{self.path} is a '{self.architecture}' model, which this sccodec does not "
                                     f"know (it knows {', '.join(ARCHITECTURES)})") from None

    @functools.cached_property
    def coder(self) -> ContextCoder:
        """The symbol coder that writes this model's files (``ContextCoder.reading`` for older formats)."""
        return ContextCoder.writing(self.tables, self.encoder.bits_weights)

    def build(self, device: str | torch.device = "cpu") -> ImageModel:
        """Construct the network (only needed for pixels, not for parsing)."""
        model = self.model_class(self.config)
        state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in self.tensors.items()
                 if not k.startswith(TABLE_PREFIX)}
        model.load_state_dict(state)
        # channels_last: oneDNN's CPU convolutions run about a quarter faster on it (bench/speed.py)
        return model.eval().to(device, memory_format=torch.channels_last)


def shipped_dir() -> Path:
    return Path(str(resources.files("sccodec_weights")))


def available_models() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.safetensors") if "@" not in p.stem)


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
    """A weights file and its sidecar (``.json`` beside it, if there is one)."""
    path = Path(path)
    raw = path.read_bytes()
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    side_path = path.with_suffix(".json")
    sidecar = json.loads(side_path.read_text()) if side_path.is_file() else {}
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


def _sorted_header(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    Why: safetensors writes the header in hash-map order, which changes from process to
    process, so exporting the same weights twice gave two different files, hence two weights
    hashes, and files coded with one would not decode with the other. Offsets in the header are
    relative to the data, so only the header's length prefix changes (padded to 8 bytes, as
    safetensors pads it).
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


@dataclass(frozen=True)
class Exported:
    path: Path  # <out_dir>/<name>.safetensors
    digest: bytes  # its weights hash
    kept: Path | None  # where the different weights it replaced now live (NAME@HASH), if any


def _keep_replaced(path: Path, digest: bytes) -> Path | None:
    """Link the model at ``path`` (and its sidecar) to NAME@HASH before different weights replace it.

    Why: files coded with the old weights name its hash; kept there, they still decode
    (``load_model_file``). A link is enough: the export writes a new file and renames it.
    """
    try:
        old = read_model_file(path)
    except Exception:  # noqa: BLE001 (missing, or not a model: no file can have been coded with it)
        return None
    if old.digest == digest:
        return None
    kept = kept_version_path(old.name, old.digest, path.parent)
    for src, dst in ((path, kept), (path.with_suffix(".json"), kept.with_suffix(".json"))):
        if src.exists() and not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return kept


def is_transform_weight(key: str) -> bool:
    """A convolution kernel of g_a or g_s: most of the file, and the part that float16 storage
    barely changes (about 0.01 dB on a photo), unlike LISTA's matrices or the ladder."""
    return key.startswith(("g_a.", "g_s.")) and key.endswith(".weight")


def export(model: SCVAE, name: str, out_dir: str | Path, sidecar: dict,
           tables: SymbolTables | None = None, float16_transforms: bool = False) -> Exported:
    """Write ``<out_dir>/<name>.safetensors`` (+ ``.json`` sidecar) atomically.

    ``tables`` default to the model's parametric ones (checkerboard contexts). A model it
    replaces with different weights is kept as ``NAME@HASH`` (``_keep_replaced``).
    ``float16_transforms`` stores the transforms' kernels in float16 (``is_transform_weight``),
    which a bigger model needs to stay under the 20 MB budget; loading casts them back to float32.
    """
    if tables is None:
        p, v = model.entropy.tables(model.config.value_range)
        tables = SymbolTables(p.numpy(), v.numpy(), model.config.groups, LEGACY_SCHEME)
    tensors = {k: v.detach().to(torch.float16 if float16_transforms and is_transform_weight(k) else torch.float32)
                  .contiguous().cpu() for k, v in model.state_dict().items()}
    # float16: the richer context schemes' P(non-zero) tables are several times the
    # checkerboard's and in float32 would push a model past the 20 MB weights budget; with the
    # checkerboard tables, float16 changed not one coded word over 5 Kodak images at 10 levels
    for key, array in tables.stored().items():
        tensors[TABLE_PREFIX + key] = torch.from_numpy(np.ascontiguousarray(array)).half().contiguous()
    meta = {"name": name, "config": json.dumps(model.config.to_dict()), "format": "sccodec-weights-1",
            "context": tables.context}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    blob = _sorted_header(st_save(tensors, metadata=meta))
    digest = hashlib.sha256(blob).digest()[:8]
    kept = _keep_replaced(path, digest)
    atomic.write_bytes(path, blob)
    side = {"name": name, "weights_hash": digest.hex(), "config": model.config.to_dict(),
            "context": tables.context, **sidecar}
    side_path = path.with_suffix(".json")
    atomic.write_text(side_path, json.dumps(side, indent=2) + "\n")
    return Exported(path, digest, kept)
