"""Cost of one SAG at the paper's size (N = 1369, D = 1024, K = 15, P = 5, h = 384), one image.

Times (median of repeats, under no_grad) and peak memory (torch profiler: the running sum of
allocations and frees, per op) of graph construction and GCN propagation, dense and edge-list,
beside two references: the floor (h @ h.T, the N x N x D product every distance needs; the
paper's 3.84 GFLOPs) and one ViT-L-14-336 forward at 518 (random weights). Targets: whole SAG
<= 3x floor and <= 2% of the backbone (paper, A6000: 11 ms / 121.6 ms = 9%).

    python benchmarks/sag.py [--no-backbone] [--repeats 7] [--threads T]

Result (2026-11-29, 2 CPU cores, nothing else running, torch 2.14.1, float32, best of 7):
    component             best ms   median  peak MiB  x floor (median)  % backbone
    floor h @ h.T            12.4     12.8       7.1     1.00     1.00        0.26
    graph dense              37.5     38.3      57.3     3.03     2.98        0.78
    graph sparse             23.2     23.8      16.5     1.88     1.85        0.48
    GCN dense                33.8     34.3       6.0     2.73     2.67        0.70
    GCN sparse               12.3     12.7       6.0     0.99     0.99        0.26
    SAG dense                72.2     73.2      57.3     5.83     5.69        1.49
    SAG sparse               36.3     37.0      16.5     2.93     2.88        0.75
    ViT-L-14-336 @518      4923.8   4923.8       nan   398.02   383.27      100.00
    faster SAG: sparse; target <= 3x floor: 2.93x (met; 2.89-2.96x over five runs, medians
    2.88-2.95x)

    History (same machine, alone): 3.66x with log S over N x N and materialised row norms;
    3.2-3.3x once the graph ranked d2 / sigma_j and evaluated the kernel on the K picked entries
    only; 2.9x now: the distance product multiplies the blocks on and above the diagonal and
    mirrors the rest (2/3 of the floor's FLOPs, as a BLAS syrk would; the floor here stays the
    full h @ h.T), the ranking is in place when autograd does not need d2, the edge list sorts
    int32 keys. What is left above the floor is two top-k passes over N x N (about 4 ms each:
    sigma needs the K-th nearest distance before the affinities can be ranked) and the GCN
    (1.0x floor, its five matrix products at the paper's widths). Earlier records measured
    beside other jobs read lower ratios (2.4x): contention slowed the floor more than the rest.
"""
from __future__ import annotations

import argparse

import torch

import statistics

from bagclip.cost import median_ms, paper_size_parameters, peak_mb, times_ms
from bagclip.sag import SAG, build_graph, build_sparse_graph

CPU = torch.device("cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-backbone", action="store_true", help="skip the ViT-L-14-336 forward")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N, D, K, P, hid = 1369, 1024, 15, 5, 384
    h = torch.randn(1, N, D)
    sag = SAG(D, hid, K, P).eval()
    r = args.repeats
    print(f"N={N} D={D} K={K} P={P} hidden={hid}; threads={torch.get_num_threads()}; "
          f"torch {torch.__version__}; median of {r}")

    rows = []  # (name, ms, MiB)
    with torch.no_grad():
        A_dense, A_sparse = build_graph(h, K), build_sparse_graph(h, K)
        ht = h[0].t().contiguous()
        cases = {
            "floor h @ h.T": lambda: h[0] @ ht,
            "graph dense": lambda: build_graph(h, K),
            "graph sparse": lambda: build_sparse_graph(h, K),
            "GCN dense": lambda: sag.gcn_layers(A_dense, h),
            "GCN sparse": lambda: sag.gcn_layers(A_sparse, h),
        }
        for mode in ("dense", "sparse"):
            def whole(mode=mode):
                sag.sparse = mode == "sparse"
                return sag(h)
            cases[f"SAG {mode}"] = whole
        times = times_ms(cases, CPU, r)
        for name, fn in cases.items():
            rows.append((name, min(times[name]), statistics.median(times[name]), peak_mb(fn, CPU)))
        sag.sparse = True
        assert torch.allclose(sag.gcn_layers(A_dense, h), sag.gcn_layers(A_sparse, h), atol=1e-4, rtol=1e-4)

        backbone_ms = None
        if not args.no_backbone:
            import open_clip

            vit = open_clip.create_model("ViT-L-14-336", pretrained=None, force_image_size=518).eval()
            x = torch.randn(1, 3, 518, 518)
            backbone_ms = median_ms({"vit": lambda: vit.encode_image(x)}, CPU, max(3, r // 2))["vit"]
            rows.append(("ViT-L-14-336 @518", backbone_ms, backbone_ms, float("nan")))
            del vit

    floor, floor_med = rows[0][1], rows[0][2]
    print(f"{'component':<20}{'best ms':>9}{'median':>9}{'peak MiB':>10}{'x floor':>9}{'(median)':>9}{'% backbone':>12}")
    for name, best, med, mb in rows:
        pct = f"{100 * med / backbone_ms:.2f}" if backbone_ms else "-"
        print(f"{name:<20}{best:>9.1f}{med:>9.1f}{mb:>10.1f}{best / floor:>9.2f}{med / floor_med:>9.2f}{pct:>12}")
    t = {n: (best, med) for n, best, med, _ in rows}
    pick = min(("dense", "sparse"), key=lambda m: t[f"SAG {m}"][0])
    print(f"faster SAG: {pick} ({t['SAG dense'][0] / t['SAG sparse'][0]:.2f}x dense/sparse); "
          f"target <= 3x floor (best of {r}): {t[f'SAG {pick}'][0] / floor:.2f}x "
          f"(medians: {t[f'SAG {pick}'][1] / floor_med:.2f}x)"
          + (f"; <= 2% backbone: {100 * t[f'SAG {pick}'][1] / backbone_ms:.2f}%" if backbone_ms else ""))

    params = paper_size_parameters().set_index("module")
    print(f"params: one SAG {params.ours_m['SAG (tap 6)']:.3f} M (paper 1.08 M); "
          f"all trainable heads at Config() {params.ours_m['heads total']:.2f} M (paper 13 M)")


if __name__ == "__main__":
    main()
