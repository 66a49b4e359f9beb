# %% md
# # 00. Zero-shot anomaly detection: solutions to the exercises
#
# *The instructor's key for lesson 00. It rebuilds what the lesson had (the protocol's data,
# no backbone), then answers each exercise with a cell that computes the answer. The answers
# are whatever these cells print on this machine; the text says how to read them.*
# %% [parameters]
MODE = "quick"
# %%
import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from bagclip import analysis as an, course
from bagclip.data import check_disjoint, load_mask
from bagclip.data.synth import CATEGORIES, generate

lab = course.setup(MODE, backbone=False)
S, G = lab.cfg.image_size, lab.cfg.grid
print(lab.label(), f"| {S} px, grid {G}")
# %% md
# ## Exercise 1: the smallest defect kind, at the lesson's grid and at the paper's
# Masks are loaded again at 518 px for the paper's grid (518 / 14 = 37): the patch count is
# a property of the mask and the grid, no backbone needed.
# %%
defects = [s for s in lab.target if s.label]
area = pd.DataFrame({"defect": [s.defect_type for s in defects],
                     "area %": [100 * load_mask(s.mask_path, S).numpy().mean() for s in defects]})
medians = area.groupby("defect")["area %"].median().sort_values()
smallest = medians.index[0]
print(medians.round(3).to_string())
rows = [{"image": s.image_path.stem,
         f"patches at {S} px (grid {G})": int((an.patch_fraction(load_mask(s.mask_path, S).numpy(), G) > 0).sum()),
         "patches at 518 px (grid 37)": int((an.patch_fraction(load_mask(s.mask_path, 518).numpy(), 37) > 0).sum())}
        for s in defects if s.defect_type == smallest]
touched = pd.DataFrame(rows).set_index("image")
print(f"smallest median area: {smallest!r} ({medians.iloc[0]:.3f} % of the image)")
print(touched.median().to_string())
# %% md
# ## Exercise 2: the same seed gives the same bytes
# Two folders, the same seed and parameters (a small benchmark: two categories, a few images,
# to keep this fast; the rule holds for any parameters), then a third with another seed.
# %%
def digests(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}

small = dict(size=64, n_train=2, n_test_good=1, n_test_bad=1, categories=list(CATEGORIES)[:2])
with tempfile.TemporaryDirectory() as tmp:
    a = digests(generate(Path(tmp) / "a", seed=1, **small))
    b = digests(generate(Path(tmp) / "b", seed=1, **small))
    c = digests(generate(Path(tmp) / "c", seed=2, **small))
same = a == b
differ = sum(a[k] != c.get(k) for k in a)
print(f"seed 1 twice: {len(a)} images, {'identical bytes' if same else 'DIFFERENT bytes'}; "
      f"seed 2: {differ} of {len(a)} images differ")
assert same and differ > 0
# %% md
# ## Exercise 3: why auxiliary and target categories must not overlap
# The field trains on the test splits of MVTec AD and VisA because those carry pixel masks and
# are not the datasets tested on: the target categories stay unseen. If a target category were
# trained on, its score would measure ordinary supervised detection, not zero-shot transfer.
# `check_disjoint` refuses such a split:
# %%
leaky_aux = lab.aux + [s for s in lab.target if s.class_name == lab.target[0].class_name][:3]
try:
    check_disjoint(leaky_aux, lab.target)
    refused = None
except ValueError as e:
    refused = str(e)
print("refused:" if refused else "NOT refused", refused or "")
assert refused
