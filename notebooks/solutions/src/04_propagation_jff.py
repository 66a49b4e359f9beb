# %% md
# # 04. Propagation and Joint Feature Fusion: solutions to the exercises
#
# *The instructor's key for lesson 04. It rebuilds the lesson's state (the image, its tokens and
# the shared trained heads, read from the cache when the lesson ran first), then answers each
# exercise with a cell that computes the answer. The answers are whatever these cells print.*
# %% [parameters]
MODE = "quick"
# %%
import copy

import pandas as pd
import torch

from bagclip import analysis as an, course

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
sample = next(s for s in lab.target if s.label and s.defect_type != "subtle")
image, mask, tokens = lab.view(sample)
h = tokens.patches[0, -1]
G = bb.grid
heads = course.trained_heads(lab).model.cpu()
print(lab.label(), f"| {sample.class_name}/{sample.defect_type}, K = {cfg.k}, P = {cfg.gcn_layers}")
# %% md
# ## Exercise 1: over-smoothing at K = 5 and K = 30
# "Smooths faster" read as: a higher mean cosine (and a lower Dirichlet energy) at the same P.
# %%
curves = {k: an.oversmoothing(h, k, cfg.gcn_hidden, depths=range(1, 9), seeds=(0, 1, 2)).groupby("p")[
    ["mean_cos", "dirichlet"]].mean() for k in (5, cfg.k, 30)}
table = pd.concat(curves, names=["K"]).unstack("K")
display(table.round(4))
cos = table["mean_cos"]
faster = (cos[30] > cos[5]).mean()
print(f"K = 30 has the higher mean cosine at {100 * faster:.0f}% of the depths; at P = {cos.index[-1]}: "
      f"K = 5 {cos[5].iloc[-1]:.3f}, K = 30 {cos[30].iloc[-1]:.3f}")
# %% md
# ## Exercise 2: separations at every tap
# %%
sep = course.separations(lab, heads, n=16).groupby("tap", sort=False)[["F_pre", "F_SAG", "Psi"]].mean()
sep["Psi - F_pre"] = sep["Psi"] - sep["F_pre"]
display(sep.round(3))
print(f"largest gain of the fused feature over F_pre: {sep['Psi - F_pre'].idxmax()} "
      f"({sep['Psi - F_pre'].max():+.3f})")
# %% md
# ## Exercise 3: F_SAG knocked out at inference
# Each SAG of a copy of the trained heads returns zeros, so JFF's projection sees F_pre and a
# zero F_SAG. The heads were trained with F_SAG present; heads trained without the SAG learn
# their projection for F_pre alone (lesson 07 retrains them for Table 3), so this is an upper
# bound on what the trained heads lose, not Table 3's row.
# %%
class ZeroSAG(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden

    def forward(self, h, graph_from=None):
        return h.new_zeros(*h.shape[:-1], self.hidden)

knocked = copy.deepcopy(heads)
knocked.sag = torch.nn.ModuleList(ZeroSAG(cfg.gcn_hidden) for _ in heads.sag)
res = course.heads_table(lab, {"trained heads": heads, "F_SAG knocked out": knocked})
display(res.mul(100).round(1))
drop = res.xs("trained heads", level="heads") - res.xs("F_SAG knocked out", level="heads")
print("pixel AUROC lost without F_SAG (points):", drop["pixel AUROC"].mul(100).round(1).to_dict())
