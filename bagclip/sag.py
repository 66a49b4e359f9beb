"""Self-Attention Graph (paper 3.3) and GCN propagation (3.4), as docs/design.md reads them.

Given patch features H `(N, D)` (one tap's F_pre), `build_graph` makes the dense normalised
adjacency in six steps (d2 -> sigma -> S -> tau / A_adj -> A_sym, A* -> A_norm); `SAG` stacks
P GCN layers F^(p+1) = relu(A_norm F^(p) W^(p)) on it.

Each node keeps at most K-1 out-edges, so A_norm has about 2K non-zeros a row. `SAG` therefore
propagates with an edge list (`build_sparse_graph` + `propagate`, an `embedding_bag` sum that
never materialises N x N or N x K x D) unless `sparse=False`; both paths agree to float
tolerance (tests/test_sag.py). At the paper's size on 2 CPU cores (benchmarks/sag.py) the
edge-list SAG takes about 2.9x the floor h @ h.T (its distance product multiplies only the blocks
on and above the diagonal, see `pairwise_d2`) and 0.8% of a ViT-L-14-336 forward, 2x faster
than dense; on a GPU the dense bmm may win (not measured here: `SAG(..., sparse=False)`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-8  # floor on the squared K-th neighbour distance: duplicate features give sigma > 0


class GraphParts(NamedTuple):
    """Every step of `build_graph`, for notebooks. Shapes `(B, N, N)` / `(B, N)` (or unbatched)."""
    d2: torch.Tensor  # squared distances
    sigma: torch.Tensor  # local scales, distance to the K-th nearest neighbour
    S: torch.Tensor  # self-tuning Gaussian affinities
    tau: torch.Tensor  # per-node thresholds, the K-th largest affinity (self excluded)
    A_adj: torch.Tensor  # relu(S - tau), directed, zero diagonal
    A_sym: torch.Tensor  # A_adj + A_adj^T
    A_norm: torch.Tensor  # D*^-1/2 (A_sym + I) D*^-1/2


def _as_batched(h: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if h.dim() == 2:
        return h.unsqueeze(0), True
    if h.dim() == 3:
        return h, False
    raise ValueError(f"expected h of shape (N, D) or (B, N, D), got {tuple(h.shape)}")


def pairwise_d2(h: torch.Tensor, metric: torch.Tensor | None = None,
                blocks: int | None = None) -> torch.Tensor:
    """Squared distances `(B, N, N)` of h `(B, N, D)` (after h @ W_phi^T if a metric is given).

    ||a||^2 + ||b||^2 - 2 a.b in float32 after centring the features: distances do not change,
    but CLIP's residual stream has a large shared component whose norm would otherwise
    dominate the cancellation error. Diagonal exactly 0, clamped >= 0.

    blocks b: the rows are cut into b blocks and only the blocks on and right of the diagonal
    are multiplied, the rest mirrored ((b+1)/2b of the product's FLOPs, as a BLAS syrk would);
    None: 3 from N = 512 on (measured fastest at the paper's N = 1369, benchmarks/sag.py) when
    no autograd graph is recorded (inference, evaluation), else 1.
    """
    h = h.float()
    if metric is not None:
        h = h @ metric.float().t()
    h = h - h.mean(dim=-2, keepdim=True)
    sq = torch.linalg.vector_norm(h, dim=-1).square()  # (B, N), one pass
    B, n, _ = h.shape
    b = blocks
    if b is None:  # with autograd, the slices' backward costs more than the blocks save
        b = 3 if n >= 512 and not (torch.is_grad_enabled() and h.requires_grad) else 1
    hT = h.transpose(-1, -2)
    # the row norms ride in baddbmm's input (broadcast, not materialised), the column norms and
    # the clamp are in place
    if b == 1:
        d2 = torch.baddbmm(sq.unsqueeze(-1), h, hT, alpha=-2.0).add_(sq.unsqueeze(-2)).clamp_min_(0.0)
    else:
        edges = [round(i * n / b) for i in range(b + 1)]
        d2 = h.new_empty(B, n, n)
        for lo, hi in zip(edges, edges[1:]):
            up = torch.baddbmm(sq[:, lo:hi, None], h[:, lo:hi], hT[..., lo:], alpha=-2.0)
            up = up.add_(sq[:, None, lo:]).clamp_min_(0.0)  # (B, hi - lo, N - lo)
            d2[:, lo:hi, lo:] = up
            d2[:, hi:, lo:hi] = up[..., hi - lo:].transpose(-1, -2)
    d2.diagonal(dim1=-2, dim2=-1).zero_()  # exact zeros
    return d2


def _sigma(d2: torch.Tensor, k: int) -> torch.Tensor:
    """sigma_i = sqrt(d2 to the K-th nearest neighbour, self excluded), `(B, N)`."""
    n = d2.shape[-1]
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be in [1, N-1] with N={n}")
    # the row's own 0 is among its smallest values, so the (K+1)-th smallest with self is the
    # K-th without it, ties included (no masked copy of the N x N matrix needed)
    kth = torch.topk(d2, k + 1, dim=-1, largest=False).values[..., k]
    return kth.clamp_min(EPS).sqrt()


def build_graph(h: torch.Tensor, k: int, metric: torch.Tensor | None = None,
                return_parts: bool = False, kernel_scale: float = 1.0) -> torch.Tensor | GraphParts:
    """Dense normalised adjacency A_norm `(B, N, N)` (or `(N, N)`) of h `(B, N, D)` / `(N, D)`.

    metric: optional W_phi `(D, D)`. kernel_scale c: S_ij = exp(-d2_ij / (c sigma_i sigma_j))
    (1: our reading of the paper's kernel; 2: the other, see docs/decisions.md). Gradients flow through the values of d2, sigma, S and tau;
    which entries top-k picks is not differentiated. Runs in float32 with autocast off.
    """
    h, unbatched = _as_batched(h)
    with torch.autocast(device_type=h.device.type, enabled=False):
        d2 = pairwise_d2(h, metric)  # step 1
        sigma = _sigma(d2, k)  # step 2
        S = torch.exp(-d2 / (kernel_scale * sigma.unsqueeze(-1) * sigma.unsqueeze(-2)))  # step 3
        n = d2.shape[-1]
        eye = torch.eye(n, device=d2.device, dtype=d2.dtype)
        tau = torch.topk(S, k + 1, dim=-1).values[..., k]  # step 4: S_ii = 1 is a row maximum
        A_adj = F.relu(S - tau.unsqueeze(-1)) * (1.0 - eye)
        A_sym = A_adj + A_adj.transpose(-1, -2)  # step 5
        A_star = A_sym + eye
        dinv = A_star.sum(-1).rsqrt()  # degree >= 1 thanks to the self-loop
        A_norm = dinv.unsqueeze(-1) * A_star * dinv.unsqueeze(-2)
    if return_parts:
        parts = GraphParts(d2, sigma, S, tau, A_adj, A_sym, A_norm)
        return GraphParts(*(p.squeeze(0) for p in parts)) if unbatched else parts
    return A_norm.squeeze(0) if unbatched else A_norm


class SparseGraph(NamedTuple):
    """A_norm as an edge list over the flattened batch (node b*N + i), sorted by row.

    The matrix is symmetric (A_norm is); `propagate`'s backward relies on it.

    rows/cols/values: `(nnz,)`; offsets: `(B*N,)` start of each row in the list (embedding_bag
    form). Every row holds its self-loop, so no bag is empty.
    """
    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    offsets: torch.Tensor
    batch: int
    n: int

    def to_dense(self) -> torch.Tensor:
        """`(B, N, N)` dense A_norm (tests and notebooks)."""
        bn = self.batch * self.n
        dense = torch.zeros(bn, bn, device=self.values.device, dtype=self.values.dtype)
        dense = dense.index_put((self.rows, self.cols), self.values, accumulate=True)
        blocks = dense.reshape(self.batch, self.n, self.batch, self.n)
        return torch.stack([blocks[b, :, b] for b in range(self.batch)])


def build_sparse_graph(h: torch.Tensor, k: int, metric: torch.Tensor | None = None,
                       kernel_scale: float = 1.0) -> SparseGraph:
    """The same A_norm as `build_graph`, kept as its ~(2K-1) non-zeros a row.

    Shortcut: S_ij > S_ij' iff d2_ij/sigma_j < d2_ij'/sigma_j' within a row (sigma_i > 0 is a
    row constant), so top-k runs on d2 / sigma_j (one pass over N x N) and the kernel is
    evaluated on the K selected entries only.
    """
    h, _ = _as_batched(h)
    with torch.autocast(device_type=h.device.type, enabled=False):
        d2 = pairwise_d2(h, metric)
        B, n, _ = d2.shape
        sigma = _sigma(d2, k)
        # row order of S_ij = order of d2_ij / sigma_j (one pass, in place unless autograd
        # needs d2); S_ij = exp(-ranked_ij / (c sigma_i)) only for the K picked
        inv_sigma_j = sigma.reciprocal().unsqueeze(-2)
        grad = torch.is_grad_enabled() and d2.requires_grad
        ranked = d2 * inv_sigma_j if grad else d2.mul_(inv_sigma_j)
        ranked.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))  # self excluded from the top-k
        idx = torch.topk(ranked, k, dim=-1, largest=False).indices  # (B, N, K), affinity order
        top_s = torch.exp(-ranked.gather(-1, idx) / (kernel_scale * sigma.unsqueeze(-1)))
        w = F.relu(top_s[..., : k - 1] - top_s[..., k - 1:])  # K-1 out-edges; the K-th is tau
        # flatten the batch: node b*N + i
        base = (torch.arange(B, device=d2.device) * n).view(B, 1, 1)
        src = (torch.arange(n, device=d2.device).view(1, n, 1) + base).expand(B, n, k - 1)
        dst = idx[..., : k - 1] + base
        node = torch.arange(B * n, device=d2.device)
        # A* = I + A_adj + A_adj^T as one list: self-loops, out-edges (i, j), in-edges (j, i)
        rows = torch.cat([node, src.reshape(-1), dst.reshape(-1)])
        cols = torch.cat([node, dst.reshape(-1), src.reshape(-1)])
        vals = torch.cat([torch.ones(B * n, device=d2.device), w.reshape(-1), w.reshape(-1)])
        deg = torch.zeros(B * n, device=d2.device).index_add(0, rows, vals)
        dinv = deg.rsqrt()
        # index_select, not dinv[rows]: advanced indexing's backward (index_put_ with
        # accumulate) sums in a thread-dependent order on CPU; index_select's (index_add) does not
        vals = vals * dinv.index_select(0, rows) * dinv.index_select(0, cols)
        order = torch.argsort(rows.int(), stable=True)  # int32 keys sort in half the time
        rows, cols, vals = rows[order], cols[order], vals[order]
        counts = torch.bincount(rows, minlength=B * n)
        offsets = torch.cumsum(counts, 0) - counts
    return SparseGraph(rows, cols, vals, offsets, B, n)


class _SymmetricBag(torch.autograd.Function):
    """A x as an embedding_bag sum, for a symmetric edge-list A (A_norm is).

    Autograd's own embedding_bag backward for x sorts the indices on every call (on CPU a third
    of a quick training step); with A^T = A the gradient A^T g is the same bag sum over g. The
    edge weights' gradient <g_row, x_col> is computed only when they need one (graph built on
    trainable features).
    """

    @staticmethod
    def forward(ctx, x, cols, offsets, values):  # x (B*N, F) -> (B*N, F)
        ctx.save_for_backward(x, cols, offsets, values)
        return F.embedding_bag(cols, x, offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, g):
        x, cols, offsets, values = ctx.saved_tensors
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = F.embedding_bag(cols, g.contiguous(), offsets, mode="sum", per_sample_weights=values)
        if ctx.needs_input_grad[3]:
            # <g_row, x_col> per edge through torch's own kernel, which never materialises the
            # (nnz, F) gathers (at the paper's size 0.25 GB per layer); x detached, so the
            # sorting backward for x is not run
            with torch.enable_grad():
                v = values.detach().requires_grad_(True)
                y = F.embedding_bag(cols, x.detach(), offsets, mode="sum", per_sample_weights=v)
                gv, = torch.autograd.grad(y, v, g)
        return gx, None, None, gv


def propagate(graph: torch.Tensor | SparseGraph, x: torch.Tensor) -> torch.Tensor:
    """A_norm x for x `(B, N, F)`, with A_norm dense `(B, N, N)` or a `SparseGraph`."""
    if isinstance(graph, SparseGraph):
        B, n, f = x.shape
        out = _SymmetricBag.apply(x.reshape(B * n, f), graph.cols, graph.offsets,
                                  graph.values.to(x.dtype))
        return out.reshape(B, n, f)
    return torch.bmm(graph.to(x.dtype), x)


class SAG(nn.Module):
    """Graph on F_pre + P GCN layers: (B, N, dim) -> F_SAG (B, N, hidden).

    Widths dim -> hidden -> ... -> hidden, no bias (the paper's rule has none). He init keeps
    the feature scale through the ReLU stack, so F_SAG reaches JFF at a scale comparable to
    F_pre. metric_proj adds W_phi `(dim, dim)`, initialised to the identity (plain distances
    at the start). sparse: edge-list propagation (default, faster; see module docstring).
    kernel_scale: the constant c of the kernel (see `build_graph`).
    """

    def __init__(self, dim: int, hidden: int, k: int, layers: int, metric_proj: bool = False,
                 sparse: bool = True, kernel_scale: float = 1.0) -> None:
        super().__init__()
        if layers < 1 or k < 2:
            raise ValueError(f"need layers >= 1 and k >= 2, got layers={layers}, k={k}")
        self.k, self.sparse, self.kernel_scale = k, sparse, kernel_scale
        widths = [dim] + [hidden] * layers
        self.gcn = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:]))
        for lin in self.gcn:
            nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
        self.metric = nn.Parameter(torch.eye(dim)) if metric_proj else None

    def graph(self, h: torch.Tensor) -> torch.Tensor | SparseGraph:
        if self.sparse:
            return build_sparse_graph(h, self.k, self.metric, kernel_scale=self.kernel_scale)
        return build_graph(h, self.k, self.metric, kernel_scale=self.kernel_scale)

    def gcn_layers(self, graph: torch.Tensor | SparseGraph, h: torch.Tensor) -> torch.Tensor:
        """The P GCN layers on a prebuilt graph: h (B, N, dim) -> (B, N, hidden)."""
        f = h
        for lin in self.gcn:
            f = propagate(graph, lin(f)).relu_()  # A (F W) == (A F) W, cheaper with hidden < dim
        return f

    def forward(self, h: torch.Tensor, graph_from: torch.Tensor | None = None) -> torch.Tensor:
        """F_SAG of h `(B, N, dim)` or `(N, dim)`; the graph is built on graph_from (same shape
        as h, e.g. the raw taps) when given, else on h itself."""
        unbatched = h.dim() == 2
        h = h.unsqueeze(0) if unbatched else h
        g = h if graph_from is None else (graph_from.unsqueeze(0) if unbatched else graph_from)
        f = self.gcn_layers(self.graph(g), h)
        return f.squeeze(0) if unbatched else f
