"""The SC-VAE run by torch behind the ``ImageModel`` interface: the reference implementation,
and the path for CUDA (``device="cuda"``).

The CPU coding path runs the same networks in ONNX Runtime (``sccodec.model.runtime``) and needs
no torch; this adapter is what the runtime's graphs are checked against, and what a GPU runs.
"""
from __future__ import annotations

import numpy as np
import torch

from sccodec.model.config import Geometry, geometry
from sccodec.model.scvae import SCVAE


class TorchModel:
    """An ``SCVAE`` on a torch device, with NumPy arrays in and out."""

    def __init__(self, net: SCVAE, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.geometry: Geometry = geometry(net.config)

    @torch.no_grad()
    def analyze(self, x: np.ndarray) -> np.ndarray:
        with _full_precision():
            return self.net.analyze(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)).cpu().numpy()

    @torch.no_grad()
    def scaled_symbols(self, y: np.ndarray, quality_index: int) -> np.ndarray:
        with _full_precision():
            return self.net.scaled_symbols(torch.from_numpy(y).to(self.device), quality_index).cpu().numpy()

    @torch.no_grad()
    def decode_symbols(self, symbols: np.ndarray, quality_index: int) -> np.ndarray:
        s = torch.from_numpy(np.ascontiguousarray(symbols)).to(self.device)
        with _full_precision():
            return self.net.decode_symbols(s, quality_index).cpu().numpy()

    def distortion_gradient(self, symbols: np.ndarray, quality_index: int, target: np.ndarray,
                            region: tuple[slice, slice]) -> tuple[float, np.ndarray]:
        """Squared error of the decoded pixels in ``region`` (rows, columns of the decoded image,
        clamped to [0, 1]) against ``target`` (1,3,h,w), and its gradient with respect to every
        symbol (K,h,w): what the refinement of efforts 3 and up (``sccodec.refine``) steers by."""
        v = torch.from_numpy(np.asarray(symbols, np.float32)).to(self.device).requires_grad_()
        q = torch.tensor([quality_index], device=self.device)
        with torch.enable_grad(), _full_precision():
            x_hat = self.net.synthesize(v[None], q)[..., region[0], region[1]].clamp(0, 1)
            error = (x_hat - torch.from_numpy(target).to(self.device)).pow(2).sum()
            (grad,) = torch.autograd.grad(error, v)
        return float(error.detach()), grad.cpu().numpy()


def _full_precision():  # noqa: ANN202 (a context manager)
    """cuDNN convolutions in full float32: by default CUDA may run them in TF32 (10-bit
    mantissas), which can move decoded pixels by more than the one level the CPU path promises."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
