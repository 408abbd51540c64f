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
from sccodec.model.transforms import GDN
from sccodec.train.phase_tail import TAIL, PhaseDomainTail, rewritable
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
    """``rewrite``: the last three layers as ``PhaseDomainTail`` where the architecture allows
    (the graph's form); without, the plain layers (the torch reference it is checked against)."""

    def __init__(self, net: SCVAE, rewrite: bool = True) -> None:
        super().__init__()
        self.net = net
        self.tail = PhaseDomainTail(net.g_s) if rewrite and rewritable(net.g_s) else None

    def forward(self, symbols: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.tail is None:
            return self.net.synthesize(symbols[None], q).clamp(0, 1)
        g_s = self.net.g_s
        return self.tail(g_s(self.net.synthesis_input(symbols[None], q), layers=g_s.layers - TAIL)).clamp(0, 1)


class _Gradient(nn.Module):
    """Σ mask·(clamp(x̂) − target)² of the synthesis of ``symbols`` and its gradient with respect
    to them, the backward pass written out in forward operators (the exporter has no
    ``convolution_backward``): a 3×3 convolution's input gradient is the convolution with the
    flipped, transposed kernel; a pixel shuffle's is the unshuffle; inverse GDN's (y = x·n,
    n = √(β + Γ·x²)) is g·n + x·Γᵀ(g·x/n). Efforts 3 and 4 steer by it (``sccodec.refine``).
    """

    def __init__(self, net: SCVAE) -> None:
        super().__init__()
        self.net = net

    def forward(self, symbols: torch.Tensor, q: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net, g_s = self.net, self.net.g_s
        if g_s.blocks:
            raise ValueError("the gradient graph is written for a synthesis without residual blocks")
        _, inv_gain, step = net._per_level(q)
        x = net.synthesis_input(symbols[None], q)
        inputs = []
        for i in range(g_s.layers):
            inputs.append(x)
            x = g_s[i](x)
        difference = (x.clamp(0, 1) - target) * mask
        g = 2 * difference * ((x >= 0) & (x <= 1)).to(x.dtype)
        for i in reversed(range(g_s.layers)):
            layer, x_in = g_s[i], inputs[i]
            if isinstance(layer, GDN):
                gamma, beta = layer.gamma_beta()
                norm = torch.sqrt(nn.functional.conv2d(x_in * x_in, gamma[:, :, None, None], beta))
                g = g * norm + x_in * nn.functional.conv2d(g * x_in / norm, gamma.t()[:, :, None, None])
            else:  # UpConv: a 3×3 convolution, then a pixel shuffle
                g = nn.functional.pixel_unshuffle(g, 2)
                g = nn.functional.conv2d(g, layer[0].weight.flip(2, 3).transpose(0, 1), padding=1)
        gradient = torch.einsum("mk,bmhw->bkhw", net.lista.atoms(), g * inv_gain) * step
        return (difference * difference).sum(), gradient[0]


def _plain(net: SCVAE) -> SCVAE:
    """The network in evaluation mode and the plain NCHW layout the graphs use."""
    return net.eval().to("cpu", memory_format=torch.contiguous_format)


def _modules_and_inputs(net: SCVAE) -> dict[str, tuple[nn.Module, nn.Module, tuple, dict]]:
    """Per graph: the module exported, the torch reference it must match (often the same
    module), an example input, and its dynamic dimensions."""
    from torch.export import Dim

    c = net.config
    h, w = Dim("h", min=1, max=4096), Dim("w", min=1, max=4096)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 48, 80, generator=gen)
    y = net.g_a(x).detach()
    q = torch.tensor([c.qualities // 2])
    symbols = torch.randint(-3, 4, (c.atoms, 3, 5), generator=gen).float()
    analysis, code = _Analysis(net), _Code(net)
    graphs = {"analysis": (analysis, analysis, (x,), {"x": {2: 16 * h, 3: 16 * w}}),
              "code": (code, code, (y, q), {"y": {2: h, 3: w}, "q": None}),
              "synthesis": (_Synthesis(net), _Synthesis(net, rewrite=False), (symbols, q),
                            {"symbols": {1: h, 2: w}, "q": None})}
    if c.nonlinearity == "gdn" and not c.synthesis_blocks:
        target = torch.rand(1, 3, 48, 80, generator=gen)
        mask = torch.ones(1, 1, 48, 80)
        mask[..., :5, :] = 0
        pixels = {2: 16 * h, 3: 16 * w}
        gradient = _Gradient(net)
        graphs["gradient"] = (gradient, gradient, (symbols, q, target, mask),
                              {"symbols": {1: h, 2: w}, "q": None, "target": pixels, "mask": pixels})
    return graphs


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
        expected = module(*inputs)
    error = 0.0
    for want, got in zip(expected if isinstance(expected, tuple) else (expected,), session.run(None, feed)):
        want = want.numpy()
        # relative to the output's scale where it exceeds 1 (the gradient graph's summed error)
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
        error = max(error, float(np.abs(got - want).max()) / scale if got.shape == want.shape else float("inf"))
        if not error <= TOLERANCE:
            raise RuntimeError(f"the exported graph {path.name} does not compute what its torch module does "
                               f"(max difference {error:.3g}, shapes {got.shape} vs {want.shape})")
    return error


def export_graphs(weights: Path, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Write the runtime graphs of the model in ``weights`` beside it (``names``: only those),
    each checked against the torch network built from that same file; returns each graph's
    largest difference from torch."""
    import onnx

    model_file = read_model_file(weights)
    digest, net = model_file.digest, _plain(model_file.build())
    errors = {}
    for name, (module, reference, inputs, dynamic) in _modules_and_inputs(net).items():
        if names is not None and name not in names:
            continue
        with warnings.catch_warnings(), _quiet_exporter():
            # torch's exporter warns about its own internals (pytree API deprecations)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # and about axis names it merges (the gradient graph's two pixel-sized inputs)
            warnings.filterwarnings("ignore", "# The axis name", UserWarning)
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
        errors[name] = _check(path, reference, inputs)
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

