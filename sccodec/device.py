"""Where the networks run. Coding: ``auto``/``cpu`` is ONNX Runtime on the CPU (no torch);
``cuda``/``cuda:N`` is torch on that GPU. Training: torch, on CUDA when there is one.

Why ``auto`` means the CPU for coding: telling whether a GPU is there takes importing torch,
which costs a CPU command more than the whole coding of a photo; ask for ``cuda`` to use one.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sccodec.errors import ParameterError

if TYPE_CHECKING:
    import torch

_CUDA = re.compile(r"cuda(:[0-9]+)?")


def resolve_device(device: object = "auto") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (or a ``torch.device``) -> ``"cpu"`` or the CUDA
    device's name; a clear error for one that is unknown or absent, before any input is read."""
    name = str(device)
    if name in ("auto", "cpu"):
        return "cpu"
    if not _CUDA.fullmatch(name):
        raise ParameterError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    _check_cuda()
    return name


def torch_device(device: object = "auto") -> "torch.device":
    """For training: ``auto`` is CUDA when torch sees a GPU, else the CPU."""
    import torch

    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not _CUDA.fullmatch(name):
        raise ParameterError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    if name != "cpu":
        _check_cuda()
    return torch.device(name)


def _check_cuda() -> None:
    try:
        import torch
    except ImportError:
        raise ParameterError("device 'cuda' runs the networks in torch, which is not installed "
                             "(pip install 'sccodec[torch]')") from None
    if not torch.cuda.is_available():
        raise ParameterError("CUDA was requested but is not available on this machine")
