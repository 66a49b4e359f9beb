# %% md
# # 00. Zero-shot anomaly detection, the datasets, and the synthetic benchmark
#
# *About 20 minutes, exercises 30 more. Difficulty: beginner (Python and numpy; no deep
# learning needed yet).*
#
# **Learning objectives.** After this lesson you can
# 1. say what *zero-shot* anomaly detection (ZSAD) asks of a model, and how it differs from
#    training one detector per product;
# 2. describe the protocol of the BAG-CLIP paper: train on auxiliary categories, test on
#    categories never seen in training, at image level (is it defective?) and pixel level (where?);
# 3. open the kit's synthetic benchmark, with its pixel-exact masks, and the real datasets'
#    layouts.
#
# **Modes.** The cell below is the one parameter cell of every lesson (tagged `parameters`, so
# papermill can replace it): `"quick"` runs on this kit's own small CLIP and synthetic images on
# a CPU, `"lab"` a real small open_clip model (ViT-B-16, OpenAI weights, downloads once),
# `"full"` the paper's ViT-L-14-336 at 518 px on the datasets under `$BAGCLIP_DATA`. The device
# is CUDA whenever there is one.
# %% [parameters]
MODE = "quick"
# %%
import numpy as np
import pandas as pd

from bagclip import course, viz
from bagclip.data import check_disjoint

lab = course.setup(MODE, backbone=False)
print(lab.label(), "| device:", lab.device)
# %% md
# ## 1. The task
# A factory inspects many products; defects are rare and varied, and a new product line arrives
# before anyone has collected its defects. **Zero-shot** AD scores images of a category the model
# has never been trained on. Vision-language models make this possible: CLIP has learned to
# match images with sentences, so "a photo of a flawless metal plate" and "a photo of a damaged
# metal plate" become two text anchors, and each image patch is scored by which one it is closer
# to. Methods such as BAG-CLIP keep CLIP frozen and train small heads on *other*, auxiliary
# categories that do have masks, hoping the heads learn "what a defect looks like" in general.
#
# The output is two things per image:
# - an **image score** (is this image anomalous?) - evaluated with image AUROC, F1-max, AP;
# - an **anomaly map** (which pixels?) - evaluated with pixel AUROC, F1-max, AP and AUPRO
#   (lesson 06).
#
# ## 2. The protocol: auxiliary and target categories never overlap
# The paper trains on the test splits of MVTec AD and VisA (the field's convention: these have
# masks) and tests on EPED, InsPLAD, MPDD, BTAD and MIAD. The kit's synthetic benchmark mirrors
# this with two disjoint groups of categories:
# %%
def counts(samples):
    df = pd.DataFrame({"class": [s.class_name for s in samples], "label": [s.label for s in samples]})
    return df.groupby("class").label.agg(images="size", anomalous="sum")

print("auxiliary (trained on):")
display(counts(lab.aux))
print("target (zero-shot test):")
display(counts(lab.target))
check_disjoint(lab.aux, lab.target)  # raises if a class were in both: the zero-shot promise
shared = {s.class_name for s in lab.aux} & {s.class_name for s in lab.target}
assert not shared
# %% md
# ## 3. The synthetic benchmark
# Ten categories (textures and simple objects), each with defects the paper names as hard:
# thin cracks, winding scratches, holes, stains, missing parts, and faint "subtle" versions.
# Every defect is drawn with its exact mask, so the pixel metrics are exact. Each row below is
# one category: a good image, then for every defect kind the image and its mask in red.
# %%
fig = viz.synth_gallery(size=lab.cfg.image_size if MODE != "full" else 224)
fig
# %% md
# A few of the target images as the lessons will see them (resized to the model's input size):
# %%
picks = [s for s in lab.target if s.label][::7][:8]
viz.plot_samples(picks, size=lab.cfg.image_size, title="target samples, masks in red")
# %% md
# How big are the defects? Small ones matter: at CLIP's patch size a defect may cover less than
# one patch, which is why the paper runs the backbone at 518 px (lesson 01).
# %%
from bagclip.data import load_mask
from bagclip import analysis as an

rows = []
grid = lab.cfg.grid
for s in lab.target:
    if s.label:
        m = load_mask(s.mask_path, lab.cfg.image_size).numpy()
        rows.append({"class": s.class_name, "defect": s.defect_type, "area %": 100 * m.mean(),
                     "patches touched": int((an.patch_fraction(m, grid) > 0).sum())})
sizes = pd.DataFrame(rows)
print(f"patch grid {grid} x {grid} = {grid * grid} patches")
sizes.groupby("defect")[["area %", "patches touched"]].median().round(2)
# %%
assert (sizes["patches touched"] >= 1).all()  # every defect reaches at least one patch
# %% md
# ## 4. The real datasets
# `bagclip.data.load_dataset(name, root, split)` reads every public layout the paper uses
# (MVTec AD, VisA, MPDD, BTAD, MIAD, InsPLAD) and a plain folder layout for private sets such as
# EPED; `docs/data.md` lists where to get them and how to unpack them. In `MODE = "full"` this
# lesson reads them from `$BAGCLIP_DATA`. InsPLAD has image-level labels only: its pixel
# metrics are NaN, never 0.
#
# ## Summary
# - Zero-shot AD scores categories never trained on; heads learn from *other* categories.
# - Two outputs (image score, anomaly map), two families of metrics.
# - Auxiliary and target categories are disjoint, in the paper and in the synthetic benchmark.
# - The synthetic benchmark gives exact masks and the paper's hard defect kinds on a CPU.
#
# ## Exercises
# Solutions: `notebooks/solutions/00_zero_shot_ad.ipynb`.
# 1. *(10 min, easy)* Which defect kind has the smallest median area here? How many patches
#    would it touch at 518 px with 14-pixel patches (the paper's 37 x 37 grid)? Use
#    `an.patch_fraction(mask, 37)` on masks loaded at 518 px.
# 2. *(10 min, easy)* Generate a benchmark with another seed
#    (`bagclip.data.synth.generate(folder, seed=1)`) and check that the same seed gives the
#    same bytes twice, in two folders.
# 3. *(10 min, easy)* Why does the field train on the *test* splits of MVTec AD and VisA? What
#    would go wrong if a target category also appeared in training? Try `check_disjoint` on
#    such a split.
