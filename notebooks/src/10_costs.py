# %% md
# # 10. Where the cost of BAG-CLIP goes: parameters, FLOPs, memory, time
#
# *About 25 minutes (the cells run for a few minutes on a CPU), exercises 40 more. Difficulty:
# intermediate (lessons 03 and 04 first: the SAG and the heads).*
#
# Section 4.4 of the paper reports two cost tables, both on one NVIDIA A6000: Table 4, one SAG
# module (graph construction + GCN propagation) on N = 37 x 37 = 1369 patches of 1024-d
# features, and Table 5, per-image inference of the whole model (ViT-L/14@336 at 518 x 518).
# Here we measure the same quantities with our code on *this* machine (`bagclip/cost.py`):
#
# - **params** counted from the modules;
# - **GFLOPs** from torch's `FlopCounterMode`: matrix products (2 FLOPs per multiply-add) plus
#   the GCN's edge-list aggregation; element-wise ops (exp, top-k, ReLU) are not counted, as in
#   the paper's 3.84 GFLOPs = 2 N^2 D;
# - **peak memory** allocated beyond the inputs (CUDA allocator on a GPU, torch profiler on a CPU);
# - **time**: median of several runs under `no_grad`, after untimed warm-up runs; every run is
#   kept, so a cell can check that the parts add up to the whole within the runs' own spread.
#
# **Learning objectives.** After this lesson you can
# 1. count parameters per module and see that the trainable heads are a small share;
# 2. count the SAG's FLOPs by hand and compare them with the measured counts and the paper's
#    Table 4 (quoted, A6000);
# 3. measure per-image inference (Table 5) and explain why graph construction grows as N^2;
# 4. check a timing before reading it: do the parts sum to the total, within noise?
#
# Quick mode shows *where* the cost goes on this machine, never the paper's numbers. In full
# mode costs use random weights of the real ViT-L-14-336 architecture (costs do not depend on
# weights, so nothing is downloaded), on a GPU if there is one. `bagclip.cost.bench_main(cfg,
# device, out_dir)` prints and saves both tables in one call (the `bagclip bench` command).
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd

import bagclip
from bagclip import Config, course, viz
from bagclip.cost import cost_config, graph_scaling, hardware, inference_cost, sag_cost
from bagclip.model import build_heads, parameter_table

cfg = course.mode_config(MODE)
device = course.default_device()
# On a CPU we time with one thread: when other jobs share the cores, threads that wait for
# each other make multi-thread times swing tenfold. Set THREADS = None to time with all cores.
THREADS = 1 if device == "cpu" else None
bb = bagclip.load_backbone(cost_config(cfg), device=device)
heads = build_heads(cfg, bb).to(device)
print("measured on:", hardware(device), "| timing threads:", THREADS or "all")
print(f"{cfg.backbone} at {cfg.image_size} px: N = {bb.grid}^2 = {bb.grid ** 2} patches of width {bb.width}")
# %% md
# ## Parameters per module
# The backbone (image and text towers) is frozen; only the heads train. There is one SAG per
# tap; compare one SAG with Table 4's params and the heads total with Table 5's trainable column.
# %%
parameter_table(heads, bb).round(3)
# %% md
# ## Table 4 on paper: counting FLOPs by hand
# Before measuring, the arithmetic at the paper's size. Graph construction is dominated by the
# N x N x D distance product. Each GCN layer is a linear map (2 N Din Dout) and an aggregation
# A_norm F: over an edge list (our default: N(2K-1) edges, self-loops and both directions) or
# as a dense N x N product. The paper does not say how it counted; note which sum its 7.18 is
# closest to. The distance matrix is symmetric, so from N = 512 on, outside training,
# `pairwise_d2` multiplies only three row blocks, each from its diagonal rightwards, and
# mirrors the rest, as a BLAS syrk would: about 2/3 of 2 N^2 D, what the counter measures.
# %%
P = Config()
n, d, h, k, layers = P.grid ** 2, P.arch.width, P.gcn_hidden, P.k, P.gcn_layers
linear = 2 * n * (d * h + (layers - 1) * h * h)
starts = [round(i * n / 3) for i in range(4)]  # the three row blocks' first rows
hand = {"graph: 2 N^2 D": 2 * n * n * d,
        "graph as computed: blocks from the diagonal rightwards": sum(
            2 * (hi - lo) * (n - lo) * d for lo, hi in zip(starts, starts[1:])),
        "GCN linear layers": linear,
        "GCN aggregation, edge list: P 2 N (2K-1) h": layers * 2 * n * (2 * k - 1) * h,
        "GCN aggregation, dense: P 2 N^2 h": layers * 2 * n * n * h}
pd.Series(hand).div(1e9).round(3).rename(f"GFLOPs at N={n} D={d} h={h} K={k} P={layers}").to_frame()
# %% md
# ## Table 4 measured, beside the paper
# Our SAG propagates over the edge list (`sparse=True`, the default); the dense path is shown
# too. Memory is the peak above the inputs; the paper's column is GPU memory.
# %%
t4 = sag_cost(cfg, device=device, threads=THREADS)
print(t4.setting[0], "|", t4.hardware[0], "|", t4.attrs["paper_hardware"])
t4.drop(columns=["setting", "hardware"]).round(4)
# %%
dense = sag_cost(cfg, device=device, sparse=False, threads=THREADS)
pd.DataFrame({"edge list GFLOPs": t4.gflops.values, "dense GFLOPs": dense.gflops.values,
              "edge list ms": t4.time_ms.values, "dense ms": dense.time_ms.values},
             index=t4.component).round(4)
# %% md
# ## Table 5 measured, beside the paper
# One image: backbone encode + heads + Gaussian smoothing and image score (class text features
# are computed once and cached, so they are not part of the per-image time). The paper's rows
# are A6000 numbers for ViT-L/14@336 at 518 px; ours carry their own hardware line. The paper
# prints params as frozen + trainable ("429.0 + 1.3 x 10^1"): `total_params_m` is the frozen
# CLIP, `all_params_m` the sum.
# %%
t5 = inference_cost(cfg, bb, heads, device=device, threads=THREADS)
t5.round(3)
# %% md
# ## Do the parts add up? Check a timing before reading it
# A time is a median over runs (after warm-up). Three things must hold if the numbers mean
# anything: one SAG's graph + GCN (timed as separate calls) sum to the whole SAG; Table 5's
# encode + heads + smoothing sum to its total; and the heads, which run one SAG per tap, take
# at least as long as that many SAGs. The tolerance is the runs' own spread (twice the
# combined interquartile range), at least 10 % of the total. The cell prints each verdict; a
# failed one means the machine was too busy for these runs: rerun the cells, raise `repeats`
# (`sag_cost(..., repeats=15)`), or measure on a quieter machine.
# %%
from bagclip.cost import sags_within_heads, timing_check

def verdict(ok):
    return "consistent within noise" if ok else "NOT consistent: the runs were disturbed, rerun"

for name, table in (("Table 4, one SAG", t4), ("Table 5, one image", t5)):
    c = timing_check(table)
    print(f"{name}: parts {' + '.join(f'{v:.2f}' for v in c['parts_ms'].values())} = {c['sum_ms']:.2f} ms, "
          f"total {c['total_ms']:.2f} ms, difference {c['difference_ms']:+.2f} ms, tolerance "
          f"{c['tolerance_ms']:.2f} ms ({c['repeats']} runs after {c['warmup']} warm-up, "
          f"{c['threads']} thread(s)): {verdict(c['consistent'])}")
cross = sags_within_heads(t4, t5, len(cfg.taps))
print(f"{len(cfg.taps)} SAGs x {cross['sags_ms'] / len(cfg.taps):.2f} ms = {cross['sags_ms']:.2f} ms vs all heads "
      f"{cross['heads_ms']:.2f} ms (tolerance {cross['tolerance_ms']:.2f} ms): {verdict(cross['consistent'])}")
# %% md
# ## Where the time goes
# Left: one image through the whole model. Right: one SAG module; the heads run one per tap.
# %%
ours = t5.iloc[0]
viz.plot_cost_breakdown(t4, ours, len(cfg.taps))
# %% md
# ## Graph construction grows as N^2
# The distance product is N x N x D, so doubling the image side multiplies N by 4 and the
# graph's FLOPs (and its N x N memory) by 16. Measured over a few input sizes of this backbone.
# Expect FLOPs to follow N^2 except for a step down to about 2/3 from N = 512 on, where the
# product goes blockwise; time can approach N^2 only once the product outweighs the fixed cost
# of each call. The cell below fits each column's log-log slope and says how close it is to 2.
# %%
sizes = [bb.patch_size * g for g in (8, 16, 24, 32, 37)]
scaling = graph_scaling(cfg, sizes, device=device, threads=THREADS)
viz.plot_scaling(scaling)
# %%
slopes = {c: np.polyfit(np.log(scaling.n), np.log(scaling[c]), 1)[0] for c in ("gflops", "peak_mem_mb", "time_ms")}
for c, s in slopes.items():
    print(f"{c}: slope {s:.2f} ->", "quadratic (within 0.3 of 2)" if abs(s - 2) <= 0.3 else
          "slower than quadratic" if s < 2 else "faster than quadratic")
scaling.round(4)
# %% md
# ## What to take away
# The shares below are what to compare with the paper, more than milliseconds: they move much
# less from machine to machine.
# %%
graph, gcn = t4.set_index("component").time_ms.drop("total")
share_b, share_h = ours.backbone_ms / ours.inference_ms, ours.heads_ms / ours.inference_ms
theirs = t5[t5.method == "BAG-CLIP"].iloc[0]  # the paper's row, quoted
print(f"trainable params: {100 * ours.trainable_params_m / ours.all_params_m:.1f}% of the model "
      f"({cfg.backbone}); the paper's Table 5 (quoted): {theirs.trainable_params_m:g} M of "
      f"{theirs.total_params_m:g} + {theirs.trainable_params_m:g} M = "
      f"{100 * theirs.trainable_params_m / theirs.all_params_m:.1f}%")
print(f"backbone: {100 * share_b:.0f}% of the time per image, heads {100 * share_h:.0f}% "
      f"({'the backbone' if share_b > share_h else 'the heads'} dominate here), of which the "
      f"{len(cfg.taps)} SAGs {100 * cross['share']:.0f}% ({verdict(cross['consistent'])})")
print(f"inside one SAG: graph construction {graph / gcn:.1f}x the GCN's time")
pixels, patches = 518 ** 2, P.grid ** 2
print(f"a graph on the pixels of a 518 px image: N = {pixels:,} instead of {patches:,} patches, "
      f"(N ratio)^2 = {(pixels / patches) ** 2:,.0f} times the graph's FLOPs")
# %% md
# - The first line compares parameter shares: ours measured, the paper's quoted. Time shares
#   depend on the backbone's size: bagclip-mini is small, so the heads, whose graph still costs
#   N^2 D, can weigh more than they would next to a ViT-L; `MODE = "full"` measures the
#   paper's setting (on a GPU, or `bench_main(Config(), "cuda", out_dir)`).
# - Graph construction's N x N x D product and N x N matrices grow as N^2, which is why the
#   paper builds the graph on patch features and not on pixels (the last line's ratio).
# - Our numbers are this machine's, with their hardware line; the paper's are an A6000's (quoted).
# %%
# self-check: the counted FLOPs equal the hand count at this config's size (graph: 2 N^2 D
# below N = 512, the three row blocks from there on; the total is the graph plus the GCN), and
# the times are positive. Counts are exact on every machine; times are checked further up.
n_q, d_q = bb.grid ** 2, bb.width
rows_q = [round(i * n_q / 3) for i in range(4)]
graph_hand = 2 * n_q * n_q * d_q if n_q < 512 else sum(
    2 * (hi - lo) * (n_q - lo) * d_q for lo, hi in zip(rows_q, rows_q[1:]))
graph_hand += 2 * n_q * d_q * d_q if cfg.metric_proj else 0
flops = t4.set_index("component").gflops
assert abs(flops["dynamic graph construction"] - graph_hand / 1e9) < 1e-9
assert abs(flops["total"] - flops.drop("total").sum()) < 1e-9
gcn_hand = 2 * n_q * (d_q * cfg.gcn_hidden + (cfg.gcn_layers - 1) * cfg.gcn_hidden ** 2) \
    + cfg.gcn_layers * 2 * n_q * (2 * cfg.k - 1) * cfg.gcn_hidden
assert abs(flops["GCN feature propagation"] - gcn_hand / 1e9) < 1e-9
assert (t4.time_ms > 0).all() and ours.inference_ms > 0
print(f"self-check passed: graph {flops.iloc[0]:.4f} and GCN {flops.iloc[1]:.4f} GFLOPs as counted by hand")
# %% md
# ## Summary
# - Parameters split into the frozen backbone and the trainable heads; the take-away cell
#   prints the trainable share, ours (measured) beside the paper's (quoted).
# - One SAG costs 2 N^2 D for the graph (2/3 of it from N = 512 on, using the symmetry) plus
#   the GCN's layers; the self-check holds the counted FLOPs to the hand count, and the slope
#   cell measures how close FLOPs, memory and time come to N^2.
# - A timing is read only after checking that its parts add up within noise.
#
# ## Exercises
# Solutions: `notebooks/solutions/10_costs.ipynb`.
# 1. *(15 min, medium)* Compare the edge-list and dense SAG at N = 1369 with this backbone's
#    width (`sag_cost(cfg, n=1369, sparse=...)`): which one wins on this machine, and why might
#    a GPU differ? Check both timings with `timing_check` first.
# 2. *(10 min, easy)* How many GFLOPs would one SAG's graph construction cost on the pixels of
#    a 518 x 518 image (N = 268,324, D = 1024)? And its N x N float32 matrix, in GiB?
# 3. *(15 min, medium)* Which of the paper's Table 5 rows (quoted) has a share of trainable
#    parameters closest to ours?
