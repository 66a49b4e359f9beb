"""bagclip-mini: contrastive pretraining of a small open_clip model on the kit's own world.

    bagclip pretrain-mini --out runs/mini          # seeded, resumable, progress bar
    bagclip pretrain-mini --out runs/mini --export bagclip/weights/bagclip-mini.safetensors

The model is open_clip's CLIP built from `model_configs/bagclip-mini.json` (ViT 8 x 192,
patch 16, native 224 px; text tower 4 x 96; joint space E = 128), tokenised by open_clip. As
CLIP itself was trained at low resolution and then used higher up, most steps run at 160 px
(a 10 x 10 grid, the position embedding interpolated on the fly) and the last `final_share`
of the steps at the native 224 px (14 x 14), which is 2.6x dearer per image. Each step
draws `batch_pairs` scenes of `bagclip.data.world`, each clean and defective, and minimises

    L = L_clip + w_state * L_state + w_dense * L_dense + w_probe * L_probe
        (+ w_proto * L_proto + w_mil * L_mil, the second stage's additions)

- L_clip: open_clip's `ClipLoss` between the 2B images and their 2B captions. A scene's two
  captions share template and name and differ only in state words, so only the state separates
  the pair (a plain caption set teaches the category instead).
- L_state: cross-entropy of the class embedding against the scene's own [normal, abnormal]
  captions, at CLIP's learnable logit scale.
- L_dense: the same, per patch token of each tap after `ln_post` + `proj`, with labels from
  the defect masks (a patch is abnormal when >= 2 % of it is covered, ignored between 0 and
  2 %), classes balanced. It is what makes patch tokens align with text, so that the raw
  text-similarity maps of every tap light up defects (the training-free baseline).
- L_probe: a linear classifier (E -> 2, on 10 x the unit patch features) with the same labels
  and balance, dropped at export. It gives the image tower a text-free signal from the first
  step; without it (and with tau fixed at 100) a first run collapsed: every loss sat at chance
  within 30 steps, the text tower having made T_N = T_A before the image tower learnt anything.
- L_proto: patches (mask labels) and captions (their state) against two shared, learned state
  prototypes, so both towers meet on one target.
- L_mil: per tap, the mean of the image's top `mil_share` patch logits (abnormal - normal)
  against the image's state: a clean image must have no abnormal-looking patch.
- `min_contrast`: only mask pixels that visibly changed count as defect (labels of defects
  the nuisances made invisible are dropped, see WorldBatches).

Reproducible: the weights start from `seed`; scene i of step t is drawn from (seed, t * B + i)
whatever happened before; there is no dropout. Checkpoints are one safetensors file holding
weights, AdamW moments, step and loss history, written atomically every `save_every` steps;
a rerun with the same arguments resumes from it and ends with the same weights as an
uninterrupted run (same thread count).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from safetensors.torch import load_file

from .backbone import random_init_requested
from .config import MINI_BACKBONE, PRECISIONS, register_model_configs
from .precision import autocast
from .files import atomic_write_bytes, atomic_write_text, safetensors_bytes, safetensors_metadata
from .data.io import clip_normalize
from .data.world import make_pair
from .pretrain_losses import PATCH_PROJECTIONS, losses, patch_losses  # tests and benchmarks import them from here too


@dataclass
class PretrainConfig:
    arch: str = MINI_BACKBONE  # registered open_clip configuration
    steps: int = 1000  # optimisation steps
    batch_pairs: int = 24  # scenes per step; each gives a clean and a defective image
    low_size: int = 160  # resolution of the first steps (position embedding interpolated)
    image_size: int = 224  # the config's native resolution, used for the last steps
    final_share: float = 0.1  # share of steps at image_size
    lr: float = 5e-4  # AdamW peak learning rate (linear warm-up, cosine decay to 0)
    warmup: int = 50  # warm-up steps
    weight_decay: float = 0.05  # on matrices only (not norms, biases, embeddings)
    taps: tuple[int, ...] = (2, 4, 6, 8)  # blocks whose patch tokens get the dense loss
    w_state: float = 1.0  # weight of L_state
    w_dense: float = 1.0  # weight of L_dense (mean over taps)
    w_probe: float = 1.0  # weight of L_probe: a linear patch classifier, discarded after training
    w_proto: float = 0.0  # weight of L_proto: patches and captions against shared state prototypes
    w_mil: float = 0.0  # weight of L_mil: an image is abnormal iff its top patches are (see losses)
    mil_share: float = 0.02  # share of a tap's patches whose mean abnormal logit is the image's logit
    init: str | None = None  # start from these weights (a run's checkpoint or exported file): stage 2
    tau: float | None = None  # logit scale of L_state / L_dense; None: CLIP's learnable one (a fixed
    # 100 from the first step collapsed a first run: every loss sat at chance within 30 steps)
    min_cover: float = 0.02  # patch is abnormal at >= this mask coverage; (0, min_cover) ignored
    min_contrast: int = 0  # > 0: only mask pixels that changed by more than this (uint8 levels,
    # any channel, after the nuisances) count as defect; masked patches without one are ignored,
    # and pairs whose defect nowhere shows are left out of L_state and L_mil (0: the raw masks)
    random_name_p: float = 0.3  # share of captions naming the object with a random word
    seed: int = 0  # weights init and the world's scenes
    save_every: int = 25  # checkpoint period in steps
    workers: int = 0  # data-drawing processes (0: draw in the training process, see `reuse`)
    threads: int = 2  # torch threads of the training process (both cores: benchmarks/pretrain_speed.py)
    precision: str = "bfloat16"  # forward and losses under CPU autocast; master weights and AdamW
    # state stay float32 ("float32": no autocast). bfloat16 matmuls run ~4.7x faster on AVX-512 BF16
    reuse: int = 1  # each drawn batch serves this many consecutive steps, each under another of the
    # 8 rotations / flips: drawing 24 pairs (0.29 s) would otherwise cost half a bfloat16 step
    w_tie: float = 0.0  # weight of L_tie: the class token's state logit pulled to the top-patch logit
    snapshot_every: int = 0  # > 0: also keep float16 weights every this many steps (learning curves)
    patch_proj: str = "proj"  # the projection every patch loss goes through (PATCH_PROJECTIONS): "proj",
    # the shipped ln_post + proj (v2: the tapped tokens are born aligned with the text), or "own",
    # ln_post + a W x E matrix of the pretraining's own, dropped at export (v3: as in CLIP, the
    # shipped proj never compares a tapped token with the text, only the class token)

    def __post_init__(self) -> None:
        self.taps = tuple(int(t) for t in self.taps)
        if self.steps < 1 or self.batch_pairs < 1 or self.save_every < 1 or self.warmup < 0:
            raise ValueError("pretrain: steps, batch_pairs and save_every must be >= 1, warmup >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"pretrain: lr={self.lr} must be a positive finite number")
        if self.precision not in PRECISIONS:
            raise ValueError(f"pretrain: precision={self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if not 1 <= self.reuse <= 8:
            raise ValueError(f"pretrain: reuse={self.reuse} must be 1..8 (one step per rotation / flip)")
        weights = {k: v for k, v in dataclasses.asdict(self).items() if k.startswith("w_")}
        bad = [k for k, v in weights.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"pretrain: loss weights must be finite and >= 0 ({', '.join(bad)})")
        if self.patch_proj not in PATCH_PROJECTIONS:
            raise ValueError(f"pretrain: patch_proj={self.patch_proj!r}; allowed: {', '.join(PATCH_PROJECTIONS)}")
        if self.w_tie and not self.w_mil:
            raise ValueError("pretrain: w_tie needs w_mil > 0 (it follows L_mil's top-patch logit)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["taps"] = list(self.taps)
        return d


# ----------------------------------------------------------------------------- data
class WorldBatches(torch.utils.data.Dataset):
    """Item t is step t's batch: images (2B, 3, S, S) [clean..., defective...], patch cover
    (2B, N) (NaN: masked but unseen, ignored), caption tokens (2B, ctx) [normal..., abnormal...].
    Pure in (seed, t): step t shows drawn batch t // reuse under rotation / flip t % reuse."""

    def __init__(self, cfg: PretrainConfig, patch: int, tokenizer):
        self.cfg, self.patch, self.tokenizer = cfg, patch, tokenizer
        self._last = None  # (key, batch): the `reuse` steps of one drawn batch are consecutive

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, t: int):
        c = self.cfg
        key = (t // c.reuse, step_size(c, t))
        if self._last is None or self._last[0] != key:
            self._last = (key, self.draw(*key))
        x, cover, tokens = self._last[1]
        g = t % c.reuse  # 0: as drawn; 1-3: rotated by 90 degrees; 4-7: the same, flipped
        if g:
            G = x.shape[-1] // self.patch
            x = _rot_flip(x, g)
            cover = _rot_flip(cover.unflatten(1, (G, G)), g).flatten(1)
        return x, cover, tokens

    def draw(self, d: int, size: int):
        """Drawn batch d at side `size`: scenes d * B ... d * B + B - 1 of the world."""
        c = self.cfg
        pairs = [make_pair(c.seed, d * c.batch_pairs + i, size, random_name_p=c.random_name_p)
                 for i in range(c.batch_pairs)]
        imgs = np.concatenate([np.stack([p.images[j] for p in pairs]) for j in (0, 1)])  # (2B, S, S, 3)
        masks = np.concatenate([np.stack([p.masks[j] for p in pairs]) for j in (0, 1)])  # (2B, S, S)
        x = clip_normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
        cover = F.avg_pool2d(torch.from_numpy(masks)[:, None], self.patch).flatten(1)  # (2B, N)
        if c.min_contrast > 0:  # label what can be seen: ~15 % of drawn defects vanish in the nuisances
            B = len(pairs)
            change = np.abs(imgs[B:].astype(np.int16) - imgs[:B]).max(-1) > c.min_contrast  # (B, S, S)
            seen = torch.from_numpy((masks[B:] >= 0.5) & change).float()[:, None]
            seen = F.avg_pool2d(seen, self.patch).flatten(1)  # (B, N) visibly changed share
            cover[B:] = torch.where((cover[B:] > 0) & (seen < c.min_cover), torch.nan, seen)
        caps = [p.captions[0] for p in pairs] + [p.captions[1] for p in pairs]
        return x, cover, self.tokenizer(caps)


def _rot_flip(a: torch.Tensor, g: int) -> torch.Tensor:
    """The g-th of the 8 rotations / flips of the last two (square) dimensions of `a`."""
    a = torch.rot90(a, g % 4, dims=(-2, -1))
    return a.flip(-1).contiguous() if g >= 4 else a.contiguous()


def step_size(cfg: PretrainConfig, step: int) -> int:
    """Image side of a step: low_size, then image_size for the last final_share of steps."""
    return cfg.image_size if step >= round(cfg.steps * (1 - cfg.final_share)) else cfg.low_size


def _worker_init(_):
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- model
def build_model(cfg: PretrainConfig):
    """(open_clip CLIP with seeded random weights, tokenizer)."""
    register_model_configs()
    import open_clip

    with torch.random.fork_rng(devices=[]), random_init_requested():
        torch.manual_seed(cfg.seed)
        model = open_clip.create_model(cfg.arch, pretrained=None)
    return model, open_clip.get_tokenizer(cfg.arch)


def _lr(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _optimizer(model, cfg: PretrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([dict(params=decay, weight_decay=cfg.weight_decay),
                              dict(params=rest, weight_decay=0.0)], lr=cfg.lr, betas=(0.9, 0.98))


# ----------------------------------------------------------------------------- checkpoints
CHECKPOINT = "checkpoint.safetensors"


def _save_checkpoint(path: Path, model, opt, cfg: PretrainConfig, step: int, history: list) -> None:
    """Weights, AdamW moments, step and history in ONE file, written atomically."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                n = names[id(p)]
                tensors[f"opt.{n}.exp_avg"] = st["exp_avg"].contiguous()
                tensors[f"opt.{n}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
    meta = dict(step=str(step), history=json.dumps(history), config=json.dumps(cfg.to_dict()))
    atomic_write_bytes(path, safetensors_bytes(tensors, meta))


def _load_checkpoint(path: Path, model, opt, cfg: PretrainConfig) -> tuple[int, list]:
    meta = safetensors_metadata(path)
    saved = json.loads(meta.get("config", "{}"))
    mine, default = cfg.to_dict(), PretrainConfig().to_dict()  # a field newer than the file: its default
    diff = sorted(k for k in mine if k not in ("workers", "save_every", "threads")
                  and saved.get(k, default[k]) != mine[k])
    if diff:
        raise ValueError(f"pretrain: {path} was made with other settings ({', '.join(diff)}); "
                         f"resume with the same ones, or use a new run folder")
    t = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    step = int(meta["step"])
    for n, p in model.named_parameters():
        if f"opt.{n}.exp_avg" in t:
            opt.state[p] = dict(step=torch.tensor(float(step)), exp_avg=t[f"opt.{n}.exp_avg"].clone(),
                                exp_avg_sq=t[f"opt.{n}.exp_avg_sq"].clone())
    return step, json.loads(meta["history"])


# ----------------------------------------------------------------------------- loop
def _training_model(cfg: PretrainConfig, start_from_init: bool):
    """The model with its training-only parts (state probe, prototypes), from `cfg.init` if set."""
    model, tokenizer = build_model(cfg)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        model.state_probe = torch.nn.Linear(model.text_projection.shape[1], 2)  # dropped at export
        if cfg.w_proto:
            model.state_prototypes = torch.nn.Parameter(torch.randn(2, model.text_projection.shape[1]))
        if cfg.patch_proj == "own":  # drawn last: the other parts' draws stay v2's
            W, E = model.visual.proj.shape  # open_clip's init of proj: width ** -0.5 * randn
            model.state_patch_proj = torch.nn.Parameter(W ** -0.5 * torch.randn(W, E))
    if cfg.init and start_from_init:
        from .errors import BagclipError

        t = _init_tensors(cfg.init)
        t = {k[6:] if k.startswith("model.") else k: v for k, v in t.items() if not k.startswith("opt.")}
        t = {k: v.float() for k, v in t.items() if not k.startswith("state_")}
        try:
            missing = model.load_state_dict(t, strict=False).missing_keys
        except RuntimeError as err:  # shapes of another model
            why = str(err).splitlines()[-1].strip()[:160]
            raise BagclipError(f"pretrain: the init weights {cfg.init} do not fit this model ({why}); "
                               f"{_INIT_HINT}", path=cfg.init) from None
        if any(not k.startswith("state_") for k in missing):
            raise BagclipError(f"pretrain: the init weights {cfg.init} lack {', '.join(missing[:3])}...; "
                               f"{_INIT_HINT}", path=cfg.init)
    return model, tokenizer


_INIT_HINT = "give a bagclip-mini run's checkpoint (or its folder) or exported weights (.safetensors)"


def _init_tensors(path) -> dict:
    """The tensors of the init setting: a safetensors file, or a run folder's checkpoint;
    BagclipError naming the path for anything else (a text file was safetensors' traceback)."""
    from safetensors import SafetensorError

    from .errors import BagclipError

    p = Path(path)
    if p.is_dir() and (p / CHECKPOINT).is_file():
        p = p / CHECKPOINT
    if not p.is_file():
        what = "a folder without a checkpoint" if p.is_dir() else "not found"
        raise BagclipError(f"pretrain: the init weights {p} are {what}; {_INIT_HINT}", path=p)
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as err:
        raise BagclipError(f"pretrain: the init weights {p} are not a safetensors weights file "
                           f"({' '.join(str(err).split())[:120]}); {_INIT_HINT}", path=p) from None


def _step(model, opt, cfg: PretrainConfig, batch, clip_loss, step: int) -> dict:
    """One optimisation step; returns the losses as floats. Refuses a non-finite loss."""
    for g in opt.param_groups:
        g["lr"] = _lr(cfg, step)
    # The backward pass follows the forward's dtypes. Attention through the plain matmul-softmax
    # path: at 101 and 32 tokens, the CPU's flash kernel spent 37 % of a bfloat16 step in its
    # backward (0.63 -> 0.45 s a step, measured with torch.profiler, 2 threads)
    with autocast(cfg.precision, "cpu"), sdpa_kernel([SDPBackend.MATH]):
        parts = losses(model, cfg, *batch, clip_loss, model.state_probe, getattr(model, "state_prototypes", None))
    if not torch.isfinite(parts["total"]):
        raise FloatingPointError(f"pretrain: the loss is not finite at step {step} "
                                 f"({', '.join(k for k, v in parts.items() if not torch.isfinite(v))}); "
                                 f"the last checkpoint is kept: lower the learning rate")
    opt.zero_grad(set_to_none=True)
    parts["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return {k: round(float(v.detach()), 5) for k, v in parts.items()}


def pretrain(cfg: PretrainConfig, out_dir, progress: bool = True, stop_after: int | None = None,
             on_step=None):
    """Train (or resume) into `out_dir`; returns (model, history). `stop_after` ends the run
    early after that many steps in total (tests use it to simulate an interruption);
    `on_step(step, losses)` is called after every step (benchmarks time the loop with it)."""
    from open_clip.loss import ClipLoss
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model, tokenizer = _training_model(cfg, start_from_init=not (out / CHECKPOINT).exists())
    opt = _optimizer(model, cfg)
    ckpt = out / CHECKPOINT
    step, history = (0, [])
    if ckpt.exists():
        step, history = _load_checkpoint(ckpt, model, opt, cfg)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    patch = int(model.visual.conv1.kernel_size[0])
    data = WorldBatches(cfg, patch, tokenizer)
    sampler = range(step, end)
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=sampler, num_workers=cfg.workers,
                                         worker_init_fn=_worker_init, prefetch_factor=2 if cfg.workers else None,
                                         persistent_workers=False)
    clip_loss = ClipLoss()
    bar = tqdm(total=end, initial=step, desc="pretrain bagclip-mini", disable=not progress)
    t0, start = time.time(), step
    for batch in loader:
        history.append(_step(model, opt, cfg, batch, clip_loss, step))
        step += 1
        if on_step is not None:
            on_step(step, history[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['total']:.3f}", dense=f"{history[-1]['dense']:.3f}")
        if step % cfg.save_every == 0 or step == end:
            _save_checkpoint(ckpt, model, opt, cfg, step, history)
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            export_weights(model, out / "snapshots" / f"step{step:06d}.safetensors", {"step": step})
    bar.close()
    atomic_write_text(out / "history.json", json.dumps(history))
    if step > start:  # a rerun of a finished run (e.g. to --export) adds nothing, and keeps the time
        before = _seconds_so_far(out / "time.txt") if start else 0.0
        atomic_write_text(out / "time.txt", f"{before + time.time() - t0:.0f} s for steps up to {step}\n")
    model.eval()
    return model, history


def _seconds_so_far(path: Path) -> float:
    """The seconds an earlier session of a resumed run recorded in time.txt (0 if none)."""
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def write_record(weights: Path, sha256: str, run_dir, command: str) -> Path:
    """The JSON beside shipped weights: hash, command, settings and time of the run."""
    meta = safetensors_metadata(Path(run_dir) / CHECKPOINT)
    history = json.loads(meta.get("history", "[]"))
    t = Path(run_dir, "time.txt")
    config = json.loads(meta.get("config", "{}"))
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    cfg = PretrainConfig(**{k: (tuple(v) if k == "taps" else v) for k, v in config.items() if k in known})
    rec = dict(file=weights.name, sha256=sha256, command=command, config=config,
               loss_weights={k: v for k, v in cfg.to_dict().items() if k.startswith("w_")},
               patch_losses=patch_losses(cfg),
               steps=int(meta.get("step", 0)), final_losses=history[-1] if history else None,
               wall_time=t.read_text().strip() if t.exists() else None)
    path = weights.with_suffix(".json")
    atomic_write_text(path, json.dumps(rec, indent=1))
    return path


def export_weights(run_dir, path, info: dict | None = None) -> str:
    """Write a run's weights (its checkpoint, or a model) as float16 safetensors with open_clip's
    key names; returns the file's SHA-256. `info` (command, seed, time...) goes in the metadata."""
    import hashlib

    if isinstance(run_dir, torch.nn.Module):
        state = run_dir.state_dict()
    else:
        t = load_file(str(Path(run_dir) / CHECKPOINT))
        state = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
    state = {k: v for k, v in state.items() if not k.startswith("state_")}  # training-only parts
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"export: {len(bad)} weight tensors are not finite (e.g. {bad[0]}); "
                                 f"nothing written to {path}")
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}
    blob = safetensors_bytes(tensors, {k: str(v) for k, v in (info or {}).items()})
    atomic_write_bytes(Path(path), blob)
    return hashlib.sha256(blob).hexdigest()
