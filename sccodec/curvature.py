"""The synthesis' curvature: how the squared pixel error bends as the symbols move, without
running the synthesis.

    moves Δ (K,h,w) ─A_q─▶ latent change Δŷ (M,h,w) ─Σ_d M(d)ᵀ·shift_d─▶ ─2·A_qᵀ─▶ gradient change (K,h,w)
    A_q = inv_gain_q · D̂ · step_q      (the linear part of the synthesis' input: ŷ = A_q · symbols)
    M(d) = E[J_pᵀ J_{p+d}]              (3×3 offsets d, M×M: the Gauss–Newton matrix of the
                                         squared error in ŷ, measured on training photos)

Why: the refinement of efforts 3 and 4 (``sccodec.refine``) steers by the gradient of the squared
pixel error, and one gradient costs a forward and a backward pass of the synthesis. After it
has moved some values, the gradient at the new symbols is, to second order, the old one plus the
curvature times the moves. Measured once per model, the curvature makes each further pass cost a
few small matrix products instead of a trip through the synthesis; its diagonal is each atom's
image-space energy per step, the refinement's second-order term.

``M(d)`` lives beside the weights (``NAME.curvature.safetensors``), names the weights it was
measured for, and is measured by ``bench/curvature.py`` (atom responses decoded at three levels,
projected onto ŷ: one matrix serves every level, as the levels share the synthesis). Encoder
only: decoding never reads it, so it is not part of the weights hash.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save_numpy

from sccodec.companion import companion_path, read_companion

CURVATURE_FILE_SUFFIX = ".curvature.safetensors"
REACH = 1  # offsets d in -REACH..REACH latent positions: beyond, responses hardly overlap


@dataclass(frozen=True)
class Curvature:
    """``kernel`` (2·REACH+1, 2·REACH+1, M, M) float32: ``kernel[REACH + di, REACH + dj]`` is M(d)
    for d = (di, dj); ``model_digest``: the weights it was measured for (how it was measured is
    in the model's sidecar, key ``curvature``)."""

    kernel: np.ndarray
    model_digest: bytes

    def __post_init__(self) -> None:
        k = np.ascontiguousarray(self.kernel, dtype=np.float32)
        side = 2 * REACH + 1
        if k.ndim != 4 or k.shape[:2] != (side, side) or k.shape[2] != k.shape[3] or not np.isfinite(k).all():
            raise ValueError(f"curvature kernel has shape {k.shape} (not {side}×{side}×M×M) or is not finite")
        if len(self.model_digest) != 8:
            raise ValueError("the weights hash is not 8 bytes")
        object.__setattr__(self, "kernel", k)

    def to_bytes(self) -> bytes:
        return st_save_numpy({"kernel": self.kernel}, metadata={"model_digest": self.model_digest.hex()})

    def at_level(self, tensors: dict[str, np.ndarray], quality_index: int) -> "CodeCurvature":
        """The curvature in the symbols of one level, from the weights ``tensors`` of the model."""
        a = latent_atoms(tensors, quality_index)
        if a.shape[0] != self.kernel.shape[2]:
            raise ValueError(f"curvature for {self.kernel.shape[2]} latent channels, the model has {a.shape[0]}")
        return CodeCurvature(a, self.kernel)


def latent_atoms(tensors: dict[str, np.ndarray], quality_index: int) -> np.ndarray:
    """A_q (M,K) float32: the synthesis' input ŷ is A_q · symbols (SCVAE.synthesize: the unit-norm
    dictionary, scaled per atom by the level's step and per channel by its inverse gain)."""
    d = np.asarray(tensors["lista.dictionary"], np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=0, keepdims=True), 1e-8)
    step = np.exp(np.asarray(tensors["log_step"], np.float64)[quality_index])
    inv_gain = np.exp(np.asarray(tensors["log_inv_gain"], np.float64)[quality_index])
    return (inv_gain[:, None] * d * step[None, :]).astype(np.float32)


@dataclass(frozen=True)
class CodeCurvature:
    """The curvature at one level: ``atoms`` A_q (M,K) and the latent ``kernel`` M(d)."""

    atoms: np.ndarray
    kernel: np.ndarray

    @functools.cached_property
    def energy(self) -> np.ndarray:
        """(K,) float64: the squared pixel error one step of each atom adds (diag A_qᵀ M(0) A_q)."""
        a = self.atoms.astype(np.float64)
        return np.einsum("mk,mn,nk->k", a, self.kernel[REACH, REACH].astype(np.float64), a)

    def gradient_change(self, moves: np.ndarray) -> np.ndarray:
        """Moves Δ (K,h,w) of the symbols -> the change they make to the gradient of the squared
        pixel error with respect to every symbol (K,h,w): 2·Σ_d H(d)ᵀ Δ(p − d), H(d) = A_qᵀ M(d) A_q."""
        k, h, w = moves.shape
        m = self.atoms.shape[0]
        dy = np.pad((self.atoms @ moves.reshape(k, -1).astype(np.float32)).reshape(m, h, w),
                    ((0, 0), (REACH, REACH), (REACH, REACH)))
        pulled = np.zeros((m, h * w), np.float32)
        for i in range(2 * REACH + 1):
            for j in range(2 * REACH + 1):  # offset d = (i, j) − REACH: Δŷ(p − d)
                shifted = dy[:, 2 * REACH - i : 2 * REACH - i + h, 2 * REACH - j : 2 * REACH - j + w]
                pulled += self.kernel[i, j].T @ shifted.reshape(m, -1)
        return (2 * self.atoms.T @ pulled).reshape(k, h, w)


def curvature_file_path(weights_path: Path) -> Path:
    """Where a weights file's curvature lives: ``NAME.curvature.safetensors`` beside ``NAME.safetensors``."""
    return companion_path(weights_path, CURVATURE_FILE_SUFFIX)


def read_curvature(path: Path) -> Curvature:
    """A curvature file; ValueError (or OSError) naming what is wrong."""
    arrays, meta, _ = read_companion(path)
    if "kernel" not in arrays or not re.fullmatch("[0-9a-f]{16}", meta.get("model_digest", "")):
        raise ValueError(f"{path} is not a curvature file (no kernel or no weights hash)")
    return Curvature(arrays["kernel"], bytes.fromhex(meta["model_digest"]))
