"""Inference: anomaly maps and image scores for images, folders or cached features.

    predict(images, checkpoint)        images, folders, tensors -> [Prediction]: maps at each
                                       image's own resolution (smoothed at the model's input
                                       size, then resized)
    scorer(model, backbone, cfg)       heads as the evaluator's callable (bagclip.evaluate)
    predict_samples(model, cfg, backbone, cache, samples)
                                       THE way to run heads (or ZeroShot) over cached samples:
                                       batch by batch, a generator, so that evaluate_cached
                                       streams it through the per-class pixel accumulators
                                       and the figures collect only what they draw
Every path ends in `heads_forward` (autocast forward, then smoothing and the image score).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import Backbone, Tokens
from .config import Config
from .data.io import IMAGE_EXTS
from .prompts import class_texts


@dataclass
class Prediction:
    path: str | None  # source file, if any
    anomaly_map: np.ndarray  # (H, W) float32 in [0, 1] at the input image's resolution
    image_score: float  # per cfg.image_score
    p_img: float  # global-branch abnormal probability

    def is_anomalous(self, threshold: float) -> bool:
        return self.image_score >= threshold


def run_heads(model, tokens: Tokens, text: torch.Tensor, cfg: Config):
    """The heads' (or ZeroShot's) `Output` for tokens and text (B, 2, E), at cfg.heads_precision."""
    from .precision import autocast

    with autocast(cfg.heads_precision, tokens.patches.device):
        return model(tokens, text)


def score_output(out, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """(smoothed maps (B, S, S), image scores (B,)) of an `Output`, in float32: the evaluation's
    post-processing (Gaussian smoothing, then cfg.image_score)."""
    from .model import score_image, smooth_maps

    maps = smooth_maps(out.anomaly_map.float(), cfg.smoothing_sigma)
    return maps, score_image(out.p_img.float(), maps, cfg.image_score)


@torch.no_grad()
def heads_forward(model, tokens: Tokens, text: torch.Tensor, cfg: Config):
    """(smoothed maps (B, S, S), image scores (B,), p_img (B,)) from tokens and text (B, 2, E)."""
    out = run_heads(model, tokens, text, cfg)
    maps, scores = score_output(out, cfg)
    if not (torch.isfinite(scores).all() and torch.isfinite(maps).all()):
        raise ValueError("the heads give NaN or infinite anomaly scores: their weights or the input "
                         "features are not finite (a diverged training?). Retrain with a lower lr")
    return maps, scores, out.p_img


def scorer(model, backbone: Backbone, cfg: Config) -> Callable:
    """The evaluator's callable: fn(images (B, 3, S, S), class_name) -> (maps (B, S, S), scores (B,))."""
    def fn(images: torch.Tensor, class_name: str):
        text = class_texts(backbone, [class_name], cfg)[class_name]
        tok = backbone.encode(images, pad=False)  # writes no cache: no padding (docs/decisions.md)
        t = text.to(tok.cls.device).expand(images.shape[0], -1, -1)
        maps, scores, _ = heads_forward(model, tok, t, cfg)
        return maps.cpu(), scores.cpu()

    return fn


def class_groups(samples: Sequence) -> dict[str, list[int]]:
    """class name -> indices into samples, classes in first-seen order (batches never mix classes)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(str(s.class_name), []).append(i)
    return groups


@torch.no_grad()
def predict_samples(model, cfg: Config, backbone: Backbone, cache, samples: Sequence,
                    batch_size: int = 16, progress: bool = False) -> Iterator[tuple]:
    """Run heads (or `ZeroShot`) over samples whose tokens come from the feature cache.

    Yields, batch by batch in the samples' order: (indices into samples (b,), maps (b, S, S)
    float32, scores (b,), p_img (b,)), on the CPU; each sample is scored with its own class's
    text, so a batch may span two classes. Nothing is kept between batches: memory is one
    batch's maps (the evaluator groups them by class, bagclip.evaluate).
    """
    entries = cache.ensure([s.image_path for s in samples], progress=progress)
    texts = class_texts(backbone, [s.class_name for s in samples], cfg)
    device = next(model.parameters()).device
    for b in range(0, len(samples), batch_size):
        idx = list(range(b, min(b + batch_size, len(samples))))
        tok = cache.load_batch([entries[i] for i in idx], device)
        text = torch.stack([texts[samples[i].class_name] for i in idx]).to(device)  # (b, 2, E)
        m, sc, p = heads_forward(model, tok, text, cfg)
        yield idx, m.cpu(), sc.cpu(), p.cpu()


def predict_all(model, cfg: Config, backbone: Backbone, cache, samples: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(maps (n, S, S), image scores (n,)) of every sample, in the samples' order: for the few
    images a figure draws (evaluation streams `predict_samples` instead)."""
    S = cfg.image_size
    maps, scores = np.zeros((len(samples), S, S), np.float32), np.zeros(len(samples), np.float32)
    for idx, m, sc, _ in predict_samples(model, cfg, backbone, cache, samples):
        maps[idx], scores[idx] = m.numpy(), sc.numpy()
    return maps, scores


def _collect(images, skipped: list | None = None) -> list:
    """Expand a path / folder / list into a list of paths or tensors.

    A folder contributes its image files (by suffix; sub-folders, dangling or looping links
    and hidden files are passed over with a warning naming them); a path given explicitly must
    be a file. With `skipped`, a missing path is recorded there as (path, reason) instead.
    """
    import warnings

    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            files, odd = [], []
            for f in sorted(p.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTS or f.name.startswith("."):
                    continue
                (files if f.is_file() else odd).append(f)
            for f in odd:
                warnings.warn(f"skipping {f}: not a readable file (a folder, or a broken or looping link)",
                              stacklevel=2)
            if not files:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {p}")
            return files
        if not p.is_file():
            why = "not a file" if p.exists() or p.is_symlink() else "not found"
            if skipped is None:
                raise FileNotFoundError(f"image {why}: {p}")
            skipped.append((str(p), why))
            return []
        return [p]
    return [x for item in images for x in _collect(item, skipped)]


def _detector(checkpoint, cfg, backbone, model, device):
    """(heads, cfg, backbone) of `predict`: from the checkpoint (cfg may change only the
    evaluation settings), else `model` or untrained heads of cfg."""
    from .backbone import load_backbone
    from .checkpoint import load_heads
    from .model import build_heads

    if checkpoint is not None:
        model, trained, backbone = load_heads(checkpoint, backbone=backbone, device=device)
        return model, (trained.check_eval_changes(cfg) if cfg is not None else trained), backbone
    cfg = cfg or (backbone.cfg if backbone is not None else Config.quick())
    backbone = backbone or load_backbone(cfg, device=device)
    return (model or build_heads(cfg, backbone)).to(backbone.device).eval(), cfg, backbone


def predict(images, checkpoint: str | os.PathLike | None = None, class_name: str = "object",
            cfg: Config | None = None, backbone: Backbone | None = None, model=None,
            device: str | torch.device | None = None, batch_size: int = 8,
            skipped: list | None = None) -> list[Prediction]:
    """Anomaly maps and scores for one image, a list, a folder, or a tensor batch.

    images: path, folder, list of paths, or normalised tensors (3, S, S) / (B, 3, S, S).
    checkpoint: a run folder or heads.safetensors from `bagclip train`; None uses `model` or
    untrained heads built from `cfg` (for demos: untrained heads are not a detector). With a
    checkpoint, `cfg` may change only the evaluation settings (config.EVAL_FIELDS).
    class_name: folder-style class name, mapped to a prompt name (e.g. "pcb1").
    skipped: a list to receive (path, reason) for every file that cannot be read; those are
    left out and the rest predicted. Without it, the first such file raises DataError.
    """
    from .data import DataError, load_image
    from .data.io import scorable_hw

    model, cfg, backbone = _detector(checkpoint, cfg, backbone, model, device)
    items = _collect(images, skipped)
    text = class_texts(backbone, [class_name], cfg)[class_name]
    s = cfg.image_size
    results: list[Prediction] = []
    for b in range(0, len(items), batch_size):
        chunk, sizes, batch = [], [], []
        for it in items[b:b + batch_size]:
            if isinstance(it, torch.Tensor):
                batch.append(it)
                sizes.append(tuple(it.shape[-2:]))
                chunk.append(it)
                continue
            try:
                hw, x = scorable_hw(it), load_image(it, s)  # too small: refused
            except DataError as err:
                if skipped is None:
                    raise
                skipped.append((str(it), str(err).split(". ")[0]))
                continue
            sizes.append(hw)
            batch.append(x)
            chunk.append(it)
        if not chunk:
            continue
        imgs = torch.stack(batch).to(backbone.device)
        tok = backbone.encode(imgs, pad=False)  # one image, one forward (docs/decisions.md)
        maps, scores, pimg = heads_forward(model, tok, text.to(backbone.device).expand(len(chunk), -1, -1), cfg)
        for j, it in enumerate(chunk):
            m = maps[j:j + 1, None]
            if sizes[j] != (s, s):
                m = F.interpolate(m, size=sizes[j], mode="bilinear", align_corners=False)
            results.append(Prediction(None if isinstance(it, torch.Tensor) else str(it),
                                      m[0, 0].float().cpu().numpy(), float(scores[j]), float(pimg[j])))
    return results
