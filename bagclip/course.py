"""What every lesson notebook starts with: the mode, its Config, the device, the data, and heads
trained once and shared by the lessons that need them.

    MODE = "quick"                        # the notebook's parameter cell (papermill "parameters")
    lab = bagclip.course.setup(MODE)      # cfg, device, backbone, aux / target samples, cache

Modes (docs: README, "Notebooks"):
- "quick": `Config.quick()` on the synthetic benchmark, CPU-friendly, no download;
- "lab":   a real small open_clip model (ViT-B-16, OpenAI weights, 224 px; downloads once) on the
           synthetic benchmark: readers with internet and no GPU;
- "full":  the paper (`Config()`: ViT-L-14-336 at 518 px) on the datasets under $BAGCLIP_DATA.
The device is CUDA whenever it is available, in every mode.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("quick", "lab", "full")


def mode_config(mode: str = "quick", **overrides: Any):
    """The Config of a lesson mode (the presets of bagclip.config.presets); overrides replace fields."""
    from .config import Config

    if mode not in MODES:
        raise ValueError(f"MODE={mode!r}; choose one of {MODES}")
    return Config.preset(mode, **overrides)


def default_device() -> str:
    """"cuda" whenever it is available, in every mode; else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Lab:
    """A lesson's setting: mode, cfg, device, backbone, the auxiliary (training) samples, the
    target (zero-shot test) sets and the feature cache."""
    mode: str
    cfg: Any
    device: str
    backbone: Any = None
    aux: list = field(default_factory=list)
    targets: dict = field(default_factory=dict)
    cache: Any = None

    @property
    def target(self) -> list:
        """Every target sample, all target sets together."""
        return [s for samples in self.targets.values() for s in samples]

    def view(self, sample):
        """(image (S, S, 3) uint8, mask (S, S) bool, Tokens (float32, on the CPU)) of a sample at
        the config's size, the tokens read through the feature cache."""
        from .backbone import Tokens
        from .data import denormalize, load_image, load_mask

        s = self.cfg.image_size
        image = denormalize(load_image(sample.image_path, s))
        mask = load_mask(sample.mask_path, s).numpy().astype(bool)
        tok = self.cache.get([sample.image_path], progress=False)
        return image, mask, Tokens(tok.patches.float(), tok.cls.float())

    def label(self) -> str:
        """What the numbers of this mode are, for titles: never mistaken for the paper's."""
        return {"quick": f"quick mode ({self.cfg.backbone}, synthetic benchmark): not the paper's numbers",
                "lab": f"lab mode ({self.cfg.backbone} {self.cfg.pretrained}, synthetic benchmark): "
                       f"not the paper's numbers",
                "full": f"full mode ({self.cfg.backbone}, {', '.join(self.targets)})"}[self.mode]


def show_progress() -> None:
    """Let the library's progress lines (logging, logger "bagclip") show in the notebook; once."""
    log = logging.getLogger("bagclip")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # shown once, whatever a dependency did to the root logger


def setup(mode: str = "quick", backbone: bool = True, data: bool = True, **overrides: Any) -> Lab:
    """Config, device, and (optionally) the frozen backbone, the protocol's data and a cache."""
    from .cache import FeatureCache

    show_progress()

    cfg = mode_config(mode, **overrides)
    lab = Lab(mode, cfg, default_device())
    if backbone:
        from .backbone import load_backbone

        lab.backbone = load_backbone(cfg, device=lab.device)
        lab.cache = FeatureCache(lab.backbone)
    if data:
        from .data import protocol_data

        lab.aux, lab.targets = protocol_data(full=(mode == "full"), image_size=cfg.image_size)
    return lab


def trained_heads(lab: Lab, cfg=None, progress: bool = False):
    """Heads trained on lab.aux with cfg (default lab.cfg), trained once and then reused.

    The run lives in <BAGCLIP_CACHE>/course/<run_key> (bagclip.runs: the key of reproduce and
    the sweeps); a finished run is loaded, an interrupted one continues. The same run finished
    by `bagclip reproduce --quick` (`reproduce_runs()`) is read where it is instead (the
    lessons' heads are its first seed of BAG-CLIP). Returns bagclip.train.TrainResult (model,
    history, out_dir).
    """
    from .files import cache_root
    from .runs import read_training, reusable_run, run_inputs, run_key, target_sizes, train_or_resume

    cfg = cfg or lab.cfg
    inputs = run_inputs(lab.aux, lab.targets)
    key = run_key(cfg, lab.aux, lab.targets, inputs)
    done = reusable_run(reproduce_runs(), key, cfg, target_sizes(lab.targets), inputs)
    if done is not None:
        return read_training(done, cfg, lab.backbone)
    return train_or_resume(cfg, lab.aux, lab.backbone, Path(cache_root()) / "course" / key, lab.cache,
                           progress=progress)


def reproduce_runs(start=None, levels: int = 2) -> list[Path]:
    """The `reproduce --quick` runs folder seen from `start` (default: the working directory) or
    from up to `levels` folders above it: a lesson runs in notebooks/, a solution in
    notebooks/solutions/, reproduce from the repository root."""
    here = Path(start or Path.cwd()).resolve()
    from .experiments import QUICK_OUT  # where `bagclip reproduce --quick` keeps its runs

    runs = Path(QUICK_OUT) / "runs"
    return [d / runs for d in [here, *here.parents][:levels + 1] if (d / runs).is_dir()][:1]


def grid(lab: Lab, settings: dict, seeds, progress: bool = False):
    """(run_settings' long frame, {setting: {dataset: compare.Results}}) of a lesson's grid of
    runs (setting x seed): runs in <BAGCLIP_CACHE>/course/<run_key> (where `trained_heads`
    keeps its run too), a finished run of `bagclip reproduce --quick` (`reproduce_runs()`)
    read where it is instead of trained again."""
    from .files import cache_root
    from .runs import run_settings
    from .sweeps import grid_results

    kw = dict(runs_root=Path(cache_root()) / "course",
              reuse=reproduce_runs())
    df = run_settings(lab.cfg, settings, lab.aux, lab.targets, seeds, backbone=lab.backbone, cache=lab.cache,
                      progress=progress, **kw)
    return df, grid_results(lab.cfg, settings, lab.aux, lab.targets, seeds, lab.backbone, lab.cache, **kw)


def adapted_heads(lab: Lab, images, class_name: str, init, cfg=None, copies: int = 2,
                  exclude_kinds=(), progress: bool = False):
    """Heads adapted to `class_name` from its normal `images` (bagclip.adapt), starting from the
    heads in `init` (a run folder), adapted once and then reused (lesson 11 and its solutions).

    The run lives in <BAGCLIP_CACHE>/course/adapt-<key>/, keyed by the config, the backbone
    identity, the init heads' and the images' SHA-256, copies and excluded kinds; a finished
    run is loaded (adapt checks its record, train finds nothing left to do). Returns
    bagclip.train.TrainResult.
    """
    import hashlib
    import json

    from .adapt import adapt
    from .cache import _file_digest
    from .checkpoint import HEADS
    from .files import cache_root
    from .inference import _collect

    cfg = cfg or lab.cfg
    init = Path(init)
    key = json.dumps({"cfg": cfg.to_dict(), "backbone": lab.backbone.identity(),
                      "init": _file_digest(init / HEADS if init.is_dir() else init),
                      "images": sorted(_file_digest(p) for p in _collect(images)),
                      "class": class_name, "copies": copies, "exclude": sorted(exclude_kinds)},
                     sort_keys=True)
    out = Path(cache_root()) / "course" / ("adapt-" + hashlib.sha256(key.encode()).hexdigest()[:16])
    resume = (out / "state.pt").is_file()
    return adapt(images, class_name, out, cfg=cfg, init=init, backbone=lab.backbone, copies=copies,
                 exclude_kinds=exclude_kinds, resume=resume, cache=lab.cache, progress=progress)


@dataclass
class OneClass:
    """One class's images for lesson 11, in disjoint groups: `adapt` (normal files the heads are
    adapted on), `calib` (normal files the thresholds come from) and `test` (Samples: fresh
    normal and defective images, masks for the defects)."""
    class_name: str
    adapt: list
    calib: list
    test: list
    root: Path

    @property
    def labels(self):
        import numpy as np

        return np.array([int(s.label) for s in self.test])


def one_class(lab: Lab, class_name: str = "brushed_metal", n_adapt: int = 12, n_calib: int = 20,
              n_good: int = 40, n_bad: int = 40, seed: int = 11) -> OneClass:
    """A synthetic class generated once at lab.cfg.image_size (seed 11: images no other lesson
    uses): its train split's normal images cut into `adapt` and `calib`, its test split as
    `test`. Any mode uses these synthetic images; a user's own folders take their place."""
    from .data import load_dataset
    from .data.synth import ensure_synth

    root = ensure_synth(seed=seed, size=lab.cfg.image_size, n_train=n_adapt + n_calib,
                        n_test_good=n_good, n_test_bad=n_bad, categories=[class_name])
    normals = sorted((root / class_name / "train" / "good").glob("*.png"))
    test = load_dataset("synth", root, "test", classes=[class_name])
    return OneClass(class_name, normals[:n_adapt], normals[n_adapt:], test, root)


# --- measurements several lessons and their solutions share ------------------------------------
def defective(lab: Lab, n: int) -> list:
    """The first n defective target samples (the lessons' fixed, seeded choice of images)."""
    return [s for s in lab.target if s.label][:n]


def tap_auroc(lab: Lab, texts: dict, n: int = 20):
    """Patch AUROC of the backbone's raw (training-free) text map per tap, pooled over the patches
    of `defective(lab, n)` (a patch is a defect when over a quarter of it is; lesson 01).
    texts: {class name: T (2, E)}. Returns a Series indexed "block <tap>"."""
    import pandas as pd

    from . import analysis as an
    from .metrics import binary_metrics

    cfg, bb = lab.cfg, lab.backbone
    rows = []
    for s in defective(lab, n):
        _, m, tok = lab.view(s)
        maps = an.tap_text_maps(bb, tok.patches, texts[s.class_name], cfg.logit_scale)[0]  # (L, G, G)
        is_defect = an.patch_fraction(m, bb.grid) > 0.25
        rows += [{"tap": t, "score": float(v), "defect": bool(d)} for t, mm in zip(cfg.taps, maps)
                 for v, d in zip(mm.flatten(), is_defect)]
    df = pd.DataFrame(rows)
    return pd.Series({f"block {t}": binary_metrics(g.score, g.defect)["auroc"]
                      for t, g in df.groupby("tap", sort=False)}, name="patch AUROC of the raw map")


def separations(lab: Lab, heads, n: int = 16):
    """How well each stage's features separate defect patches from normal ones (`analysis.separation`)
    on `defective(lab, n)` (images with fewer than 2 defect patches skipped), per image and tap:
    a frame with columns image, tap, F_pre, F_SAG (NaN without the SAG) and Psi."""
    import math

    import pandas as pd
    import torch

    from . import analysis as an

    w = next(heads.parameters())  # the heads' device and dtype
    rows = []
    for s in defective(lab, n):
        _, m, tok = lab.view(s)
        is_defect = an.patch_fraction(m, lab.backbone.grid) > 0.25
        if is_defect.sum() < 2:
            continue
        with torch.no_grad():
            st = heads.stages(tok.patches.to(w.device, w.dtype))
        for l, tap in enumerate(lab.cfg.taps):
            rows.append({"image": s.image_path.stem, "tap": f"block {tap}",
                         "F_pre": an.separation(st.f_pre[0, l], is_defect),
                         "F_SAG": math.nan if st.f_sag is None else an.separation(st.f_sag[0, l], is_defect),
                         "Psi": an.separation(st.psi[0, l], is_defect)})
    return pd.DataFrame(rows)


def heads_table(lab: Lab, heads: dict, cfg=None):
    """Image and pixel AUROC of each of `heads` ({name: BAGCLIP}, e.g. trained heads beside a copy
    with one part knocked out) on every target set, scored by `evaluate_cached` on lab's cache.
    A frame indexed (target set, heads), values in [0, 1]."""
    import pandas as pd

    from .evaluate import evaluate_cached

    cfg = cfg or lab.cfg
    rows = []
    for name, samples in lab.targets.items():
        for variant, model in heads.items():
            r = evaluate_cached(model, cfg, lab.backbone, lab.cache, samples)
            rows.append({"target set": name, "heads": variant, "image AUROC": r["image_auroc"],
                         "pixel AUROC": r["pixel_auroc"]})
    return pd.DataFrame(rows).set_index(["target set", "heads"])


def balanced(samples, n: int) -> list:
    """The first n normal and the first n defective samples of each class, in the samples' order:
    a smaller, still balanced, fixed subset of a target set."""
    kept, count = [], {}
    for s in samples:
        k = (str(s.class_name), bool(s.label))
        if count.get(k, 0) < n:
            count[k] = count.get(k, 0) + 1
            kept.append(s)
    return kept


def alignment(lab: Lab, heads: dict, samples) -> dict:
    """Do the tapped tokens speak the text? {detector: compare.Results} on `samples` (one seed) for
    the training-free scorer on the raw tapped tokens (ln_post + proj against [T_N, T_A]), the same
    on the value-value stream (`detail_attention="vv"`: its own backbone and cache), and each of
    `heads` ({name: trained heads}); feed pairs of them to `bagclip.compare` (lesson 01)."""
    from .backbone import load_backbone
    from .cache import FeatureCache
    from .compare import Results
    from .evaluate import evaluate_recorded
    from .zeroshot import ZeroShot

    vv_cfg = lab.cfg.replace(detail_attention="vv")
    vv_bb = load_backbone(vv_cfg, device=lab.device)
    detectors = {"raw tokens (training-free)": (ZeroShot(lab.backbone), lab.cfg, lab.backbone, lab.cache),
                 "value-value stream (training-free)": (ZeroShot(vv_bb), vv_cfg, vv_bb, FeatureCache(vv_bb)),
                 **{name: (m, lab.cfg, lab.backbone, lab.cache) for name, m in heads.items()}}
    return {name: Results.from_records([evaluate_recorded(m, c, b, k, samples)[1]])
            for name, (m, c, b, k) in detectors.items()}
