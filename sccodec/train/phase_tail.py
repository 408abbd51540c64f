"""The synthesis' last three layers rewritten for the runtime graph: no full-size pixel shuffle.

The plain synthesis ends with

    A: 3×3 convolution to 4n channels, pixel shuffle ×2   (quarter scale ─▶ half scale, n channels)
    inverse GDN (or LeakyReLU)                            (half scale)
    B: 3×3 convolution to 4·3 channels, pixel shuffle ×2  (half scale ─▶ full scale, RGB)

``PhaseDomainTail`` computes the same function at A's input resolution, keeping A's four
sub-pixel phases as four groups of channels instead of interleaving them:

1. A's convolution with its output channels reordered phase-major (a gather of weight rows);
2. the nonlinearity per phase: inverse GDN is a 1×1 convolution in 4 groups that share Γ, and
   LeakyReLU works elementwise anyway;
3. B's 3×3 convolution on the half-scale grid becomes a 2×2 convolution over the 4n phase
   channels to 48 outputs (3 colours × 4×4 sub-pixels), its taps gathered from B's kernel.
   Row phase 1 is computed one row late (and column phase 1 one column late), so every output
   reads the same 2×2 window; one pixel shuffle by 4 and a crop of 2 pixels on each side
   undo the shift.

Why: in ONNX Runtime the shuffle of A's 4n-channel output was the synthesis' slowest step after
the convolutions (a single-threaded copy of the largest tensor, with two layout reorders around
it), while the 2×2 convolution costs little more than B itself (B has only 12 outputs). The
rewrite is exact arithmetic on the same weights, summed in another order. The derived kernels
come from the stored parameters: A's reordered rows and the 2×2 kernel are gathered inside the
graph (the runtime folds them when it loads it); the exporter folds the small ones (B's
transposed kernel, the reordered biases, about 60 kB) into the graph itself. Export only:
training and the torch reference keep the plain layers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sccodec.model.transforms import GDN, SynthesisTransform, UpConv

PHASES = 4  # sub-pixel phases of a shuffle by 2
TAIL = 3  # layers the rewrite replaces: UpConv, nonlinearity, UpConv


def phase_major_rows(n: int) -> np.ndarray:
    """Rows of a shuffle-by-2 convolution (channel c·4 + p) in phase-major order (p·n + c)."""
    return np.arange(PHASES * n).reshape(n, PHASES).T.reshape(-1)


def tail_taps(colours: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the 2×2 kernel's entries come from in B's 3×3 kernel.

    Returns ``taps`` (48, 4, 2, 2): for output channel o = colour·16 + r·4 + s (row r and column s
    of the 4×4 block), input phase p = a'·2 + b' and window cell (ky, kx), the index
    j·9 + (d_y+1)·3 + (d_x+1) of B's weight (j = colour·4 + a₂·2 + b₂) or ``colours·4·9`` (a
    zero); and ``bias_rows`` (48,): the j of each output.

    A half-scale row Y = 2t + a has its neighbour Y + d at quarter-scale row t + ⌊(a+d)/2⌋,
    phase (a+d) mod 2. Output row i holds t = i for phase a = 0 and t = i − 1 for a = 1, and its
    window covers rows i − 1, i, so ky = ⌊(a+d)/2⌋ + 1 − a. Block row r = 2(1 − a) + a₂ puts
    phase 1's (late) rows first: full-scale row 4i − 2 + r.
    """
    zero = colours * PHASES * 9
    taps = np.full((colours * 16, PHASES, 2, 2), zero, np.int64)
    bias_rows = np.empty(colours * 16, np.int64)
    for colour in range(colours):
        for r in range(4):
            a, a2 = 1 - r // 2, r % 2
            for s in range(4):
                b, b2 = 1 - s // 2, s % 2
                out, j = colour * 16 + r * 4 + s, colour * PHASES + a2 * 2 + b2
                bias_rows[out] = j
                for dy in (-1, 0, 1):
                    ky, a_in = (a + dy) // 2 + 1 - a, (a + dy) % 2
                    for dx in (-1, 0, 1):
                        kx, b_in = (b + dx) // 2 + 1 - b, (b + dx) % 2
                        taps[out, a_in * 2 + b_in, ky, kx] = j * 9 + (dy + 1) * 3 + (dx + 1)
    return taps, bias_rows


def rewritable(g_s: SynthesisTransform) -> bool:
    """Whether the synthesis ends as the rewrite expects (every shipped architecture does)."""
    if g_s.layers < TAIL:
        return False
    last = [g_s[i] for i in range(g_s.layers - TAIL, g_s.layers)]
    return (isinstance(last[0], UpConv) and isinstance(last[2], UpConv)
            and isinstance(last[1], (GDN, nn.LeakyReLU)) and getattr(last[1], "inverse", True)
            and last[2][0].out_channels % PHASES == 0
            and not any(i >= g_s.layers - TAIL for i in (g_s.REFINED if g_s.blocks else ())))


class PhaseDomainTail(nn.Module):
    """The last three layers of ``g_s`` (module docstring), reading its parameters."""

    def __init__(self, g_s: SynthesisTransform) -> None:
        super().__init__()
        if not rewritable(g_s):
            raise ValueError("the synthesis does not end in UpConv, inverse GDN or LeakyReLU, UpConv")
        self.first, self.act, self.last = (g_s[i] for i in range(g_s.layers - TAIL, g_s.layers))
        n = self.first[0].out_channels // PHASES
        taps, bias_rows = tail_taps(self.last[0].out_channels // PHASES)
        self.register_buffer("rows", torch.from_numpy(phase_major_rows(n)), persistent=False)
        self.register_buffer("taps", torch.from_numpy(taps), persistent=False)
        self.register_buffer("bias_rows", torch.from_numpy(bias_rows), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.first[0]
        z = nn.functional.conv2d(x, conv.weight[self.rows], conv.bias[self.rows], padding=1)
        if isinstance(self.act, GDN):
            gamma, beta = self.act.gamma_beta()
            weight = gamma.repeat(PHASES, 1)[:, :, None, None]
            z = z * torch.sqrt(nn.functional.conv2d(z * z, weight, beta.repeat(PHASES), groups=PHASES))
        else:
            z = self.act(z)
        w, bias = self.last[0].weight, self.last[0].bias  # (colours·4, n, 3, 3)
        n = w.shape[1]
        table = torch.cat([w.permute(0, 2, 3, 1).reshape(-1, n), w.new_zeros(1, n)])
        kernel = table[self.taps].permute(0, 1, 4, 2, 3).reshape(self.taps.shape[0], PHASES * n, 2, 2)
        blocks = nn.functional.conv2d(z, kernel, bias[self.bias_rows], padding=1)
        return nn.functional.pixel_shuffle(blocks, 4)[:, :, 2:-2, 2:-2]
