"""Metrics of a detector on a dataset: any scorer over images, or trained heads over cached tokens.

    evaluate(fn, samples, image_size)              any scorer, maps at any resolution
    evaluate_cached(model, cfg, backbone, cache, samples)   heads on feature-cache entries

The scorer contract: fn(images (B, 3, S, S) float tensor, class_name: str)
    -> (anomaly_maps (B, S, S) tensor/ndarray, image_scores (B,)).
Both paths feed the same per-class accumulation (`_class_metrics`): batches never mix classes,
pixel metrics accumulate per class in bounded memory (8 bytes per evaluated pixel of the
largest class, see bagclip.metrics.PixelMetricAccumulator), one class at a time.

One rule for which images count in the pixel metrics, whatever the path: normal images (every
pixel normal) and anomalous images with a mask. An anomalous image without a mask (image-level
ground truth) counts in the image metrics only; a set where no image has a mask has NaN pixel
metrics. Writing the results and the paper's tables is bagclip.report's job.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics import PixelMetricAccumulator, binary_metrics, mean_over_classes, merge_metrics

__all__ = ["evaluate", "evaluate_cached", "evaluate_recorded", "parse_resolution"]

Scorer = Callable[[torch.Tensor, str], tuple]


def parse_resolution(resolution, image_size: int | None = None):
    """None -> image_size; a positive int or digit string -> int; "native" -> "native";
    anything else ValueError (the CLI turns it into its own argument error)."""
    if resolution is None:
        return int(image_size)
    if isinstance(resolution, str) and resolution != "native":
        if not resolution.strip().isdigit():
            raise ValueError(f"resolution must be a positive whole number of pixels or 'native', "
                             f"got {resolution!r}")
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


def _pixel_known(s) -> bool:
    """Whether a sample's pixel ground truth is known (the module's rule)."""
    return bool(s.mask_path) or not s.label


class ClassMetrics:
    """The seven metrics of one class, fed batch by batch: `add(samples (b,), maps (b, S, S),
    scores (b,))`, then `result()`. Pixel keys accumulate in bounded memory (8 bytes per
    evaluated pixel of this class); the module's rule picks the images that count."""

    def __init__(self, cls: str, group: Sequence, res, pixel: bool, fpr_limit: float):
        cap = sum(map(_pixel_known, group)) * res * res if (pixel and res != "native") else None
        if cap:
            from .budget import check_resolution  # issue 19: before the buffer is allocated

            check_resolution(cap // (res * res), res)
        self.cls, self.res = cls, res
        self.acc = PixelMetricAccumulator(fpr_limit, capacity=cap) if pixel else None
        self.scores, self.labels = [], []

    def add(self, batch: Sequence, maps, sc) -> None:
        from .data import load_mask

        sc = np.asarray(torch.as_tensor(sc).detach().double().cpu()).ravel()
        if sc.size != len(batch):
            raise ValueError(f"scorer returned {sc.size} image scores for {len(batch)} images")
        self.scores.append(sc)
        self.labels += [int(s.label) for s in batch]
        if self.acc is None:
            return
        res = self.res
        for s, m in zip(batch, _as_maps(maps, len(batch))):
            if not _pixel_known(s):
                continue  # anomalous, ground truth unknown: not "all normal"
            gt = load_mask(s.mask_path, None if res == "native" else res, like=s.image_path).numpy()
            if tuple(m.shape) != gt.shape:
                m = F.interpolate(m[None, None], size=gt.shape, mode="bilinear", align_corners=False)[0, 0]
            self.acc.update(m.numpy(), gt)

    def result(self) -> dict:
        pix = self.acc.compute() if self.acc is not None else None
        self.acc = None  # free this class's keys before the next class
        return merge_metrics(binary_metrics(np.concatenate(self.scores), self.labels), pix,
                             f"class {self.cls!r}")


def evaluate(fn: Scorer, samples: Sequence, image_size: int, batch_size: int = 8,
             resolution=None, dataset_name: str | None = None, pixel: bool | None = None,
             fpr_limit: float = 0.3, progress: bool = True, on_class=None) -> dict:
    """Evaluate `fn` on `samples` (bagclip.data.Sample) and return the metrics dict.

    resolution: None (= image_size), an int S' (maps bilinearly resized to S' x S', masks loaded
    at S'), or "native" (maps resized to each mask's file size). pixel: None -> pixel metrics
    only when some sample has a mask (image-level-only datasets give NaN pixel metrics).
    Pixel metrics follow the module's rule (normal images, and anomalous ones with a mask).
    Returns compute_metrics' keys (unweighted means over classes) plus dataset, resolution,
    n_images, per_class (`bagclip.report.write_results` writes it to files).
    on_class: optional callable(class name, image scores (n,), labels (n,)) after each class
    (e.g. a decision threshold's precision and recall, `bagclip.calibrate.operating_point`).
    """
    from .data import load_image

    res = parse_resolution(resolution, image_size)
    if not samples:
        raise ValueError(f"evaluate: no images to evaluate{f' in {dataset_name}' if dataset_name else ''}; "
                         f"check the dataset root, split and classes")
    if pixel is None:
        pixel = any(getattr(s, "mask_path", None) for s in samples)

    def batches(cls, group):
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            images = torch.stack([load_image(s.image_path, image_size) for s in batch])
            with torch.no_grad():
                maps, sc = fn(images, cls)
            yield batch, maps, sc

    groups: dict[str, list] = {}
    for s in samples:  # first-seen class order
        groups.setdefault(str(s.class_name), []).append(s)
    per_class = {}
    with tqdm(total=len(samples), desc=f"eval {dataset_name or ''}".strip(), disable=not progress) as bar:
        for cls, group in groups.items():  # one class at a time
            m = ClassMetrics(cls, group, res, pixel, fpr_limit)
            for batch, maps, sc in batches(cls, group):
                m.add(batch, maps, sc)
                bar.update(len(batch))
            per_class[cls] = m.result()
            if on_class is not None:
                on_class(cls, np.concatenate(m.scores), np.asarray(m.labels))
    return {"dataset": dataset_name, "resolution": res, "n_images": len(samples),
            **mean_over_classes(per_class), "per_class": per_class}


def evaluate_cached(model, cfg, backbone, cache, samples: Sequence, progress: bool = False,
                    fpr_limit: float = 0.3, on_batch=None) -> dict:
    """Metrics of heads (or ZeroShot) on samples, reading backbone tokens from the feature cache
    and streaming `inference.predict_samples` (batches in the samples' order) into one
    `ClassMetrics` per class, each closed at its class's last sample: with classes listed
    together, as every loader lists them, one or two classes are open at a time. Maps at
    cfg.image_size; the module's rule for pixel ground truth. Returns compute_metrics' dict
    (means over classes, per_class). on_batch(indices, maps, scores): every batch, as predicted
    (`evaluate_recorded` keeps them)."""
    from .inference import class_groups, predict_samples

    pixel = any(getattr(s, "mask_path", None) for s in samples)
    groups = class_groups(samples)
    last = {idx[-1]: cls for cls, idx in groups.items()}
    open_, done = {}, {}
    for idx, maps, sc, _ in predict_samples(model, cfg, backbone, cache, samples, progress=progress):
        if on_batch is not None:
            on_batch(idx, maps, sc)
        for cls in dict.fromkeys(str(samples[i].class_name) for i in idx):
            rows = [j for j, i in enumerate(idx) if str(samples[i].class_name) == cls]
            if cls not in open_:
                open_[cls] = ClassMetrics(cls, [samples[i] for i in groups[cls]], cfg.image_size, pixel, fpr_limit)
            open_[cls].add([samples[idx[j]] for j in rows], maps[rows], sc[rows])
        for i in idx:
            if i in last:
                done[last[i]] = open_.pop(last[i]).result()
    per_class = {cls: done[cls] for cls in groups}  # first-seen class order
    return {**mean_over_classes(per_class), "per_class": per_class}


def evaluate_recorded(model, cfg, backbone, cache, samples: Sequence, bins: int = 1024,
                      fpr_limit: float = 0.3) -> tuple[dict, dict]:
    """`evaluate_cached`'s metrics and, from the same predictions, the per-image record a
    paired comparison needs (bagclip.compare.Results.from_records): {"scores" (n,), "labels"
    (n,), "classes" (n,)} and, when every image's pixel ground truth is known, the per-image
    histograms of `metrics.image_histograms` of the maps on their quantile scale
    (`quantile_scale`: ranks kept, bins evenly filled). Memory: the maps of
    every sample as float32 (4 bytes per pixel) until the histograms are made."""
    from .data import load_mask
    from .metrics import image_histograms

    n, S = len(samples), cfg.image_size
    maps, scores = np.zeros((n, S, S), np.float32), np.zeros(n)

    def keep(idx, m, sc):
        maps[idx] = m.numpy()
        scores[idx] = sc.double().numpy()

    metrics = evaluate_cached(model, cfg, backbone, cache, samples, fpr_limit=fpr_limit, on_batch=keep)
    record = {"scores": scores, "labels": np.array([int(bool(s.label)) for s in samples]),
              "classes": np.array([str(s.class_name) for s in samples])}
    if all(_pixel_known(s) for s in samples) and any(s.mask_path for s in samples):
        masks = np.stack([load_mask(s.mask_path, S).numpy() for s in samples])
        record.update(image_histograms(quantile_scale(maps, bins), masks, bins, 0.0, 1.0, fpr_limit))
    return metrics, record


def quantile_scale(maps: np.ndarray, bins: int = 1024) -> np.ndarray:
    """maps through their own empirical quantiles into [0, 1] (piecewise linear between
    `bins` + 1 quantiles of a subsample): a monotone map, so every rank-based metric (AUROC, AP,
    F1-max, AUPRO) is unchanged, and equal-width bins of the result each hold about 1 / bins of
    the pixels, whatever the maps' shape (a long tail over [min, max] would put most pixels in
    one bin and make the binned metrics coarse)."""
    flat = maps.reshape(-1)
    sample = np.sort(flat[:: max(1, flat.size // 500_000)])
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        return np.zeros_like(maps, np.float32)
    return np.interp(maps, edges, np.linspace(0.0, 1.0, edges.size)).astype(np.float32)
