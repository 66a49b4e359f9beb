# %% md
# # 08. Sensitivity to K and P (the paper's Figures 5-6)
#
# **Learning objectives.** After this lesson you can
# 1. sweep the two settings that shape the SAG (Section 4.3.2): the number of neighbours K and the
#    GCN depth P, each point a full train-and-test run;
# 2. read the curves beside the values the paper's text quotes for its own curves (stars,
#    labelled "quoted": EPED image AUROC 76.4 and F1-max 77.6 at K = 15; pixel AUROC 97.9 at P = 5);
# 3. connect the P curve to the over-smoothing measured in lesson 04.
# %% [parameters]
MODE = "quick"
# %%
import tempfile

from bagclip import course, viz
from bagclip.sweeps import sweep

lab = course.setup(MODE, **({"epochs": 2} if MODE == "quick" else {}))
cfg, bb = lab.cfg, lab.backbone
print(lab.label(), "| device:", lab.device)
if MODE == "full":  # the paper's grids and 5 runs
    K_VALUES, P_VALUES, SEEDS, out = [5, 10, 15, 20, 30], [2, 3, 4, 5, 6, 7], (0, 1, 2, 3, 4), "runs/lesson08"
else:               # a reduced grid that runs on a CPU in a minute or two
    K_VALUES, P_VALUES, SEEDS, out = [5, 15, 30], [1, 3, 6], (0,), tempfile.mkdtemp(prefix="bagclip-08-")
grid = dict(seeds=SEEDS, backbone=bb, cache=lab.cache, out_dir=out, progress=False)
print("K:", K_VALUES, " P:", P_VALUES, " seeds:", SEEDS)
# %% md
# ## 1. What K does to the graph, before any training
# (Lesson 03 measures it per patch.) Edges per node and the share of edges between spatially
# adjacent patches, on one image:
# %%
import pandas as pd

from bagclip import analysis as an

h = lab.view(lab.target[0])[2].patches[0, -1]
rows = []
for k in K_VALUES:
    A = an.sag_parts(h, k).A_sym
    rows.append({"K": k, "edges per node": float(an.degrees(A).mean()),
                 "adjacent share": float(an.locality(A, bb.grid).mean())})
pd.DataFrame(rows).set_index("K").round(3)
# %% md
# ## 2. Figure 5: the number of neighbours K
# %%
df_k = sweep(cfg, "k", K_VALUES, lab.aux, lab.targets, **grid)
viz.plot_sensitivity(df_k, "k", paper_default=15)
# %% md
# ## 3. Figure 6: the GCN depth P
# %%
df_p = sweep(cfg, "gcn_layers", P_VALUES, lab.aux, lab.targets, **grid)
viz.plot_sensitivity(df_p, "gcn_layers", paper_default=5)
# %%
best = {name: d.groupby("value").pixel_auroc.mean().idxmax() for name, d in (("K", df_k), ("P", df_p))}
print("best pixel AUROC here at", best, " | the paper (quoted): K = 15, P = 5")
# %% md
# The stars are the only numbers the paper's text gives for Figures 5-6 (the figures are
# images); they are on EPED, a real dataset, and are drawn for scale, **quoted, not comparable**
# with quick-mode curves. The dotted lines mark the paper's defaults K = 15 and P = 5. The
# paper's reading: performance rises to K = 15 and P = 5 and declines after, too many neighbours
# mixing in unrelated patches and too many layers over-smoothing (lesson 04 measures the latter).
#
# ## Summary
# - Every point is a full protocol run; the backbone's cache makes a point cost one training.
# - Compare shapes, with their seed spread, not values; the paper's quoted values are for scale.
#
# ## Exercises
# 1. Run three seeds: which differences between K values are larger than the band?
# 2. Extend P to 8 and 10: does the decline the paper reports appear here?
# 3. Sweep `metric_proj` (True / False): does a learnt metric change the best K?
