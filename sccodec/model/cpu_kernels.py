"""Faster CPU kernels for the transforms at inference (coding), same results to ~1e-5.

Why: decoding a 768x512 image on the 2-core AMD EPYC (AVX2) machine spent about 400 ms in the
synthesis, half of it in one 3x3 convolution that oneDNN already ran near the cores' peak
multiply-add rate. Doing fewer multiplications is what is left:

- 3x3 convolutions through NNPACK's Winograd transform (bundled with PyTorch's CPU wheels):
  that convolution took 69 instead of 208 ms. PyTorch itself only picks NNPACK for batches of
  16 or more, so we call it directly, and fall back to the ordinary convolution wherever it is
  missing or fails.
- The pixel shuffle as a strided copy into the result: ``torch.pixel_shuffle`` on NCHW tensors
  (which NNPACK needs) took 120 ms for a copy that ``permute`` + ``copy_`` does in 10-14.
- (Inverse) GDN's 1x1 convolution as a matrix product, and its element-wise passes (x², square
  root, quotient) a cache-sized slice of pixels at a time, written into the input where the
  transform allows: 1 instead of 4 fresh activations. This one runs in the encoder's analysis
  transform too: it does the same arithmetic as the convolution (on our machines, identical
  latents and files).

The convolution and shuffle work in slices of output channels for large tiles, which bounds
their extra peak memory (``bench/memory.py``).

Decoded pixels may differ from the ordinary kernels' by one level in a few pixels per hundred
thousand (Winograd rounds differently). Training (gradients on) and GPUs use the ordinary kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Largest intermediate one slice may make. Slices cost time (each repeats NNPACK's input
#: transform), so a 768x512 image fits one; a 1024-px tile takes 2-3.
SLICE_BYTES = 64 << 20

#: GDN's slices: small enough that x², the norm and the quotient of one slice stay in the
#: cores' caches (512 KB is 1024 pixels of 128 channels: 47 instead of 89 ms at 384x256).
GDN_SLICE_BYTES = 512 << 10


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


def gdn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, inverse: bool,
        overwrite_input: bool = False) -> torch.Tensor:
    """x ÷ or × sqrt(beta + gamma·x²) over channels, gamma (C,C): a matrix product and the
    element-wise passes per slice of GDN_SLICE_BYTES of pixels, so that each slice's passes run
    in cache. In channels_last the slices are contiguous rows (the analysis transform's layout),
    otherwise columns of the (C, pixels) matrix (the synthesis').

    ``overwrite_input``: write the result into x (when the caller owns x, e.g. a convolution's
    output). Why: a fresh 50 MB result costs more in page faults than the arithmetic (7 vs 3.6
    ms for a multiplication at 384x256x128 with huge pages, 26 vs 4 without).
    """
    b, c, h, w = x.shape
    divide = torch.mul if inverse else torch.div
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        per_slice = max(1, GDN_SLICE_BYTES // (4 * c))
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view: one row per pixel
        out = rows if overwrite_input else torch.empty_like(rows)
        for p0 in range(0, b * h * w, per_slice):
            part = rows[p0 : p0 + per_slice]
            divide(part, torch.addmm(beta, part * part, gamma.t()).sqrt_(), out=out[p0 : p0 + per_slice])
        return out.view(b, h, w, c).permute(0, 3, 1, 2)
    per_slice = max(1, GDN_SLICE_BYTES // (4 * b * c))  # columns of every image of the batch
    columns = x.contiguous().view(b, c, h * w)  # one column per pixel
    out = columns if overwrite_input else torch.empty_like(columns)
    for p0 in range(0, h * w, per_slice):
        part = columns[:, :, p0 : p0 + per_slice]
        norm = torch.matmul(gamma, part * part).add_(beta[:, None]).sqrt_()
        divide(part, norm, out=out[:, :, p0 : p0 + per_slice])
    return out.view(b, c, h, w)
