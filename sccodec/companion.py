"""Files that live beside a weights file, ``NAME.<kind>.safetensors``: what a model needs besides
its weights, kept apart because it is fitted or measured after the export (the block classes,
the synthesis' curvature). Each names the weights it belongs to by their hash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load as st_load_numpy


def companion_path(weights_path: Path, suffix: str) -> Path:
    """``NAME<suffix>`` beside ``NAME.safetensors``."""
    return weights_path.with_name(weights_path.name.removesuffix(".safetensors") + suffix)


def read_companion(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], bytes]:
    """A companion file's arrays, its metadata and its raw bytes (which some files hash)."""
    raw = Path(path).read_bytes()
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    return st_load_numpy(raw), meta, raw
