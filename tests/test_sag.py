"""SAG graph and GCN against independent numpy computations."""
import math

import numpy as np
import pytest
import torch

from bagclip.sag import SAG, build_graph, build_sparse_graph, pairwise_d2, propagate


def numpy_graph(h: np.ndarray, k: int, metric: np.ndarray | None = None, c: float = 1.0) -> dict:
    """The six steps of docs/design.md with loops, float64; c the kernel's scale."""
    h = h.astype(np.float64)
    if metric is not None:
        h = h @ metric.T
    n = h.shape[0]
    d2 = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d2[i, j] = np.sum((h[i] - h[j]) ** 2)
    sigma = np.array([math.sqrt(max(np.sort(np.delete(d2[i], i))[k - 1], 1e-8)) for i in range(n)])
    S = np.exp(-d2 / (c * np.outer(sigma, sigma)))
    tau = np.array([np.sort(np.delete(S[i], i))[::-1][k - 1] for i in range(n)])
    A_adj = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                A_adj[i, j] = max(S[i, j] - tau[i], 0.0)
    A_sym = A_adj + A_adj.T
    A_star = A_sym + np.eye(n)
    deg = A_star.sum(1)
    A_norm = A_star / np.sqrt(np.outer(deg, deg))
    return dict(d2=d2, sigma=sigma, S=S, tau=tau, A_adj=A_adj, A_sym=A_sym, A_norm=A_norm)


@pytest.mark.parametrize("metric", [False, True])
def test_build_graph_matches_numpy(metric):
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 40, 12)).astype(np.float32)
    W = rng.normal(size=(12, 12)).astype(np.float32) / 3 if metric else None
    Wt = torch.from_numpy(W) if metric else None
    batched = build_graph(torch.from_numpy(h), 6, Wt, return_parts=True)
    for b in range(3):
        ref = numpy_graph(h[b], 6, W)
        single = build_graph(torch.from_numpy(h[b]), 6, Wt, return_parts=True)
        for name, val in ref.items():
            np.testing.assert_allclose(getattr(batched, name)[b].numpy(), val, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(getattr(single, name).numpy(), val, rtol=1e-4, atol=1e-5)
    assert torch.allclose(build_graph(torch.from_numpy(h), 6, Wt), batched.A_norm)


def test_hand_worked_line():
    # Points 0, 1, 3, 6, 10 on a line, K = 2.
    # d2 rows: [0 1 9 36 100] [1 0 4 25 81] [9 4 0 9 49] [36 25 9 0 16] [100 81 49 16 0]
    # 2nd-nearest d2: 9, 4, 9, 16, 49 -> sigma = 3, 2, 3, 4, 7
    # S_ij = exp(-d2_ij / (sigma_i sigma_j)); affinity top-2 per row (self excluded):
    #   row 0: S01 = e^-1/6, S02 = e^-1,  S03 = e^-3,   -> tau0 = e^-1,   edge 0->1: e^-1/6 - e^-1
    #   row 1: S10 = e^-1/6, S12 = e^-2/3, S13 = e^-25/8 -> tau1 = e^-2/3, edge 1->0: e^-1/6 - e^-2/3
    #   row 2: S21 = e^-2/3, S23 = e^-3/4, S20 = e^-1   -> tau2 = e^-3/4, edge 2->1: e^-2/3 - e^-3/4
    #   row 3: S32 = e^-3/4, S34 = e^-4/7, S31 = e^-25/8 -> tau3 = e^-3/4, edge 3->4: e^-4/7 - e^-3/4
    #   row 4: S43 = e^-4/7, S42 = e^-7/3               -> tau4 = e^-7/3, edge 4->3: e^-4/7 - e^-7/3
    # (node 3: its nearest by distance is 2 (d2 9 < 16) but by affinity 4 (sigma_4 = 7 is wide).)
    e = math.exp
    a01, a10 = e(-1 / 6) - e(-1), e(-1 / 6) - e(-2 / 3)
    a21, a34, a43 = e(-2 / 3) - e(-3 / 4), e(-4 / 7) - e(-3 / 4), e(-4 / 7) - e(-7 / 3)
    A_adj = np.zeros((5, 5))
    A_adj[0, 1], A_adj[1, 0], A_adj[2, 1], A_adj[3, 4], A_adj[4, 3] = a01, a10, a21, a34, a43
    A_star = A_adj + A_adj.T + np.eye(5)
    deg = A_star.sum(1)
    expected = A_star / np.sqrt(np.outer(deg, deg))
    h = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    parts = build_graph(h, 2, return_parts=True)
    np.testing.assert_allclose(parts.sigma.numpy(), [3, 2, 3, 4, 7], rtol=1e-6)
    np.testing.assert_allclose(parts.A_adj.numpy(), A_adj, atol=1e-6)
    np.testing.assert_allclose(parts.A_norm.numpy(), expected, atol=1e-6)


def test_structure():
    torch.manual_seed(0)
    k = 5
    parts = build_graph(torch.randn(2, 60, 8), k, return_parts=True)
    assert ((parts.A_adj > 0).sum(-1) <= k - 1).all()
    assert (parts.A_adj.diagonal(dim1=-2, dim2=-1) == 0).all()
    A = parts.A_norm
    assert torch.allclose(A, A.transpose(-1, -2), atol=1e-7)
    A_star = parts.A_sym + torch.eye(60)
    assert torch.allclose(A.diagonal(dim1=-2, dim2=-1), 1 / A_star.sum(-1), atol=1e-6)
    assert torch.equal(A != 0, A_star != 0)


def test_duplicates_are_finite():
    h = torch.zeros(10, 4)
    h[5:] = 1.0  # two clusters of identical points: d2 to the K-th neighbour is 0
    A = build_graph(h, 3)
    assert torch.isfinite(A).all()


def test_gradients_reach_metric():
    torch.manual_seed(0)
    W = torch.eye(8).requires_grad_(True)
    A = build_graph(torch.randn(30, 8), 4, W)
    (A * torch.randn(30, 30)).sum().backward()
    assert W.grad is not None and W.grad.abs().sum() > 0


@pytest.mark.parametrize("c", [2.0, 0.5])
def test_kernel_scale_is_the_other_reading_of_the_kernel(c):
    """kernel_scale c: S = exp(-d2 / (c sigma_i sigma_j)), against numpy; sparse agrees."""
    rng = np.random.default_rng(3)
    h = rng.normal(size=(35, 10)).astype(np.float32)
    ref = numpy_graph(h, 5, c=c)
    parts = build_graph(torch.from_numpy(h), 5, return_parts=True, kernel_scale=c)
    for name in ("S", "tau", "A_norm"):
        np.testing.assert_allclose(getattr(parts, name).numpy(), ref[name], rtol=1e-4, atol=1e-5)
    assert not np.allclose(ref["A_norm"], numpy_graph(h, 5)["A_norm"], atol=1e-3)  # it matters
    sparse = build_sparse_graph(torch.from_numpy(h), 5, kernel_scale=c).to_dense()[0]
    np.testing.assert_allclose(sparse.numpy(), ref["A_norm"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("blocks", [2, 3, 5])
def test_blocked_distances_match_numpy_and_their_gradients(blocks):
    # only the blocks on and right of the diagonal are multiplied; the rest is mirrored
    rng = np.random.default_rng(blocks)
    h = rng.normal(size=(2, 23, 6)).astype(np.float32) + 5.0  # a shared offset, as CLIP's
    ref = ((h[:, :, None, :].astype(np.float64) - h[:, None, :, :]) ** 2).sum(-1)
    x = torch.from_numpy(h).requires_grad_(True)
    d2 = pairwise_d2(x, blocks=blocks)
    np.testing.assert_allclose(d2.detach().numpy(), ref, rtol=1e-5, atol=1e-4)
    lo = round(23 / blocks)  # the first block's rows: every later row is mirrored from above
    assert torch.equal(d2[:, lo:, :lo], d2[:, :lo, lo:].transpose(-1, -2))
    w = torch.randn(2, 23, 23)
    g_blocked, = torch.autograd.grad((d2 * w).sum(), x)
    g_plain, = torch.autograd.grad((pairwise_d2(x, blocks=1) * w).sum(), x)
    assert torch.allclose(g_blocked, g_plain, rtol=1e-4, atol=1e-3)
    big = torch.randn(1, 600, 4)  # the default cuts from N = 512 on
    assert torch.allclose(pairwise_d2(big), pairwise_d2(big, blocks=1), atol=1e-4)


def test_propagate_gradients_use_the_symmetry_of_a_norm():
    # backward computes A^T g as A g (one bag sum); check it against numerical differences
    # and against torch's own embedding_bag autograd, for the features and the edge weights
    torch.manual_seed(3)
    G = build_sparse_graph(torch.randn(2, 30, 8), 5)
    dense = G.to_dense()
    assert torch.allclose(dense, dense.transpose(-1, -2), atol=1e-7)
    x = torch.randn(2, 30, 4, dtype=torch.float64, requires_grad=True)
    v = G.values.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, v: propagate(G._replace(values=v), x), (x, v))
    go = torch.randn(2, 30, 4, dtype=torch.float64)
    ours = torch.autograd.grad(propagate(G._replace(values=v), x), (x, v), go)
    ref_out = torch.nn.functional.embedding_bag(G.cols, x.reshape(60, 4), G.offsets, mode="sum",
                                                per_sample_weights=v).reshape(2, 30, 4)
    ref = torch.autograd.grad(ref_out, (x, v), go)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("metric", [False, True])
def test_sparse_equals_dense(metric):
    torch.manual_seed(1)
    h = torch.randn(2, 70, 16, requires_grad=True)
    W = torch.randn(16, 16) / 4 if metric else None
    A = build_graph(h, 7, W)
    G = build_sparse_graph(h, 7, W)
    assert torch.allclose(G.to_dense(), A, atol=1e-6)
    with torch.no_grad():  # the in-place path (no autograd) builds the same list
        G_inplace = build_sparse_graph(h, 7, W)
    assert torch.equal(G_inplace.cols, G.cols) and torch.allclose(G_inplace.values, G.values, atol=1e-7)
    x = torch.randn(2, 70, 5)
    y_dense, y_sparse = propagate(A, x), propagate(G, x)
    assert torch.allclose(y_dense, y_sparse, atol=1e-5)
    g_dense, = torch.autograd.grad((y_dense ** 2).sum(), h)
    g_sparse, = torch.autograd.grad((y_sparse ** 2).sum(), h)
    assert torch.allclose(g_dense, g_sparse, atol=1e-4, rtol=1e-3)
    # the SAG module gives the same F_SAG on both paths
    sag = SAG(16, 8, 7, 3)
    sag.sparse = False
    f_dense = sag(h)
    sag.sparse = True
    assert torch.allclose(f_dense, sag(h), atol=1e-5)


def test_gcn_layer_by_hand():
    torch.manual_seed(0)
    sag = SAG(6, 4, 3, 1, sparse=False)
    h = torch.randn(1, 12, 6)
    A = build_graph(h, 3)[0].double().numpy()
    W = sag.gcn[0].weight.detach().double().numpy().T  # (6, 4)
    expected = np.maximum(A @ h[0].double().numpy() @ W, 0)
    np.testing.assert_allclose(sag(h)[0].detach().numpy(), expected, atol=1e-5)
    assert sag(h[0]).shape == (12, 4)  # unbatched input


def test_gcn_stack_by_hand_on_a_prebuilt_graph():
    """P layers F <- relu(A F W) with dense numpy products, the graph built on other features
    (graph_from: e.g. raw taps while F^(0) is post-SAFR)."""
    torch.manual_seed(0)
    sag, h, g = SAG(32, 16, 5, 3), torch.randn(1, 40, 32), torch.randn(1, 40, 32)
    A = numpy_graph(g[0].numpy(), 5)["A_norm"]
    f = h[0].double().numpy()
    for lin in sag.gcn:
        f = np.maximum(A @ f @ lin.weight.detach().double().numpy().T, 0)
    with torch.no_grad():
        np.testing.assert_allclose(sag(h, graph_from=g)[0].numpy(), f, atol=1e-5)
        np.testing.assert_allclose(sag.gcn_layers(sag.graph(g), h)[0].numpy(), f, atol=1e-5)
        assert not np.allclose(sag(h)[0].numpy(), f, atol=1e-3)  # the graph's features matter


def test_sag_widths_and_parameters():
    sag = SAG(1024, 384, 15, 5)
    assert [tuple(l.weight.shape) for l in sag.gcn] == [(384, 1024)] + [(384, 384)] * 4
    assert sum(p.numel() for p in sag.parameters()) == 1024 * 384 + 4 * 384 * 384  # 0.98 M
    assert SAG(8, 4, 3, 2, metric_proj=True).metric.shape == (8, 8)
    h = torch.randn(2, 20, 8)
    sag = SAG(8, 4, 3, 2, metric_proj=True)
    sag(h).sum().backward()
    assert all(p.grad is not None for p in sag.parameters())
