"""Metrics of a detector on a dataset: any scorer over images, or trained heads over cached tokens.

    evaluate(fn, samples, image_size)              any scorer, maps at any resolution
    evaluate_cached(model, cfg, backbone, cache, samples)   heads on feature-cache entries

The scorer contract: fn(images (B, 3, S, S) float tensor, class_name: str)
    -> (anomaly_maps (B, S, S) tensor/ndarray, image_scores (B,)).
Batches never mix classes. Pixel metrics accumulate per class in bounded memory (8 bytes per
evaluated pixel of the largest class, see bagclip.metrics.PixelMetricAccumulator). Writing the
results and the paper's tables is bagclip.report's job.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics import (PixelMetricAccumulator, binary_metrics, compute_metrics, mean_over_classes,
                      merge_metrics)

__all__ = ["evaluate", "evaluate_cached"]

Scorer = Callable[[torch.Tensor, str], tuple]


def _resolution(resolution, image_size: int):
    """None -> image_size; int or digit string -> int; "native" -> "native"."""
    if resolution is None:
        return int(image_size)
    if isinstance(resolution, str) and resolution != "native":
        if not resolution.isdigit():
            raise ValueError(f"resolution must be an int or 'native', got {resolution!r}")
        resolution = int(resolution)
    if resolution != "native" and int(resolution) <= 0:
        raise ValueError("resolution must be positive")
    return resolution if resolution == "native" else int(resolution)


def _as_maps(maps, b: int) -> torch.Tensor:
    maps = torch.as_tensor(maps).detach().float().cpu()
    if maps.ndim == 4 and maps.shape[1] == 1:  # (B, 1, S, S): drop the channel, not the batch
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != b:
        raise ValueError(f"scorer returned maps of shape {tuple(maps.shape)}, expected ({b}, S, S)")
    return maps


def evaluate(fn: Scorer, samples: Sequence, image_size: int, batch_size: int = 8,
             resolution=None, dataset_name: str | None = None, pixel: bool | None = None,
             fpr_limit: float = 0.3, progress: bool = True) -> dict:
    """Evaluate `fn` on `samples` (bagclip.data.Sample) and return the metrics dict.

    resolution: None (= image_size), an int S' (maps bilinearly resized to S' x S', masks loaded
    at S'), or "native" (maps resized to each mask's file size). pixel: None -> pixel metrics
    only when some sample has a mask (image-level-only datasets give NaN pixel metrics).
    Pixel metrics use the images whose ground truth is known: normal ones (all-normal pixels)
    and anomalous ones with a mask; anomalous images without a mask (image-level mode) count
    in the image metrics only.
    Returns compute_metrics' keys (unweighted means over classes) plus dataset, resolution,
    n_images, per_class (`bagclip.report.write_results` writes it to files).
    """
    from .data import load_image, load_mask

    res = _resolution(resolution, image_size)
    if not samples:
        raise ValueError(f"evaluate: no images to evaluate{f' in {dataset_name}' if dataset_name else ''}; "
                         f"check the dataset root, split and classes")
    if pixel is None:
        pixel = any(getattr(s, "mask_path", None) for s in samples)
    groups: dict[str, list] = {}
    for s in samples:  # first-seen class order
        groups.setdefault(str(s.class_name), []).append(s)
    per_class = {}
    bar = tqdm(total=len(samples), desc=f"eval {dataset_name or ''}".strip(), disable=not progress)
    for cls, group in groups.items():
        cap = sum(1 for s in group if s.mask_path or not s.label) * res * res if (pixel and res != "native") else None
        if cap:
            from .budget import check_resolution  # issue 19: before the buffer is allocated

            check_resolution(cap // (res * res), res)
        acc = PixelMetricAccumulator(fpr_limit, capacity=cap) if pixel else None
        scores, labels = [], []
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            images = torch.stack([load_image(s.image_path, image_size) for s in batch])
            with torch.no_grad():
                maps, sc = fn(images, cls)
            sc = np.asarray(torch.as_tensor(sc).detach().double().cpu()).ravel()
            if sc.size != len(batch):
                raise ValueError(f"scorer returned {sc.size} image scores for {len(batch)} images")
            scores.append(sc)
            labels += [int(s.label) for s in batch]
            if acc is not None:
                maps = _as_maps(maps, len(batch))
                for s, m in zip(batch, maps):
                    if s.label and not s.mask_path:
                        continue  # anomalous, ground truth unknown: not "all normal"
                    gt = load_mask(s.mask_path, None if res == "native" else res,
                                   like=s.image_path).numpy()
                    if tuple(m.shape) != gt.shape:
                        m = F.interpolate(m[None, None], size=gt.shape, mode="bilinear",
                                          align_corners=False)[0, 0]
                    acc.update(m.numpy(), gt)
            bar.update(len(batch))
        pix = acc.compute() if acc is not None else None
        per_class[cls] = merge_metrics(binary_metrics(np.concatenate(scores), labels), pix,
                                       f"class {cls!r}")
        del acc  # free this class's keys before the next class
    bar.close()
    return {"dataset": dataset_name, "resolution": res, "n_images": len(samples),
            **mean_over_classes(per_class), "per_class": per_class}


def evaluate_cached(model, cfg, backbone, cache, samples: Sequence, progress: bool = False) -> dict:
    """Metrics of heads on samples, reading backbone tokens from the feature cache; maps at
    cfg.image_size. Image-level sets (an anomalous sample without a mask) give NaN pixel metrics.
    Returns compute_metrics' dict (means over classes, per_class)."""
    from .data import load_mask
    from .inference import predict_cached
    from .train import class_texts

    entries = cache.ensure([s.image_path for s in samples], progress=progress)
    names = [s.class_name for s in samples]
    maps, scores, _ = predict_cached(model, cfg, cache, entries, names, class_texts(backbone, names, cfg))
    labels = np.array([int(s.label) for s in samples])
    if any(s.label and s.mask_path is None for s in samples):
        return compute_metrics(scores.numpy(), labels, class_names=names)
    masks = torch.stack([load_mask(s.mask_path, cfg.image_size) for s in samples])
    return compute_metrics(scores.numpy(), labels, maps.numpy(), masks.numpy(), class_names=names)
