# %% md
# # 3. The Self-Attention Graph: an adaptive kNN graph and a GCN
#
# Every patch feature h_i is a node. Section 3.3 builds the edges in six steps:
#
# 1. squared distances d2_ij = ||h_i - h_j||^2;
# 2. local scales sigma_i = distance to the K-th nearest neighbour;
# 3. self-tuning affinity S_ij = exp(-d2_ij / (sigma_i sigma_j));
# 4. per-node threshold tau_i = the K-th largest affinity of row i; A_adj = relu(S - tau)
#    (so each node keeps K-1 out-edges);
# 5. A* = A_adj + A_adj^T + I, symmetric normalisation A_norm = D*^-1/2 A* D*^-1/2;
# 6. a P-layer GCN, F^(p+1) = relu(A_norm F^(p) W^(p)).
#
# We build the graph of one image, look at each step, and draw it with networkx.
# %%
import os

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import torch

import bagclip
from bagclip import Config
from bagclip.data import denormalize, load_dataset, load_image, load_mask
from bagclip.data.synth import ensure_synth
from bagclip.sag import SAG, build_graph

FULL = os.environ.get("BAGCLIP_FULL") == "1"
cfg = Config() if FULL else Config.quick()
bb = bagclip.load_backbone(cfg, device="cuda" if FULL and torch.cuda.is_available() else "cpu")
root = ensure_synth(size=cfg.image_size if FULL else 224)
sample = next(s for s in load_dataset("synth", root, "test") if s.label == 1)
image = load_image(sample.image_path, cfg.image_size)
mask = load_mask(sample.mask_path, cfg.image_size)
tokens = bb.encode(image[None].to(bb.device))
h = tokens.patches[0, -1]  # (N, W): the last tap of one image
G = bb.grid
# %% md
# ## The six steps, with every intermediate
# %%
parts = build_graph(h, k=cfg.k, return_parts=True)
fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
axes[0].imshow(parts.d2.cpu(), cmap="magma"); axes[0].set_title("d2 (N x N)")
axes[1].imshow(parts.S.cpu(), cmap="magma"); axes[1].set_title("S: affinity")
axes[2].imshow((parts.A_adj > 0).cpu(), cmap="gray_r"); axes[2].set_title(f"A_adj > 0 (K = {cfg.k})")
axes[3].imshow(parts.A_norm.cpu(), cmap="magma"); axes[3].set_title("A_norm")
for ax in axes: ax.axis("off")
plt.show()
out_edges = (parts.A_adj > 0).sum(-1)
print("out-edges per node before symmetrisation: max", int(out_edges.max()), "(K-1 =", cfg.k - 1, ")")
print("sigma range:", float(parts.sigma.min()), float(parts.sigma.max()))
# %% md
# ## The graph over the image
# Nodes sit at their patch positions; red nodes overlap the defect mask. Edges join patches
# that are close in *feature* space, wherever they are in the image: the non-local context the
# paper argues complex-morphology defects need.
# %%
A = parts.A_sym.cpu().numpy()
graph = nx.from_numpy_array(A * (A > 0))
pos = {i: (i % G, -(i // G)) for i in range(G * G)}
cell = cfg.image_size // G
patch_defect = mask.reshape(G, cell, G, cell).float().mean((1, 3)).flatten().numpy() > 0
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
axes[0].imshow(denormalize(image)); axes[0].imshow(mask, alpha=0.3, cmap="Reds"); axes[0].axis("off")
axes[0].set_title(f"{sample.class_name} / {sample.defect_type}")
nx.draw_networkx_edges(graph, pos, ax=axes[1], alpha=0.15, width=0.5)
nx.draw_networkx_nodes(graph, pos, ax=axes[1], node_size=8,
                       node_color=["red" if d else "steelblue" for d in patch_defect])
axes[1].set_title(f"SAG: {graph.number_of_edges()} edges, {G * G} nodes"); axes[1].axis("off")
plt.show()
# %% md
# ## Explore one neighbourhood
# Pick a node (a defect patch if there is one) and look at its neighbours on the image.
# %%
import ipywidgets as widgets

def show_neighbourhood(node: int = int(np.flatnonzero(patch_defect)[0]) if patch_defect.any() else 0):
    nb = list(graph.neighbors(node))
    grid = np.zeros(G * G); grid[nb] = A[node, nb]; grid[node] = -1
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(denormalize(image)); ax.imshow(np.kron(grid.reshape(G, G), np.ones((cell, cell))),
                                             alpha=0.5, cmap="coolwarm"); ax.axis("off")
    ax.set_title(f"node {node}: {len(nb)} neighbours"); plt.show()

widgets.interact(show_neighbourhood, node=widgets.IntSlider(min=0, max=G * G - 1,
                 value=int(np.flatnonzero(patch_defect)[0]) if patch_defect.any() else 0))
# %% md
# ## Propagation: the GCN
# One SAG module = graph construction + P GCN layers without bias. F_SAG has width h.
# %%
torch.manual_seed(0)
sag = SAG(h.shape[-1], cfg.gcn_hidden, cfg.k, cfg.gcn_layers).to(h.device)
with torch.no_grad():
    f_sag = sag(h[None])
print("F_SAG:", tuple(f_sag.shape), " parameters:", sum(p.numel() for p in sag.parameters()))
