"""The runtime graph's form of the synthesis' last layers computes what the plain layers do."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sccodec.model.transforms import SynthesisTransform
from sccodec.train.phase_tail import TAIL, PhaseDomainTail, phase_major_rows, rewritable, tail_taps


def test_every_tap_of_the_last_kernel_lands_once_in_each_output() -> None:
    colours = 3
    taps, bias_rows = tail_taps(colours)
    zero = colours * 4 * 9
    for out in range(colours * 16):
        used = taps[out][taps[out] != zero]
        j = bias_rows[out]
        assert sorted(used.tolist()) == list(range(j * 9, j * 9 + 9))
    # every (colour, a2, b2) row of the kernel serves exactly 4 outputs (its 4 coarse phases)
    assert np.bincount(bias_rows, minlength=colours * 4).tolist() == [4] * (colours * 4)


def test_phase_major_rows_gather_each_phase_together() -> None:
    rows = phase_major_rows(3)
    assert rows.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


@pytest.mark.parametrize("nonlinearity", ["gdn", "leaky"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 4)])
def test_the_tail_matches_the_plain_layers(nonlinearity, size) -> None:
    torch.manual_seed(1)
    g_s = SynthesisTransform(8, 6, nonlinearity).eval()
    with torch.no_grad():
        for p in g_s.parameters():
            p.add_(0.3 * torch.randn_like(p))  # GDN's Γ and β enter squared: any sign is valid
    x = torch.randn(1, 8, *size)
    assert rewritable(g_s)
    with torch.no_grad():
        want = g_s[g_s.layers - 1](g_s[g_s.layers - 2](g_s[g_s.layers - TAIL](x)))
        got = PhaseDomainTail(g_s)(x)
    assert got.shape == want.shape == (1, 3, 4 * size[0], 4 * size[1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_synthesis_of_another_shape_is_refused() -> None:
    g_s = SynthesisTransform(8, 6, "gdn")
    g_s[g_s.layers - 2] = torch.nn.Identity()
    assert not rewritable(g_s)
    with pytest.raises(ValueError, match="does not end in"):
        PhaseDomainTail(g_s)


def test_a_forward_gdn_at_the_end_is_refused() -> None:
    from sccodec.model.transforms import GDN

    g_s = SynthesisTransform(8, 6, "gdn")
    g_s[g_s.layers - 2] = GDN(8, inverse=False)
    assert not rewritable(g_s)


@pytest.mark.parametrize("blocks", [0, 1])
def test_the_exported_synthesis_matches_the_plain_one_it_is_checked_against(blocks) -> None:
    """The graph's module (dictionary, gain, the first layers with their refinements, the
    rewritten tail) against the plain synthesis the export compares it with."""
    from sccodec.model.config import ModelConfig
    from sccodec.model.scvae import SCVAE
    from sccodec.train.graphs import _modules_and_inputs, _plain

    torch.manual_seed(2)
    config = ModelConfig(channels=8, latent=8, atoms=16, lambdas=(0.01, 0.1), nonlinearity="gdn",
                         synthesis_blocks=blocks)
    net = _plain(SCVAE(config))
    with torch.no_grad():
        for p in net.g_s.parameters():
            p.add_(0.2 * torch.randn_like(p))  # the refinement blocks start as the identity
    exported, reference, inputs, _ = _modules_and_inputs(net)["synthesis"]
    assert exported.tail is not None and reference.tail is None
    net.double()  # in float64 the two orders of summation agree to the reference's float32 output
    symbols = torch.randint(-3, 4, (config.atoms, 3, 4)).double()
    with torch.no_grad():
        torch.testing.assert_close(exported(symbols, inputs[1]).float(), reference(symbols, inputs[1]),
                                   rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="layers"):
        net.g_s(torch.zeros(1, config.latent, 2, 2), layers=net.g_s.layers + 1)
