# %% md
# # 5. Training, zero-shot evaluation and failure cases
#
# The protocol of the paper (section 4.1): train the heads on auxiliary categories (for the
# paper, the *test* splits of MVTec AD and VisA, the field's convention), then test on categories
# never seen in training. Here: the synthetic benchmark's auxiliary and target groups.
#
# The backbone is frozen, so each image is encoded once into the feature cache; training and
# evaluation read tokens from it. Quick mode trains in about a minute on a CPU. **Quick-mode
# numbers come from a random tiny backbone on synthetic data: they check the pipeline, they are
# not the paper's results.** Full mode (`BAGCLIP_FULL=1`, a GPU, `BAGCLIP_DATA` pointing at
# MVTec AD, VisA and the targets, see `docs/data.md`) runs the paper's protocol.
# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import bagclip
from bagclip import Config
from bagclip.cache import FeatureCache
from bagclip.data import protocol_data
from bagclip.evaluate import evaluate_cached
from bagclip.train import build_heads, train

FULL = os.environ.get("BAGCLIP_FULL") == "1"
cfg = Config() if FULL else Config.quick()
bb = bagclip.load_backbone(cfg, device="cuda" if FULL and torch.cuda.is_available() else "cpu")
aux, targets = protocol_data(full=FULL, image_size=cfg.image_size)
target = [s for samples in targets.values() for s in samples]  # all target sets, for the gallery
cache = FeatureCache(bb)
print(len(aux), "training images;", {k: len(v) for k, v in targets.items()}, "test images")
# %% md
# ## Train
# Checkpoints are written atomically every epoch; re-running this cell with `resume=True`
# continues an interrupted run to the same result.
# %%
import tempfile
run_dir = tempfile.mkdtemp(prefix="bagclip-run-")
result = train(cfg, aux, bb, run_dir, cache=cache)
plt.figure(figsize=(6, 2.5)); plt.plot(result.history); plt.xlabel("step"); plt.ylabel("loss"); plt.show()
# %% md
# ## Evaluate, before and after training
# %%
import pandas as pd

untrained = build_heads(cfg, bb).to(bb.device).eval()
keys = ["image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro"]
rows = {}
for name, samples in targets.items():
    for heads, model in (("untrained", untrained), ("trained", result.model)):
        m = evaluate_cached(model, cfg, bb, cache, samples)
        rows[(name, heads)] = [m[k] for k in keys]
pd.DataFrame(rows, index=keys).T.mul(100).round(1)
# %% md
# ## Failure-case gallery
# The images the trained model gets most wrong: anomalous images with the lowest scores (missed)
# and normal images with the highest (false alarms). Use the slider to walk through them.
# %%
import ipywidgets as widgets

from bagclip.data import denormalize, load_image, load_mask
from bagclip.inference import predict_cached
from bagclip.train import class_texts

entries = cache.ensure([s.image_path for s in target], progress=False)
names = [s.class_name for s in target]
maps, scores, _ = predict_cached(result.model, cfg, cache, entries, names, class_texts(bb, names, cfg))
labels = np.array([s.label for s in target])
missed = [i for i in np.argsort(scores.numpy()) if labels[i] == 1]
alarms = [i for i in np.argsort(-scores.numpy()) if labels[i] == 0]
failures = [i for pair in zip(missed, alarms) for i in pair]

def show(rank: int = 0):
    i = failures[rank]
    s = target[i]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3))
    axes[0].imshow(denormalize(load_image(s.image_path, cfg.image_size)))
    axes[0].set_title(f"{s.class_name}/{s.defect_type}", fontsize=9)
    axes[1].imshow(load_mask(s.mask_path, cfg.image_size), cmap="gray"); axes[1].set_title("ground truth")
    im = axes[2].imshow(maps[i], cmap="jet")  # own scale: weak maps stay readable
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    axes[2].set_title(f"score {float(scores[i]):.3f} ({'missed' if s.label else 'false alarm'})", fontsize=9)
    for ax in axes: ax.axis("off")
    plt.show()

widgets.interact(show, rank=widgets.IntSlider(min=0, max=len(failures) - 1, value=0))
