"""Export a model's inference halves as the ONNX graphs the runtime runs (``sccodec.model.runtime``).

    weights file ─read_model_file, build─▶ SCVAE ─torch.onnx.export─▶ graph
        ─every parameter found byte for byte in the weights file becomes external data there─▶ .onnx

Why external data into the ``.safetensors``: the weights are stored once, the graphs stay a few
hundred kB, and what decodes a file is exactly the hashed weights file. Only constants the
exporter derives from the weights (e.g. GDN's squared parameters) stay inside a graph.

Each graph is checked against its torch module on a random input before it is written: an
export that silently drops part of the network (a tracing gap) fails here, not in a user's file.
Needs torch, ``onnx`` and ``onnxscript`` (the ``train`` extra); the coding path needs neither.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sccodec import atomic
from sccodec.model.runtime import WEIGHTS_HASH_KEY, graph_paths
from sccodec.model.scvae import SCVAE
from sccodec.weights import read_model_file

OPSET = 18
TOLERANCE = 1e-3  # max |graph - torch| on the check input (outputs are O(1): latents, symbols, pixels)


class _Analysis(nn.Module):
    def __init__(self, net: SCVAE) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.g_a(x)


class _Code(nn.Module):
    def __init__(self, net: SCVAE) -> None:
        super().__init__()
        self.net = net

    def forward(self, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.net.latent_code(y, q)[0]


class _Synthesis(nn.Module):
    def __init__(self, net: SCVAE) -> None:
        super().__init__()
        self.net = net

    def forward(self, symbols: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.net.synthesize(symbols[None], q).clamp(0, 1)


def _plain(net: SCVAE) -> SCVAE:
    """The network in evaluation mode and the plain NCHW layout the graphs use."""
    return net.eval().to("cpu", memory_format=torch.contiguous_format)


def _modules_and_inputs(net: SCVAE) -> dict[str, tuple[nn.Module, tuple, dict]]:
    """Per graph: the module, an example input, and its dynamic dimensions."""
    from torch.export import Dim

    c = net.config
    h, w = Dim("h", min=1, max=4096), Dim("w", min=1, max=4096)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 48, 80, generator=gen)
    y = net.g_a(x).detach()
    q = torch.tensor([c.qualities // 2])
    symbols = torch.randint(-3, 4, (c.atoms, 3, 5), generator=gen).float()
    return {"analysis": (_Analysis(net), (x,), {"x": {2: 16 * h, 3: 16 * w}}),
            "code": (_Code(net), (y, q), {"y": {2: h, 3: w}, "q": None}),
            "synthesis": (_Synthesis(net), (symbols, q), {"symbols": {1: h, 2: w}, "q": None})}


def _stored_tensors(weights: Path) -> dict[bytes, tuple[int, int]]:
    """SHA-256 of each tensor's bytes in a safetensors file -> (offset, length) in the file."""
    blob = weights.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    start = 8 + n
    found = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        lo, hi = entry["data_offsets"]
        found[hashlib.sha256(blob[start + lo : start + hi]).digest()] = (start + lo, hi - lo)
    return found


def _point_into(model, weights: Path) -> int:  # noqa: ANN001 (an onnx.ModelProto)
    """Make every initializer whose bytes the weights file holds external data there; how many."""
    from onnx import TensorProto, numpy_helper

    stored = _stored_tensors(weights)
    moved = 0
    for tensor in model.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        raw = numpy_helper.to_array(tensor).astype("<f4").tobytes()
        place = stored.get(hashlib.sha256(raw).digest())
        if place is None:
            continue
        del tensor.external_data[:]
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", weights.name), ("offset", str(place[0])), ("length", str(place[1]))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        moved += 1
    return moved


def _check(path: Path, module: nn.Module, inputs: tuple) -> float:
    """Largest |runtime - torch| of the written graph on the example input; raises past TOLERANCE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: a.numpy() for i, a in zip(session.get_inputs(), inputs)}
    with torch.no_grad():
        expected = module(*inputs).numpy()
    got = session.run(None, feed)[0]
    error = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not error <= TOLERANCE:
        raise RuntimeError(f"the exported graph {path.name} does not compute what its torch module does "
                           f"(max difference {error:.3g}, shapes {got.shape} vs {expected.shape})")
    return error


def export_graphs(weights: Path) -> dict[str, float]:
    """Write the runtime graphs of the model in ``weights`` beside it, each checked against the
    torch network built from that same file; returns each graph's largest difference from torch."""
    import onnx

    model_file = read_model_file(weights)
    digest, net = model_file.digest, _plain(model_file.build())
    errors = {}
    for name, (module, inputs, dynamic) in _modules_and_inputs(net).items():
        with warnings.catch_warnings(), _quiet_exporter():
            # torch's exporter warns about its own internals (pytree API deprecations)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(module.eval(), inputs, dynamo=True, dynamic_shapes=dynamic, opset_version=OPSET,
                                        optimize=True, verbose=False)
        model = program.model_proto
        _point_into(model, weights)
        del model.metadata_props[:]
        for key, value in ((WEIGHTS_HASH_KEY, digest.hex()), ("sccodec.graph", name)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        path = graph_paths(weights)[name]
        atomic.write_bytes(path, model.SerializeToString())
        onnx.checker.check_model(str(path))
        errors[name] = _check(path, module, inputs)
    return errors


class _quiet_exporter:
    """The exporter logs a line per optional operator library it does not find (torchvision);
    none is used here, so those lines are noise on a user's terminal."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("torch.onnx")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)

