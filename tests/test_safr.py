"""SAFR against the formula computed in numpy."""
import numpy as np
import pytest
import torch

from bagclip.safr import SAFR, concat_taps, split_taps


def test_safr_matches_formula():
    torch.manual_seed(0)
    safr = SAFR(32, reduction=4)
    x = torch.randn(3, 10, 32)
    W1 = safr.W1.weight.detach().double().numpy()  # (8, 32)
    W2 = safr.W2.weight.detach().double().numpy()  # (32, 8)
    xn = x.double().numpy()
    gap = xn.mean(axis=1)  # (3, 32)
    gates = 1 / (1 + np.exp(-(np.maximum(gap @ W1.T, 0) @ W2.T)))
    expected = xn * gates[:, None, :]
    np.testing.assert_allclose(safr.gates(x).detach().numpy(), gates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(safr(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert safr.W1.bias is None and safr.W2.bias is None  # the equation has no bias
    assert sum(p.numel() for p in safr.parameters()) == 2 * 32 * 8


def test_concat_split_roundtrip():
    patches = torch.randn(2, 4, 6, 5)  # (B, L, N, W)
    x = concat_taps(patches)
    assert x.shape == (2, 6, 20)
    assert torch.equal(x[:, :, 5:10], patches[:, 1])  # tap-major channel blocks
    assert torch.equal(split_taps(x, 4), patches)


def test_bad_reduction():
    with pytest.raises(ValueError):
        SAFR(8, reduction=16)
