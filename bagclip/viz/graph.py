"""The graph, drawn: a hand-sized graph with its matrices (lesson 03), every construction step
of an image's graph, the patch graph without a hairball, non-locality, and what propagation
does to features (lesson 04: over-smoothing, 2-D projections).

Graphs come in as `bagclip.analysis.sag_parts` (d2, S, A_adj, A_sym, A_norm, sigma, tau).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import analysis as an
from .base import bare_axes, contour, heatmap, new_figure, overlay


def plot_hand_graph(points, parts, names: Sequence[str] | None = None):
    """A hand-sized graph: 2-D node features with their edges (width ~ A_sym), and the matrices
    d2, S, A_adj, A_norm with their values written in the cells."""
    pts = np.asarray(points, float)
    n = len(pts)
    names = list(names) if names is not None else [str(i) for i in range(n)]
    fig = new_figure(15, 3.4)
    axes = fig.subplots(1, 5)
    ax = axes[0]
    A = np.asarray(parts.A_sym)
    wmax = A.max() if A.max() > 0 else 1
    for i in range(n):
        for j in range(i + 1, n):
            if A[i, j] > 0:
                ax.plot(*pts[[i, j]].T, color="tab:blue", lw=0.5 + 3 * A[i, j] / wmax, alpha=0.8)
    ax.scatter(*pts.T, s=120, color="tab:orange", zorder=3)
    for i, nm in enumerate(names):
        ax.annotate(nm, pts[i], ha="center", va="center", fontsize=8, zorder=4)
    ax.set_title("features h_i (2-D) and edges of A_sym", fontsize=8)
    ax.set_aspect("equal"), ax.set_xlabel("feature 1", fontsize=7), ax.set_ylabel("feature 2", fontsize=7)
    for ax, (m, t, lab) in zip(axes[1:], ((parts.d2, "d2_ij", "squared distance"),
                                          (parts.S, "S_ij", "affinity"),
                                          (parts.A_adj, "A_adj = relu(S - tau_i)", "weight"),
                                          (parts.A_norm, "A_norm", "weight"))):
        m = np.asarray(m)
        heatmap(ax, m, t, lab, "magma_r", xlabel="node j", ylabel="node i")
        ax.set_xticks(range(n), names, fontsize=6), ax.set_yticks(range(n), names, fontsize=6)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if m[i, j] > 0.6 * m.max() else "black")
    return fig


def plot_graph_steps(parts, grid: int, k: int, image=None, mask=None):
    """Every construction step of one image's graph, each with a labelled colour bar: d2, S,
    A_adj, A_norm (N x N, node index on both axes) and sigma, tau, degree as images over the
    patch grid."""
    fig = new_figure(16, 7.4)
    axes = fig.subplots(2, 4)
    for ax, (m, t, lab, cmap) in zip(axes[0], (
            (parts.d2, "1. d2_ij = ||h_i - h_j||^2", "squared distance", "magma"),
            (parts.S, "3. S_ij = exp(-d2 / sigma_i sigma_j)", "affinity S", "magma"),
            (parts.A_adj, f"4. A_adj = relu(S - tau_i), K={k}", "edge weight", "magma"),
            (parts.A_norm, "5. A_norm = D^-1/2 (A_sym + I) D^-1/2", "normalised weight", "magma"))):
        heatmap(ax, np.asarray(m), t, lab, cmap, xlabel="node j", ylabel="node i")
    img_ax = axes[1, 0]
    if image is not None:
        img_ax.imshow(image if mask is None else overlay(np.asarray(image), np.asarray(mask, bool)))
        img_ax.set_title("image (defect in red)", fontsize=8)
    bare_axes(img_ax)
    G = grid
    heatmap(axes[1, 1], np.asarray(parts.sigma).reshape(G, G), "2. sigma_i (K-th neighbour distance)",
            "sigma", "viridis")
    heatmap(axes[1, 2], np.asarray(parts.tau).reshape(G, G), "4. tau_i (K-th largest affinity)",
            "tau", "viridis")
    heatmap(axes[1, 3], an.degrees(parts.A_sym).reshape(G, G), "5. degree in A_sym (edges)",
            "edges", "cividis")
    if mask is not None:
        for ax in axes[1, 1:]:
            contour(ax, np.asarray(an.patch_fraction(mask, G) > 0).reshape(G, G), "red")
    return fig


def draw_patch_graph(ax, A_sym, grid: int, node: int | None = None, highlight=None,
                     two_hop: bool = True, title: str = ""):
    """The graph over the patch grid without a hairball: every node a dot at its patch; only the
    edges of `node` (width and colour by weight, solid when spatially adjacent, dashed when far)
    and, faint, its neighbours' edges (two hops). highlight: (N,) bool, e.g. defect patches."""
    A = np.asarray(A_sym)
    G = grid
    r, c = np.divmod(np.arange(G * G), G)
    colors = np.where(np.asarray(highlight, bool), "tab:red", "0.75") if highlight is not None else "0.75"
    ax.scatter(c, r, s=6, c=colors, zorder=2)
    if node is not None:
        idx, w = an.neighbours(A, node)
        if two_hop:
            for j in idx:
                jj, _ = an.neighbours(A, j)
                for m in jj:
                    ax.plot([c[j], c[m]], [r[j], r[m]], color="0.6", lw=0.3, alpha=0.5, zorder=1)
        wmax = w.max() if len(w) else 1.0
        dist = an.grid_distance(G)[node]
        import matplotlib

        cmap = matplotlib.colormaps["viridis"]
        for j, wj in zip(idx, w):
            ax.plot([c[node], c[j]], [r[node], r[j]], color=cmap(wj / wmax), lw=0.8 + 2.5 * wj / wmax,
                    ls="-" if dist[j] <= 1 else "--", zorder=3)
        ax.scatter(c[idx], r[idx], s=24, c=[cmap(x / wmax) for x in w], edgecolors="k", linewidths=0.4, zorder=4)
        ax.scatter([c[node]], [r[node]], s=80, marker="*", c="gold", edgecolors="k", zorder=5)
    ax.set_xlim(-0.5, G - 0.5), ax.set_ylim(G - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    bare_axes(ax)


def patch_boxes(ax, nodes, weights, grid: int, size: int, wmax: float) -> None:
    import matplotlib
    from matplotlib.patches import Rectangle

    cmap = matplotlib.colormaps["viridis"]
    for j, wj in zip(nodes, weights):
        x, y, s = an.patch_box(j, grid, size)
        ax.add_patch(Rectangle((x, y), s, s, fill=False, lw=1.6, ec=cmap(wj / wmax)))


def plot_nonlocal(df, title: str = ""):
    """Adjacent vs far neighbour shares per image (a class), with the position-blind baseline."""
    fig = new_figure(7, 2.8)
    ax = fig.subplots()
    x = np.arange(len(df))
    ax.bar(x, df["adjacent"], color="tab:green", label="adjacent")
    ax.bar(x, df["far"], bottom=df["adjacent"], color="tab:purple", alpha=0.6, label="far")
    ax.axhline(float(df["position_blind_adjacent"].iloc[0]), color="k", ls=":", lw=1,
               label="adjacent share of position-blind edges")
    ax.set_xticks(x, [str(v) for v in df["image"]], rotation=60, fontsize=6)
    ax.set_ylabel("share of SAG neighbours"), ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper right"), ax.set_title(title, fontsize=9)
    return fig


def plot_oversmoothing(df, paper_p: int = 5, title: str = ""):
    """Mean pairwise cosine and normalised Dirichlet energy of F_SAG against GCN depth P
    (mean over seeds, min-max band); P = 0 is F_pre."""
    fig = new_figure(10, 3)
    axes = fig.subplots(1, 2)
    g = df.groupby("p")
    for ax, col, lab in ((axes[0], "mean_cos", "mean pairwise cosine (1 = all alike)"),
                         (axes[1], "dirichlet", "Dirichlet energy / ||F||^2 (0 = smooth)")):
        m, lo, hi = g[col].mean(), g[col].min(), g[col].max()
        ax.plot(m.index, m.values, "o-")
        ax.fill_between(m.index, lo.values, hi.values, alpha=0.2)
        ax.axvline(paper_p, color="grey", ls=":", lw=1, label=f"paper's P = {paper_p}")
        ax.set_xlabel("GCN layers P (0 = F_pre)"), ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_scatter_2d(groups: dict, labels, title: str = ""):
    """2-D PCA scatter of several feature sets (name -> (N, C)), coloured by patch label."""
    fig = new_figure(4 * len(groups), 3.4)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    lab = np.asarray(labels, bool)
    for ax, (name, f) in zip(axes, groups.items()):
        f = np.asarray(f, np.float64)
        f = f - f.mean(0)
        u, s, vt = np.linalg.svd(f, full_matrices=False)
        z = f @ vt[:2].T
        ax.scatter(*z[~lab].T, s=5, c="0.6", label="normal patch")
        ax.scatter(*z[lab].T, s=12, c="tab:red", label="defect patch")
        ax.set_title(name, fontsize=8), bare_axes(ax)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
