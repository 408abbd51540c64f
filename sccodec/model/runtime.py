"""The SC-VAE run by ONNX Runtime: the CPU coding path, with no torch.

A model's inference halves are three ONNX graphs beside its weights file (``graph_paths``):

    analysis   x (1,3,H,W) in [0, 1] ─g_a─▶ y (1,M,H/16,W/16)
    code       y, level q ─×gain[q], LISTA─▶ real-valued symbols s (K,h,w)
    synthesis  symbols (K,h,w), level q ─×step[q], dictionary, ×1/gain[q], g_s─▶ x̂ (1,3,H,W) in [0, 1]

The graphs hold no weights of their own: every parameter is external data that points into the
``.safetensors`` file itself (``sccodec.train.graphs`` writes them so), and each graph records
the weights hash it was exported from. So the hash in a ``.scv`` header names exactly the bytes
that decode it, and a graph that does not belong to the weights beside it is refused.

Why ONNX Runtime: a small, well-kept inference runtime whose import and session set-up take a
fraction of torch's (docs/performance.md measures it beside OpenVINO and torch).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sccodec.errors import ModelMismatchError
from sccodec.model.config import Geometry, ModelConfig, geometry

GRAPHS = ("analysis", "code", "synthesis")  # what coding needs
#: Graphs a model may lack: ``gradient`` (the synthesis' squared error and its gradient with
#: respect to the symbols) lets efforts 3 and 4 refine without torch.
OPTIONAL_GRAPHS = ("gradient",)
WEIGHTS_HASH_KEY = "sccodec.weights_hash"  # graph metadata: the hash of the weights it reads


def graph_paths(weights: Path) -> dict[str, Path]:
    """Where a weights file's graphs live: ``NAME.analysis.onnx`` and so on, beside it."""
    return {name: weights.with_name(f"{weights.stem}.{name}.onnx") for name in GRAPHS + OPTIONAL_GRAPHS}


def has_graphs(weights: Path) -> bool:
    paths = graph_paths(weights)
    return all(paths[name].is_file() for name in GRAPHS)


class RuntimeModel:
    """An ``ImageModel`` (``sccodec.model.interface``) on ONNX Runtime's CPU provider.

    ``threads``: intra-op threads per graph (default: the machine's cores). Each session runs one
    call at a time, so one ``RuntimeModel`` per thread of a program that codes in parallel.
    """

    def __init__(self, weights: Path, digest: bytes, config: ModelConfig, threads: int | None = None) -> None:
        import onnxruntime as ort  # deferred: `sccodec --help` and parsing never need it

        self._paths = graph_paths(weights)
        missing = [str(self._paths[name]) for name in GRAPHS if not self._paths[name].is_file()]
        if missing:
            raise ModelMismatchError(f"{weights} has no runtime graphs ({', '.join(missing)}); "
                                     f"write them with 'sccodec export-graphs {weights}'")
        self._weights, self._digest = weights, digest
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the runtime's own notes are not the user's
        # Tiles and windows come in several sizes; planning memory per shape (the default) kept
        # every shape's plan: 3.3 GB at peak decoding 4K, against 1.8 GB and less time without it.
        options.enable_mem_pattern = False
        self._options = options
        self._sessions: dict[str, object] = {}
        self.geometry: Geometry = geometry(config)

    def _session(self, name: str):  # noqa: ANN202 (an onnxruntime.InferenceSession)
        """The graph's session, created on first use: a decoder never loads the analysis."""
        if name not in self._sessions:
            import onnxruntime as ort

            path = self._paths[name]
            try:
                session = ort.InferenceSession(str(path), self._options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 (the runtime raises its own types for bad files)
                raise ModelMismatchError(f"cannot load the runtime graph {path}: {e}") from None
            bound = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_HASH_KEY)
            if bound != self._digest.hex():
                raise ModelMismatchError(f"{path} was exported from weights {bound}, not from {self._weights} "
                                         f"({self._digest.hex()}); write it again with "
                                         f"'sccodec export-graphs {self._weights}'")
            self._sessions[name] = session
        return self._sessions[name]

    def analyze(self, x: np.ndarray) -> np.ndarray:
        return self._session("analysis").run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]

    def scaled_symbols(self, y: np.ndarray, quality_index: int) -> np.ndarray:
        return self._session("code").run(None, {"y": y, "q": np.array([quality_index], np.int64)})[0]

    def decode_symbols(self, symbols: np.ndarray, quality_index: int) -> np.ndarray:
        feed = {"symbols": np.ascontiguousarray(symbols, np.float32), "q": np.array([quality_index], np.int64)}
        return self._session("synthesis").run(None, feed)[0]

    @property
    def gradient_available(self) -> bool:
        """Whether the model has its ``gradient`` graph (else efforts 3 and 4 need torch)."""
        return self._paths["gradient"].is_file()

    def distortion_gradient(self, symbols: np.ndarray, quality_index: int, target: np.ndarray,
                            region: tuple[slice, slice]) -> tuple[float, np.ndarray]:
        """As ``TorchModel.distortion_gradient``, from the ``gradient`` graph."""
        _, h, w = symbols.shape
        stride = self.geometry.stride
        full = np.zeros((1, 3, h * stride, w * stride), np.float32)
        mask = np.zeros((1, 1, h * stride, w * stride), np.float32)
        full[..., region[0], region[1]] = target
        mask[..., region[0], region[1]] = 1
        feed = {"symbols": np.ascontiguousarray(symbols, np.float32), "q": np.array([quality_index], np.int64),
                "target": full, "mask": mask}
        error, gradient = self._session("gradient").run(None, feed)
        return float(error), gradient
