"""Faster CPU kernels for the synthesis transform at inference (decoding), same results to ~1e-5.

Why: decoding a 768x512 image on the 2-core AMD EPYC (AVX2) machine spent about 400 ms in the
synthesis, half of it in one 3x3 convolution that oneDNN already ran near the cores' peak
multiply-add rate. Doing fewer multiplications is what is left:

- 3x3 convolutions through NNPACK's Winograd transform (bundled with PyTorch's CPU wheels):
  that convolution took 69 instead of 208 ms. PyTorch itself only picks NNPACK for batches of
  16 or more, so we call it directly, and fall back to the ordinary convolution wherever it is
  missing or fails.
- The pixel shuffle as a strided copy into the result: ``torch.pixel_shuffle`` on NCHW tensors
  (which NNPACK needs) took 120 ms for a copy that ``permute`` + ``copy_`` does in 10-14.
- Inverse GDN's 1x1 convolution as a matrix product, its square root in place.

Both work in slices (of output channels; of pixels) for large tiles, which bounds their extra
peak memory (``bench/memory.py``).

Decoded pixels may differ from the ordinary kernels' by one level in a few pixels per hundred
thousand (Winograd rounds differently); files never change, because the encoder's analysis
transform keeps the ordinary kernels. Training (gradients on) and GPUs use the ordinary kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Largest intermediate one slice may make. Slices cost time (each repeats NNPACK's input
#: transform), so a 768x512 image fits one; a 1024-px tile takes 2-3.
SLICE_BYTES = 64 << 20


def applies(x: torch.Tensor) -> bool:
    """True where these kernels replace the ordinary ones: CPU float32 inference on NCHW-able input."""
    return not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4


def _nnpack() -> bool:
    # also initialises NNPACK: without this first call its convolutions fail
    return hasattr(torch, "_nnpack_spatial_convolution") and torch._nnpack_available()


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride 1, padding 1 convolution, by Winograd (NNPACK) where available. Returns NCHW."""
    x = x.contiguous()
    if _nnpack():
        try:
            return torch._nnpack_spatial_convolution(x, weight.contiguous(), bias, [1, 1])
        except RuntimeError:  # e.g. a CPU without AVX2 or NEON
            pass
    return F.conv2d(x, weight.contiguous(), bias, padding=1)


def conv3x3_shuffle(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``pixel_shuffle(conv3x3(x), 2)``, in slices of output channels of at most SLICE_BYTES, each
    shuffled straight into the result: at a 1024-px tile, the whole convolution output and
    NNPACK's workspace for all its channels would add about 300 MB to the peak."""
    b, _, h, w = x.shape
    c = weight.shape[0] // 4
    out = x.new_empty(b, c, 2 * h, 2 * w)
    per_slice = max(1, SLICE_BYTES // (16 * b * h * w))  # 4 sub-pixels of 4 bytes per shuffled channel
    for c0 in range(0, c, per_slice):
        c1 = min(c, c0 + per_slice)
        y = conv3x3(x, weight[4 * c0 : 4 * c1], None if bias is None else bias[4 * c0 : 4 * c1])
        out[:, c0:c1].view(b, c1 - c0, h, 2, w, 2).copy_(y.view(b, c1 - c0, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3))
    return out


def gdn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, inverse: bool) -> torch.Tensor:
    """x ÷ or × sqrt(beta + gamma·x²) over channels, gamma (C,C): a matrix product per slice of
    pixels of at most SLICE_BYTES, so that the temporaries stay bounded."""
    b, c, h, w = x.shape
    flat = x.contiguous().view(b, c, h * w)
    out = torch.empty_like(flat)
    per_slice = max(1, SLICE_BYTES // (4 * b * c))
    for p0 in range(0, h * w, per_slice):
        part = flat[:, :, p0 : p0 + per_slice]
        norm = torch.matmul(gamma, part * part).add_(beta[:, None]).sqrt_()
        (torch.mul if inverse else torch.div)(part, norm, out=out[:, :, p0 : p0 + per_slice])
    return out.view(b, c, h, w)
