"""sccodec.model.cpu_kernels: the faster CPU kernels compute what the ordinary ones do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sccodec.metrics import psnr_rgb as psnr
from sccodec.model import cpu_kernels
from sccodec.model.transforms import GDN, AnalysisTransform, SynthesisTransform


def _random(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


@pytest.mark.parametrize("slice_bytes", [16 * 2 * 5 * 7 * 3, 1 << 20])
def test_conv_and_shuffle_by_slices_matches_conv_then_shuffle(monkeypatch, slice_bytes):
    monkeypatch.setattr(cpu_kernels, "SLICE_BYTES", slice_bytes)  # 10 channels: 3+3+3+1, or all at once
    x = _random(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    w, b = _random(40, 6, 3, 3) * 0.1, _random(40)
    expected = F.pixel_shuffle(F.conv2d(x, w, b, padding=1), 2)
    torch.testing.assert_close(cpu_kernels.conv3x3_shuffle(x, w, b), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("nnpack", [True, False])
def test_conv3x3_matches_the_ordinary_convolution(monkeypatch, nnpack):
    if not nnpack:  # the fallback where NNPACK is missing: the ordinary kernel on NCHW tensors
        monkeypatch.setattr(cpu_kernels, "_nnpack", lambda: False)
    x = _random(1, 16, 20, 24).contiguous(memory_format=torch.channels_last)
    w, b = _random(32, 16, 3, 3) * 0.1, _random(32)
    expected = F.conv2d(x, w, b, padding=1)
    got = cpu_kernels.conv3x3(x, w, b)
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 if nnpack else 1e-5)


@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("overwrite", [False, True])
def test_gdn_by_slices_matches_the_convolution(monkeypatch, inverse, layout, overwrite):
    monkeypatch.setattr(cpu_kernels, "GDN_SLICE_BYTES", 4 * 2 * 8 * 16)  # 16 pixels a slice: the last short
    gdn = GDN(8, inverse)
    with torch.no_grad():
        gdn.gamma_root.add_(0.2 * _random(8, 8).abs())
        x = _random(2, 8, 6, 10).contiguous(memory_format=layout)
        expected = gdn(x)
        gdn.cpu_kernels = True
        given = x.clone()
        got = gdn(given, overwrite_input=overwrite)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert got.is_contiguous(memory_format=layout)
        if overwrite:  # the result lives in the input's memory
            assert got.data_ptr() == given.data_ptr()
        else:
            assert torch.equal(given, x)


def test_analysis_gdn_kernels_agree_with_the_convolution():
    """The encoder's only CPU kernel is GDN's, the same arithmetic as the 1x1 convolution (on our
    machines bit-identical: all 240 Kodak files unchanged; here only to rounding, as other CPUs'
    kernels may sum in another order), and it never writes into the caller's image."""
    g_a = AnalysisTransform(16, 8, "gdn")
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(3)).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.no_grad():
        fast = g_a(x)
        g_a.use_cpu_kernels(False)
        ordinary = g_a(x)
    torch.testing.assert_close(fast, ordinary, rtol=1e-5, atol=1e-6)
    assert torch.equal(x, before)  # only the transform's own activations are overwritten


def test_synthesis_uses_them_only_without_gradients():
    g_s = SynthesisTransform(16, 8, "gdn", blocks=1)
    for p in g_s.parameters():  # the blocks start as the identity: give them something to do
        p.data.add_(0.05 * _random(*p.shape))
    y = _random(1, 8, 3, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = g_s(y)
        g_s.use_cpu_kernels(False)
        ordinary = g_s(y)
        g_s.use_cpu_kernels(True)
    torch.testing.assert_close(fast, ordinary, rtol=1e-3, atol=1e-4)  # Winograd rounds differently
    trained = g_s(y)  # gradients on: the ordinary kernels, whose backward is known
    assert trained.requires_grad
    torch.testing.assert_close(trained.detach(), ordinary, rtol=0, atol=0)


def test_decoding_with_them_agrees_with_the_ordinary_kernels(codec, tiled_rgb, tiled_scv):
    g_s = codec.network.g_s
    fast = codec.decode_array(tiled_scv)[0]
    g_s.use_cpu_kernels(False)
    try:
        ordinary = codec.decode_array(tiled_scv)[0]
    finally:
        g_s.use_cpu_kernels(True)
    assert np.abs(fast.astype(int) - ordinary.astype(int)).max() <= 1
    assert abs(psnr(tiled_rgb, fast) - psnr(tiled_rgb, ordinary)) < 0.01
