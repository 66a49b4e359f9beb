"""Analysis the lessons used to do by hand: patch pooling, neighbourhoods and locality of the
SAG, over-smoothing of the GCN, raw text similarity per tap, thresholds and failure tables.

Every function here is tested against an independent computation (tests/test_analysis.py);
notebooks and `bagclip.viz` call them, so a lesson and a figure never compute a number twice.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

OUTCOMES = ("TP", "FP", "FN", "TN")  # image-level outcome labels at a threshold
PIXEL_CODES = {"TN": 0, "TP": 1, "FP": 2, "FN": 3}  # pixel_outcomes codes


# --- the patch grid -------------------------------------------------------------------------
def patch_fraction(mask, grid: int) -> np.ndarray:
    """Share of defect pixels in each patch: mask (H, W) -> (grid * grid,), row-major.

    Area pooling (adaptive average), so H and W need not be multiples of grid.
    """
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {tuple(m.shape)}")
    return F.adaptive_avg_pool2d(m[None, None], grid)[0, 0].flatten().numpy()


def patch_box(node: int, grid: int, size: int) -> tuple[float, float, float]:
    """(x0, y0, side) in pixels of patch `node` on a size x size image (row-major nodes)."""
    cell = size / grid
    r, c = divmod(int(node), grid)
    return c * cell, r * cell, cell


def grid_distance(grid: int) -> np.ndarray:
    """(N, N) Chebyshev distance between patches on the grid (1 = the 8 adjacent patches)."""
    r, c = np.divmod(np.arange(grid * grid), grid)
    return np.maximum(np.abs(r[:, None] - r[None]), np.abs(c[:, None] - c[None]))


# --- the graph ------------------------------------------------------------------------------
def sag_parts(h: torch.Tensor, k: int):
    """`bagclip.sag.build_graph(h, k, return_parts=True)` for one image's (N, D) features, on
    the CPU in float32 (notebooks and widgets index these as arrays)."""
    from .sag import build_graph

    return build_graph(h.detach().float().cpu(), k, return_parts=True)


def neighbours(A_sym, node: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) of the edges of `node` in the symmetric graph A_sym (N, N), self
    excluded, sorted by decreasing weight."""
    row = np.asarray(torch.as_tensor(A_sym)[node].detach().cpu(), dtype=np.float64).copy()
    row[node] = 0.0
    idx = np.flatnonzero(row > 0)
    order = np.argsort(-row[idx], kind="stable")
    return idx[order], row[idx][order]


def degrees(A_sym) -> np.ndarray:
    """Number of edges (self excluded) of every node of A_sym (N, N)."""
    a = np.asarray(torch.as_tensor(A_sym).detach().cpu()) > 0
    np.fill_diagonal(a, False)
    return a.sum(1)


def locality(A_sym, grid: int, radius: int = 1) -> np.ndarray:
    """Per node, the share of its graph neighbours that are spatially adjacent (Chebyshev
    distance <= radius on the patch grid): (N,) in [0, 1]; NaN for a node without edges.

    The paper's claim is that SAG edges are *non-local*: 1 - locality is the share of
    neighbours that are far away in the image.
    """
    a = np.asarray(torch.as_tensor(A_sym).detach().cpu()) > 0
    np.fill_diagonal(a, False)
    near = grid_distance(grid) <= radius
    n_edges = a.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_edges > 0, (a & near).sum(1) / np.maximum(n_edges, 1), np.nan)


def spatial_baseline(grid: int, radius: int = 1) -> float:
    """Share of adjacent patches among all other patches: the locality of a graph whose edges
    ignore position (uniformly random neighbours). Mean over nodes."""
    near = grid_distance(grid) <= radius
    n = grid * grid
    return float(((near.sum(1) - 1) / (n - 1)).mean())


def nonlocal_summary(features: Sequence[torch.Tensor], grid: int, k: int, radius: int = 1,
                     names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image: mean share of SAG neighbours adjacent (<= radius) and far, the mean
    spatial distance of an edge, and the baseline of position-blind edges. features: (N, D)
    tensors (one tap of each image)."""
    rows = []
    base = spatial_baseline(grid, radius)
    dist = grid_distance(grid)
    for i, h in enumerate(features):
        A = sag_parts(h, k).A_sym.numpy()
        loc = locality(A, grid, radius)
        a = A > 0
        np.fill_diagonal(a, False)
        rows.append({"image": names[i] if names is not None else i, "adjacent": float(np.nanmean(loc)),
                     "far": float(1 - np.nanmean(loc)), "mean_edge_distance": float(dist[a].mean()),
                     "position_blind_adjacent": base})
    return pd.DataFrame(rows)


# --- propagation ----------------------------------------------------------------------------
def mean_pairwise_cosine(f: torch.Tensor) -> float:
    """Mean cosine similarity over all ordered pairs i != j of the rows of f (N, C)."""
    z = F.normalize(f.detach().double(), dim=-1)
    n = z.shape[0]
    s = z.sum(0)
    return float(((s @ s) - (z * z).sum()) / (n * (n - 1)))


def dirichlet_energy(f: torch.Tensor, A_norm: torch.Tensor, normalise: bool = True) -> float:
    """tr(F^T (I - A_norm) F), divided by ||F||_F^2 when normalise (a Rayleigh quotient: 0 when
    every node carries the same degree-scaled feature, i.e. total over-smoothing).

    With A_norm = D*^-1/2 A* D*^-1/2 this equals 1/2 sum_ij A*_ij ||f_i/sqrt(d_i) - f_j/sqrt(d_j)||^2.
    """
    f = f.detach().double()
    a = torch.as_tensor(A_norm).detach().double().to(f.device)
    e = float((f * f).sum() - (f * (a @ f)).sum())
    if normalise:
        nrm = float((f * f).sum())
        return e / nrm if nrm > 0 else 0.0
    return e


@torch.no_grad()
def oversmoothing(h: torch.Tensor, k: int, hidden: int, depths: Sequence[int] = range(1, 9),
                  seeds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Over-smoothing of the real GCN (`bagclip.sag.SAG`, He init as the heads build it)
    against its depth P, on one image's features h (N, D).

    For every depth P and seed, F_SAG = SAG(D, hidden, k, P)(h) is measured: mean pairwise
    cosine and normalised Dirichlet energy on the image's graph. P = 0 rows measure F_pre = h
    itself. Returns a long frame: seed, p, mean_cos, dirichlet.
    """
    from .sag import SAG, build_graph

    h = h.detach().float()
    A = build_graph(h, k)
    rows = [{"seed": s, "p": 0, "mean_cos": mean_pairwise_cosine(h), "dirichlet": dirichlet_energy(h, A)}
            for s in seeds]
    for p in depths:
        for s in seeds:
            torch.manual_seed(s)
            f = SAG(h.shape[-1], hidden, k, int(p)).to(h.device)(h)
            rows.append({"seed": s, "p": int(p), "mean_cos": mean_pairwise_cosine(f),
                         "dirichlet": dirichlet_energy(f, A)})
    return pd.DataFrame(rows)


def separation(f, labels) -> float:
    """How far apart two groups of rows of f (N, C) are: the distance between the group means
    divided by the root mean squared distance of rows to their own group mean (a Fisher-style
    ratio; larger = easier to tell defect patches from normal ones). NaN if a group is empty."""
    x = np.asarray(torch.as_tensor(f).detach().cpu().double())
    y = np.asarray(labels).ravel() != 0
    if y.all() or not y.any():
        return math.nan
    m1, m0 = x[y].mean(0), x[~y].mean(0)
    within = np.concatenate([x[y] - m1, x[~y] - m0])
    return float(np.linalg.norm(m1 - m0) / np.sqrt((within ** 2).sum(1).mean()))


# --- the text side, per tap ------------------------------------------------------------------
@torch.no_grad()
def tap_text_maps(backbone, patches: torch.Tensor, text: torch.Tensor,
                  logit_scale: float = 100.0) -> torch.Tensor:
    """Raw (training-free) abnormal probability of every patch of every tap, (B, L, G, G) float32
    on the CPU: `ZeroShot.tap_probs` (each tap through CLIP's own ln_post and proj, compared
    with [T_N, T_A]). No trained head is involved."""
    from .zeroshot import ZeroShot

    return ZeroShot(backbone, tau=logit_scale).tap_probs(patches, text).float().cpu()


# --- thresholds and failures -----------------------------------------------------------------
def f1_max_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, F1) where predicting "anomalous" for score >= threshold maximises F1.

    Candidates are the distinct scores; ties go to the highest threshold. NaN, NaN when the
    labels hold no positive.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() != 0
    p = int(y.sum())
    if p == 0 or s.size == 0:
        return math.nan, math.nan
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    n = np.arange(1, s.size + 1)
    last = np.r_[s[1:] != s[:-1], True]  # end of each run of tied scores
    f1 = np.where(last, 2 * tp / (n + p), -1.0)
    best = int(np.argmax(f1))
    return float(s[best]), float(f1[best])


def outcomes(scores, labels, threshold) -> np.ndarray:
    """"TP" / "FP" / "FN" / "TN" per item for the decision score >= threshold (a number, or one
    per item: e.g. each image's class threshold, lesson 09)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() != 0
    pred = s >= threshold
    return np.where(pred, np.where(y, "TP", "FP"), np.where(y, "FN", "TN"))


def failure_table(samples: Sequence, scores, threshold) -> pd.DataFrame:
    """One row per sample: index, class, defect, label, score, outcome, error; sorted by error.

    error = how far the score sits on the wrong side of the threshold (score - threshold for a
    false positive, threshold - score for a false negative); correct decisions get the negative
    margin, so the worst mistakes come first and the safest correct calls last.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.array([int(x.label) for x in samples])
    out = outcomes(s, y, threshold)
    margin = np.where(y == 1, threshold - s, s - threshold)  # > 0: on the wrong side
    margin = np.where((out == "FP") | (out == "FN"), np.abs(margin), -np.abs(margin))
    df = pd.DataFrame({"index": np.arange(len(samples)), "class": [x.class_name for x in samples],
                       "defect": [x.defect_type for x in samples], "label": y, "score": s,
                       "outcome": out, "error": margin})
    return df.sort_values(["error", "index"], ascending=[False, True], kind="stable").reset_index(drop=True)


def filter_failures(df: pd.DataFrame, cls: str = "all", defect: str = "all",
                    kind: str = "errors") -> pd.DataFrame:
    """Rows of a failure_table by class, defect type and kind: "all", "errors" (FP + FN),
    or one of TP FP FN TN."""
    keep = np.ones(len(df), bool)
    if cls != "all":
        keep &= (df["class"] == cls).to_numpy()
    if defect != "all":
        keep &= (df["defect"] == defect).to_numpy()
    if kind == "errors":
        keep &= df["outcome"].isin(["FP", "FN"]).to_numpy()
    elif kind != "all":
        if kind not in OUTCOMES:
            raise ValueError(f"kind {kind!r}: choose all, errors, {', '.join(OUTCOMES)}")
        keep &= (df["outcome"] == kind).to_numpy()
    return df[keep].reset_index(drop=True)


def pixel_outcomes(anomaly_map, mask, threshold: float) -> np.ndarray:
    """(H, W) int codes of PIXEL_CODES (TN 0, TP 1, FP 2, FN 3) for map >= threshold."""
    m = np.asarray(anomaly_map, dtype=np.float64)
    g = np.asarray(mask) != 0
    if m.shape != g.shape:
        raise ValueError(f"map {m.shape} and mask {g.shape} differ")
    pred = m >= threshold
    return np.where(pred, np.where(g, 1, 2), np.where(g, 3, 0)).astype(np.int8)


def worst_patch(anomaly_map, mask, threshold: float, grid: int) -> int:
    """The patch holding the most wrong pixels (FP + FN) at this pixel threshold; ties go to
    the patch with the largest |map - mask| error. Row-major node index."""
    codes = pixel_outcomes(anomaly_map, mask, threshold)
    wrong = patch_fraction(codes >= 2, grid)
    err = patch_fraction(np.abs(np.asarray(anomaly_map, np.float64) - (np.asarray(mask) != 0)), grid)
    return int(np.lexsort((-err, -wrong))[0])


def chance_levels(labels) -> dict:
    """Expected metrics of a detector that ignores the image: AUROC 0.5, AP = the positive
    rate p, F1-max = 2p / (1 + p) (call everything anomalous)."""
    y = np.asarray(labels).ravel() != 0
    p = float(y.mean())
    return {"auroc": 0.5, "ap": p, "f1_max": 2 * p / (1 + p)}
