# %% md
# # 04. Propagation: the GCN, over-smoothing, and Joint Feature Fusion
#
# *About 30 minutes, exercises 35 more. Difficulty: intermediate (lesson 03 first).*
#
# **Learning objectives.** After this lesson you can
# 1. run the SAG's GCN, F^(p+1) = relu(A_norm F^(p) W^(p)) (paper, Section 3.4), and check one
#    layer by hand;
# 2. *measure* over-smoothing of the real GCN against its depth P, with two quantities: the mean
#    pairwise cosine of node features and their Dirichlet energy on the graph;
# 3. explain why JFF (Section 3.5) fuses F_pre with F_SAG rather than using either alone, and
#    compare the three on trained heads.
# %% [parameters]
MODE = "quick"
# %%
import torch

from bagclip import analysis as an, course, viz
from bagclip.safr import concat_taps, split_taps
from bagclip.sag import SAG, build_graph

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
sample = next(s for s in lab.target if s.label and s.defect_type != "subtle")
image, mask, tokens = lab.view(sample)
h = tokens.patches[0, -1]
G = bb.grid
# %% md
# ## 1. One GCN layer by hand
# %%
torch.manual_seed(0)
sag = SAG(h.shape[-1], cfg.gcn_hidden, cfg.k, cfg.gcn_layers)
A = build_graph(h, cfg.k)
with torch.no_grad():
    f_sag = sag(h)
    f = h
    for lin in sag.gcn:                          # F <- relu(A_norm F W), P times, no bias
        f = torch.relu(A @ f @ lin.weight.T)
assert torch.allclose(f_sag, f, atol=1e-4)
print(f"F_pre {tuple(h.shape)} -> F_SAG {tuple(f_sag.shape)} after P = {cfg.gcn_layers} layers: "
      f"package == relu(A F W) by hand")
# %% md
# ## 2. Over-smoothing, measured on the real GCN
# Each layer averages a node with its neighbours. Repeat it often enough and all nodes carry the
# same feature: defects become invisible. Two measures of F_SAG at depth P:
# - **mean pairwise cosine** of node features (1 = all alike);
# - **Dirichlet energy** tr(F^T (I - A_norm) F) / ||F||^2 = 1/2 sum_ij A*_ij ||f_i/sqrt(d_i) -
#   f_j/sqrt(d_j)||^2 / ||F||^2: how much features differ *across edges* (0 = perfectly smooth).
#
# For each P, `an.oversmoothing` builds the real `SAG(D, h, K, P)` with the heads' He init
# (three seeds) and measures F_SAG on this image's graph. P = 0 is F_pre itself.
# %%
df = an.oversmoothing(h, cfg.k, cfg.gcn_hidden, depths=range(1, 9), seeds=(0, 1, 2))
viz.plot_oversmoothing(df, paper_p=5, title=f"{sample.class_name}/{sample.defect_type}: over-smoothing "
                         f"of F_SAG against GCN depth P (untrained weights, 3 seeds; K = {cfg.k})")
# %%
table = df.groupby("p")[["mean_cos", "dirichlet"]].mean()
table.round(4).T
# %%
# self-check: the Dirichlet energy equals its edge-sum form, by hand
f = torch.randn(h.shape[0], 8, generator=torch.Generator().manual_seed(0)).double()
parts = build_graph(h, cfg.k, return_parts=True)
A_star = (parts.A_sym + torch.eye(h.shape[0])).double()
d = A_star.sum(1)
g = f / d.sqrt()[:, None]
edge_sum = 0.5 * (A_star * ((g[:, None] - g[None]) ** 2).sum(-1)).sum()
assert abs(an.dirichlet_energy(f, parts.A_norm, normalise=False) - float(edge_sum)) < 1e-6 * float(edge_sum)
assert table.dirichlet.iloc[-1] < table.dirichlet.iloc[0]  # deep stacks are smoother than F_pre
print("Dirichlet energy: trace form == edge sum; energy at P = 8 below F_pre's")
first, last = table.index[0], table.index[-1]
print(f"from P = {first} to P = {last}: mean cosine {table.mean_cos[first]:.3f} -> {table.mean_cos[last]:.3f} "
      f"({'rises' if table.mean_cos[last] > table.mean_cos[first] else 'does not rise'}), Dirichlet energy "
      f"{table.dirichlet[first]:.4f} -> {table.dirichlet[last]:.4f}")
# %% md
# Training counteracts part of this (the weights W^(p) learn to keep contrasts), and JFF keeps
# F_pre beside F_SAG, so the fused feature never relies on propagated features alone. The
# paper reports (quoted) its best depth at P = 5 and a "significant decline" at 6-7; lesson 08
# sweeps it here.
#
# ## 3. Joint Feature Fusion: F_pre, F_SAG and their fusion
# Psi = normalize([F_pre, F_SAG] W_proj) lives in CLIP's joint space, where it meets T. With the
# trained heads (shared by the lessons, trained once): how well does each feature separate defect
# patches from normal ones (Fisher-style ratio `an.separation`), and what does each look like in 2-D?
# %%
heads = course.trained_heads(lab).model.cpu()
with torch.no_grad():
    pt = tokens.patches.float()
    f_pre_all = split_taps(heads.safr(concat_taps(pt)), len(cfg.taps)) if heads.safr is not None else pt
    l = len(cfg.taps) - 1
    f_pre = f_pre_all[:, l]
    f_sag = heads.sag[l](f_pre)
    psi = heads.jff[l](f_pre, f_sag)
    psi_pkg = heads.local_features(pt)[:, l]
assert torch.allclose(psi, psi_pkg, atol=1e-5)  # the same path as the model's forward
defect = an.patch_fraction(mask, G) > 0.25
viz.plot_scatter_2d({"F_pre (after SAFR)": f_pre[0], "F_SAG": f_sag[0], "Psi = JFF([F_pre, F_SAG])": psi[0]},
                      defect, f"{sample.class_name}/{sample.defect_type}, last tap, trained heads (PCA)")
# %%
sep = course.separations(lab, heads, n=16)  # per image and tap, from heads.stages (the path checked above)
sep = sep[sep.tap == f"block {cfg.taps[l]}"].set_index("image")[["F_pre", "F_SAG", "Psi"]]
print(f"separation of defect vs normal patches at the last tap (higher = easier), {len(sep)} target "
      "images never trained on:")
sep.describe().loc[["mean", "std"]].round(3)
# %% md
# ## Summary
# - A GCN layer is relu(A_norm F W); the package equals the hand loop.
# - Stacking layers smooths features: the self-check cell prints how mean cosine and Dirichlet
#   energy move with P on this image, the mechanism the paper gives for its decline at P = 6-7.
# - JFF keeps F_pre beside F_SAG and projects both into the text space; compare the three
#   separations to see what each contributes on unseen classes.
#
# ## Exercises
# Solutions: `notebooks/solutions/04_propagation_jff.ipynb`.
# 1. *(10 min, easy)* Repeat the over-smoothing curve with K = 5 and K = 30. Does a denser graph
#    smooth faster?
# 2. *(10 min, medium)* Compute the separations for every tap, not only the last. Which tap
#    profits most from the graph (Psi against F_pre)?
# 3. *(15 min, medium)* Knock F_SAG out of the trained heads at inference (each SAG replaced by
#    zeros, so JFF sees F_pre only) and compare pixel AUROC on the target sets. How is this
#    different from training without the SAG (`use_sag=False`, lesson 07's Table 3)?
