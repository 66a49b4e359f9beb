# %% md
# # 03. The Self-Attention Graph: by hand on 7 nodes, then on an image, then explored
#
# *About 35 minutes, exercises 35 more. Difficulty: intermediate (lesson 01 first; graphs and
# nearest neighbours).*
#
# **Learning objectives.** After this lesson you can
# 1. build the SAG's adjacency (paper, Section 3.3) step by step on a graph small enough to check
#    by hand: distances d2, local scales sigma, affinities S, thresholds tau, A_adj, A_sym, A_norm;
# 2. read every step on a real image, with each matrix's colour bar and sigma and tau as images;
# 3. use the explorer to see a patch's feature-space neighbours on the image and in the graph;
# 4. *measure* the paper's claim that the graph is non-local (neighbours far apart in the image),
#    per image and over a class.
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import torch

from bagclip import analysis as an, course, viz
from bagclip.sag import build_graph, build_sparse_graph

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
# %% md
# ## 1. Seven nodes, by hand
# Seven patches with 2-D features: two tight groups and a loner. With K = 3 each node keeps
# K - 1 = 2 out-edges.
#
# 1. d2_ij = ||h_i - h_j||^2
# 2. sigma_i = distance to the K-th nearest neighbour (self excluded)
# 3. S_ij = exp(-d2_ij / (sigma_i sigma_j))   (self-tuning: dense regions use small scales)
# 4. tau_i = the K-th largest S_ij (j != i); A_adj_ij = relu(S_ij - tau_i), zero diagonal
# 5. A_sym = A_adj + A_adj^T; A* = A_sym + I; A_norm = D*^-1/2 A* D*^-1/2
# %%
h = torch.tensor([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [0.4, 0.5],   # group a
                  [3.0, 3.0], [3.3, 2.8],                           # group b
                  [1.8, 0.2]])                                      # the loner
names = ["a0", "a1", "a2", "a3", "b0", "b1", "x"]
K = 3
parts = build_graph(h, K, return_parts=True)

# by hand, with numpy only
H = h.numpy().astype(np.float64)
d2 = ((H[:, None] - H[None]) ** 2).sum(-1)
sigma = np.sqrt(np.sort(d2, axis=1)[:, K])           # column 0 is the node itself
S = np.exp(-d2 / np.outer(sigma, sigma))
S_off = S.copy(); np.fill_diagonal(S_off, -np.inf)
tau = np.sort(S_off, axis=1)[:, ::-1][:, K - 1]      # K-th largest, self excluded
A_adj = np.maximum(S - tau[:, None], 0); np.fill_diagonal(A_adj, 0)
A_sym = A_adj + A_adj.T
A_star = A_sym + np.eye(len(H))
dinv = 1 / np.sqrt(A_star.sum(1))
A_norm = dinv[:, None] * A_star * dinv[None]

for name, mine in (("d2", d2), ("sigma", sigma), ("S", S), ("tau", tau), ("A_adj", A_adj),
                   ("A_sym", A_sym), ("A_norm", A_norm)):
    assert np.allclose(getattr(parts, name).double().numpy(), mine, atol=1e-5), name
assert ((A_adj > 0).sum(1) <= K - 1).all()  # each node keeps at most K - 1 out-edges
print("every step by hand equals bagclip.sag.build_graph")
print("out-edges:", {n: [names[j] for j in np.flatnonzero(A_adj[i])] for i, n in enumerate(names)})
viz.plot_hand_graph(H, parts, names)
# %% md
# Notice the loner x: it has no close neighbours, yet it keeps two out-edges, to whatever is
# least far. Notice too that the affinity order is not the distance order: S_ij depends on
# sigma_j as well, so a node in a sparse region can be "closer" in affinity.
#
# ## 2. The same steps on one image
# Node features are one tap's F_pre (here the last tap of the frozen backbone): N = G x G
# patches. Matrices are N x N (node i down, node j across); sigma, tau and the degree are shown
# on the patch grid with the defect outlined.
# %%
sample = next(s for s in lab.target if s.label and s.defect_type in ("crack", "scratch"))
image, mask, tokens = lab.view(sample)
G = bb.grid
feat = tokens.patches[0, -1]
parts = an.sag_parts(feat, cfg.k)
viz.plot_graph_steps(parts, G, cfg.k, image, mask)
# %%
dense = parts.A_norm
sparse = build_sparse_graph(feat, cfg.k).to_dense()[0]
assert torch.allclose(dense, sparse, atol=1e-5)  # the edge list the SAG runs on is the same graph
out_deg = (parts.A_adj > 0).sum(-1)
assert int(out_deg.max()) <= cfg.k - 1
print(f"N = {G * G} nodes, K = {cfg.k}: out-edges per node <= {cfg.k - 1}; "
      f"edges in A_sym per node: mean {an.degrees(parts.A_sym).mean():.1f}, max {an.degrees(parts.A_sym).max()}")
print(f"non-zeros of A_norm: {int((dense > 0).sum())} of {G ** 4} ({(dense > 0).float().mean():.1%})")
# %% md
# ## 3. The SAG explorer
# Pick a patch with the slider, or click a cell of the patch grid (red cells touch the defect),
# and choose K. You see the patch (gold) and its neighbours outlined on the image (colour =
# edge weight), its edges in the graph over the patch grid (solid: spatially adjacent, dashed:
# far; faint: the neighbours' own edges, two hops), the edge weights, where its degree sits in the
# degree histogram, and the share of its neighbours that are adjacent vs far, next to the
# image's mean and to what edges that ignore position would give.
# %%
explorer = viz.SAGExplorer(image, feat, G, k=cfg.k, mask=mask,
                             k_values=[3, 5, cfg.k, 15, 20, 30],
                             title=f"{sample.class_name}/{sample.defect_type}: SAG of the last tap")
explorer.widget
# %%
# the explorer's numbers, for the selected defect patch
st = explorer.stats()
print(f"patch {st['node']}: {len(st['neighbours'])} neighbours, {st['adjacent_share']:.0%} adjacent; "
      f"image mean {st['image_adjacent_share']:.0%}; position-blind edges would give "
      f"{st['baseline_adjacent_share']:.0%}")
# %% md
# ## 4. Is the graph non-local? Measured, over a class
# The paper argues that SAG links patches by *content*, wherever they are, which plain
# convolution or local attention cannot. Measure it: for every image of one class, the share of
# SAG neighbours that are spatially adjacent (Chebyshev distance 1 on the patch grid) vs far.
# If edges were purely local the adjacent share would be near 1; if position were ignored it
# would be the dotted baseline.
# %%
cls = sample.class_name
imgs = [s for s in lab.target if s.class_name == cls]
feats = [lab.view(s)[2].patches[0, -1] for s in imgs]
summary = an.nonlocal_summary(feats, G, cfg.k, names=[f"{s.defect_type}/{s.image_path.stem}" for s in imgs])
viz.plot_nonlocal(summary, f"class {cls}: share of SAG neighbours adjacent vs far (K = {cfg.k})")
# %%
print(summary[["adjacent", "far", "mean_edge_distance"]].describe().loc[["mean", "std", "min", "max"]].round(3))
far_share = summary["far"].mean()
print(f"over {len(imgs)} images of {cls}: {far_share:.0%} of SAG neighbours are not adjacent "
      f"(mean edge length {summary.mean_edge_distance.mean():.1f} patches)")
assert summary["adjacent"].mean() > summary["position_blind_adjacent"].iloc[0]  # content still favours nearby patches
# %% md
# ## Summary
# - Six steps build A_norm; on 7 nodes every one of them matches a hand computation.
# - K fixes the sparsity: each node keeps K - 1 out-edges; symmetrising adds in-edges, so
#   degrees vary (hubs appear).
# - The explorer shows neighbourhoods in feature space; the measured adjacent share tells how
#   non-local they are, per patch, per image and per class.
#
# ## Exercises
# Solutions: `notebooks/solutions/03_sag.ipynb`.
# 1. *(10 min, easy)* In the explorer, compare a defect patch with a background patch at K = 5
#    and K = 30: which one's neighbours are more spread out on the image, and why?
# 2. *(10 min, medium)* Measure `an.nonlocal_summary` on an earlier tap (`patches[0, 0]`): are
#    shallow features more local?
# 3. *(15 min, medium)* On the 7-node graph, move the loner x next to group a: which tau
#    changes, and which edges?
