# %% md
# # 10. Costs: solutions to the exercises
#
# *The instructor's key for lesson 10. Random weights of the mode's architecture (costs do not
# depend on weights), timed as the lesson times them; each exercise ends in a cell that
# computes the answer. Timings are this machine's, and each is checked before it is read.*
# %% [parameters]
MODE = "quick"
# %%
import pandas as pd

import bagclip
from bagclip import course
from bagclip.cost import cost_config, hardware, sag_cost, timing_check
from bagclip.model import build_heads, parameter_table
from bagclip.paper import paper_table

cfg = course.mode_config(MODE)
device = course.default_device()
THREADS = 1 if device == "cpu" else None  # as in the lesson
print("measured on:", hardware(device), "| timing threads:", THREADS or "all")
# %% md
# ## Exercise 1: edge list against dense at N = 1369
# Same width as this backbone (random features, so only N, D, K, P and hidden matter). The
# winner is named only when both timings pass their consistency check.
# %%
runs = {name: sag_cost(cfg, device=device, n=1369, sparse=sparse, repeats=5, threads=THREADS)
        for name, sparse in (("edge list", True), ("dense", False))}
rows = {}
for name, t in runs.items():
    c = timing_check(t)
    rows[name] = {"total ms": c["total_ms"], "GFLOPs": t.gflops.iloc[-1], "consistent": c["consistent"]}
cmp = pd.DataFrame(rows).T
display(cmp)
if cmp.consistent.all():
    fast = cmp["total ms"].astype(float).idxmin()
    print(f"faster here: {fast} ({cmp['total ms'].min():.2f} vs {cmp['total ms'].max():.2f} ms), with "
          f"{cmp.loc['edge list', 'GFLOPs']:.3f} vs {cmp.loc['dense', 'GFLOPs']:.3f} GFLOPs")
else:
    print("a timing failed its check: rerun this cell before naming a winner")
# %% md
# A GPU runs the dense N x N product at high throughput, while the edge list's gather and
# scatter are memory-bound, so the ranking can flip between machines even though the edge
# list needs fewer FLOPs.
#
# ## Exercise 2: a graph on the pixels of a 518 x 518 image
# %%
N, D = 518 * 518, 1024
full = 2 * N * N * D
rows_b = [round(i * N / 3) for i in range(4)]
blocks = sum(2 * (hi - lo) * (N - lo) * D for lo, hi in zip(rows_b, rows_b[1:]))
gib = 4 * N * N / 2**30
print(f"N = {N:,}: 2 N^2 D = {full / 1e9:,.0f} GFLOPs ({blocks / 1e9:,.0f} with the block trick); "
      f"one N x N float32 matrix = {gib:,.0f} GiB")
# %% md
# ## Exercise 3: the quoted Table 5 row closest to our trainable share
# Ours from the parameter table of this mode's heads (frozen backbone + trainable heads).
# %%
bb = bagclip.load_backbone(cost_config(cfg), device=device)
pt = parameter_table(build_heads(cfg, bb), bb).set_index("module")
ours = pt.trainable_m["total"] / pt.total_m["total"]
paper = paper_table(5)
paper["trainable share"] = paper.trainable_params_m / (paper.total_params_m + paper.trainable_params_m)
paper["distance"] = (paper["trainable share"] - ours).abs()
display(paper[["method", "total_params_m", "trainable_params_m", "trainable share", "distance"]].round(4))
closest = paper.loc[paper.distance.idxmin()]
print(f"ours: {100 * ours:.2f}% trainable; closest quoted row: {closest.method} ({100 * closest['trainable share']:.2f}%)")
