# %% md
# # 03. The Self-Attention Graph: solutions to the exercises
#
# *The instructor's key for lesson 03. It rebuilds the lesson's image and features (tokens from
# the cache), then answers each exercise with a cell that computes the answer; the explorer's
# numbers come from the same functions (`bagclip.analysis`), so no widget is needed here.*
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd
import torch

from bagclip import analysis as an, course
from bagclip.sag import build_graph

lab = course.setup(MODE)
cfg, bb = lab.cfg, lab.backbone
sample = next(s for s in lab.target if s.label and s.defect_type in ("crack", "scratch"))
image, mask, tokens = lab.view(sample)
G = bb.grid
feat = tokens.patches[0, -1]
print(lab.label(), f"| {sample.class_name}/{sample.defect_type}, grid {G}, K = {cfg.k}")
# %% md
# ## Exercise 1: a defect patch and a background patch at K = 5 and K = 30
# Spread = the mean distance on the patch grid (Chebyshev, in patches) from the patch to its
# SAG neighbours, and the share of neighbours that are adjacent.
# %%
frac = an.patch_fraction(mask, G)
dist = an.grid_distance(G)
defect = int(np.argmax(frac))
background = int(np.argmax(np.where(frac == 0, dist[defect], -1)))  # the normal patch farthest from it
rows = []
for k in (5, 30):
    A = an.sag_parts(feat, k).A_sym
    for name, node in (("defect", defect), ("background", background)):
        idx, _ = an.neighbours(A, node)
        rows.append({"K": k, "patch": f"{name} ({node})", "neighbours": len(idx),
                     "mean grid distance": float(dist[node, idx].mean()),
                     "adjacent share": float((dist[node, idx] <= 1).mean()),
                     "neighbours on the defect": float((frac[idx] > 0).mean())})
spread = pd.DataFrame(rows).set_index(["K", "patch"])
display(spread.round(2))
for k in (5, 30):
    s = spread.loc[k]["mean grid distance"]
    print(f"K = {k}: the {s.idxmax().split()[0]} patch's neighbours are more spread out "
          f"({s.max():.1f} vs {s.min():.1f} patches)")
# %% md
# A defect patch's nearest neighbours in feature space are mostly other defect patches (the
# last column), which lie close together on a thin defect; a background patch looks like
# background everywhere, so its neighbours can be anywhere. A larger K reaches further in
# both cases. The table says how far this holds on this image.
#
# ## Exercise 2: an earlier tap
# %%
cls = sample.class_name
imgs = [s for s in lab.target if s.class_name == cls]
taps = {}
for l in (0, len(cfg.taps) - 1):
    feats = [lab.view(s)[2].patches[0, l] for s in imgs]
    taps[f"block {cfg.taps[l]}"] = an.nonlocal_summary(feats, G, cfg.k)[["adjacent", "mean_edge_distance"]].mean()
cmp = pd.DataFrame(taps).T
display(cmp.round(3))
first, last = cmp.index
print(f"{first} is {'more' if cmp.adjacent[first] > cmp.adjacent[last] else 'less'} local than {last}: "
      f"adjacent share {cmp.adjacent[first]:.3f} vs {cmp.adjacent[last]:.3f} over {len(imgs)} images of {cls}")
# %% md
# ## Exercise 3: the loner moves next to group a
# %%
h = torch.tensor([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [0.4, 0.5], [3.0, 3.0], [3.3, 2.8], [1.8, 0.2]])
names = ["a0", "a1", "a2", "a3", "b0", "b1", "x"]
moved = h.clone()
moved[6] = torch.tensor([0.5, 0.2])
before, after = build_graph(h, 3, return_parts=True), build_graph(moved, 3, return_parts=True)
tau = pd.DataFrame({"tau before": before.tau.numpy(), "tau after": after.tau.numpy()}, index=names)
tau["changed"] = ~np.isclose(tau["tau before"], tau["tau after"], atol=1e-6)
display(tau.round(4))
def edges(p):
    a = p.A_adj.numpy() > 0
    return {(names[i], names[j]) for i, j in zip(*np.nonzero(a))}
print("tau changes at:", tau.index[tau.changed].tolist())
print("out-edges gained:", sorted(edges(after) - edges(before)))
print("out-edges lost:  ", sorted(edges(before) - edges(after)))
