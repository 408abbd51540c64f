"""Export a model: the weights file, its sidecar and the runtime's graphs, written atomically.

    SCVAE + tables ─safetensors (sorted header)─▶ NAME.safetensors ─sha256─▶ weights hash
                   ─sccodec.train.graphs─▶ NAME.analysis/code/synthesis[/gradient].onnx (bound to that hash)
                   ─▶ NAME.json (sidecar: config, hash, training record)
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

from sccodec import atomic
from sccodec.context import LEGACY_SCHEME
from sccodec.entropy import SymbolTables
from sccodec.train.graphs import export_graphs
from sccodec.model.runtime import has_graphs
from sccodec.model.scvae import SCVAE
from sccodec.atom_pairs import pair_file_path
from sccodec.block_classes import class_file_path
from sccodec.weights import TABLE_PREFIX, kept_version_path, read_model_file


def sorted_header(blob: bytes) -> bytes:
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
    """Copy the model at ``path`` (its weights, sidecar, block classes and graphs) to NAME@HASH
    before different weights replace it.

    Why: files coded with the old weights name its hash; kept there, they still decode
    (``load_model_file``). A copy, not a hard link: the runtime's graphs read the weights file as
    external data, and ONNX refuses data files with several links (a guard against link attacks).
    """
    try:
        old = read_model_file(path)
    except Exception:  # noqa: BLE001 (missing, or not a model: no file can have been coded with it)
        return None
    if old.digest == digest:
        return None
    kept = kept_version_path(old.name, old.digest, path.parent)
    for src, dst in ((path, kept), (path.with_suffix(".json"), kept.with_suffix(".json")),
                     (class_file_path(path), class_file_path(kept)), (pair_file_path(path), pair_file_path(kept))):
        if src.exists() and not dst.exists():
            shutil.copy2(src, dst)
    if has_graphs(path) and not has_graphs(kept):
        export_graphs(kept)  # its own graphs: the current ones read NAME.safetensors, about to change
    return kept


def is_transform_weight(key: str) -> bool:
    """A convolution kernel of g_a or g_s: most of the file, and the part that float16 storage
    barely changes (about 0.01 dB on a photo), unlike LISTA's matrices or the ladder."""
    return key.startswith(("g_a.", "g_s.")) and key.endswith(".weight")


def export(model: SCVAE, name: str, out_dir: str | Path, sidecar: dict,
           tables: SymbolTables | None = None, float16_transforms: bool = False) -> Exported:
    """Write ``<out_dir>/<name>.safetensors``, its runtime graphs and its ``.json`` sidecar,
    each atomically; the sidecar last, so a model with a sidecar is complete.

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
    blob = sorted_header(st_save(tensors, metadata=meta))
    digest = hashlib.sha256(blob).digest()[:8]
    kept = _keep_replaced(path, digest)
    atomic.write_bytes(path, blob)
    export_graphs(path)
    side = {"name": name, "weights_hash": digest.hex(), "config": model.config.to_dict(),
            "context": tables.context, **sidecar}
    side_path = path.with_suffix(".json")
    atomic.write_text(side_path, json.dumps(side, indent=2) + "\n")
    return Exported(path, digest, kept)
