"""Speed cost of the deterministic edge-list SAG backward (issue 10), side by side.

The edge normalisation `vals * dinv[rows] * dinv[cols]` used advanced indexing, whose CPU
backward (index_put_ with accumulate) sums in a thread-dependent order: two trainings with the
same seed differed at 2 threads. `dinv.index_select(0, rows)` has the same forward; its backward
(index_add) is ordered. This times one forward + backward of the graph and GCN both ways,
round-robin, median of repeats.

    python benchmarks/determinism.py [--repeats 15] [--threads 2]

Result (2 CPU cores shared with another job, torch 2.14.1, median of 9):
    threads=2; quick (B=8, N=196, D=256): old 895.7 ms, new 676.5 ms, cost -24.5%
    threads=2; paper (B=8, N=1369, D=1024): old 6639.4 ms, new 5980.1 ms, cost -9.9%
No cost: the ordered form is not slower (the differences are within this machine's noise).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import bagclip.sag as S


def _graph_indexing(h, k, metric=None):
    """The old build_sparse_graph: identical except for dinv[rows] / dinv[cols]."""
    real = torch.Tensor.index_select

    def fake(self, dim, index):  # route the new code's index_select through advanced indexing
        return self[index] if dim == 0 and self.dim() == 1 else real(self, dim, index)

    torch.Tensor.index_select = fake
    try:
        return S.build_sparse_graph(h, k, metric)
    finally:
        torch.Tensor.index_select = real


def step(builder, h, lins, k):
    g = builder(h, k)
    f = h
    for lin in lins:
        f = F.relu(S.propagate(g, lin(f)))
    f.square().mean().backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads={a.threads}; torch {torch.__version__}; median of {a.repeats}, fwd+bwd")
    for name, (B, N, D, K, P, hid) in {"quick (B=8, N=196, D=256)": (8, 196, 256, 10, 3, 64),
                                       "paper (B=8, N=1369, D=1024)": (8, 1369, 1024, 15, 5, 384)}.items():
        g = torch.Generator().manual_seed(0)
        h = torch.randn(B, N, D, generator=g).requires_grad_(True)
        lins = [torch.nn.Linear(a_, b_, bias=False) for a_, b_ in zip([D] + [hid] * (P - 1), [hid] * P)]
        times = {"indexing (old)": [], "index_select (new)": []}
        builders = {"indexing (old)": _graph_indexing, "index_select (new)": S.build_sparse_graph}
        for _ in range(a.repeats):
            for key, b in builders.items():
                t = time.perf_counter()
                step(b, h, lins, K)
                times[key].append(time.perf_counter() - t)
        old, new = (statistics.median(v) * 1e3 for v in times.values())
        print(f"{name}: old {old:.1f} ms, new {new:.1f} ms, cost {100 * (new / old - 1):+.1f}%")


if __name__ == "__main__":
    main()
