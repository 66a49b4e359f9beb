"""From scores to decisions with normal images only: thresholds at a chosen false-positive rate
and maps on a scale that means something, per class, stored beside the checkpoint.

    cal = calibrate("good_parts/", "metal plate", checkpoint="runs/paper", fpr=0.05)
    save_calibration(cal, calibration_path("runs/paper", "metal plate"))
    cal.is_anomalous(score)   # score > cal.image_threshold
    cal.tail(score)           # share of the class's normal images scoring at least this
    cal.normalise(map)        # map / cal.pixel_threshold: 1.0 = as high as the top pixel_fpr of normal pixels

The rule (split conformal, one order statistic): with n normal image scores sorted
s_(1) <= ... <= s_(n), the threshold at rate `fpr` is

    t = s_(k),  k = ceil((1 - fpr) (n + 1)),     "anomalous" iff score > t.

If a fresh normal image's score is exchangeable with the n calibration scores (same class,
same camera, same scorer), its rank among the n + 1 is uniform, so
P(score > t) = (n + 1 - k) / (n + 1) <= fpr (ties only lower it), and >= fpr - 1/(n + 1) for
continuous scores. This is a bound in expectation over calibration sets: one calibration
set's FPR on fresh normals is Beta(n + 1 - k, k) distributed, spread that shrinks as n grows.
k <= n needs n >= 1/fpr - 1 (`min_images`), e.g. 19 images for 5 %, 99 for 1 %; fewer refuses
(CalibrationError). `tail(score)` = (1 + #{s_i >= score}) / (n + 1) is the matching conformal
p-value: tail <= fpr exactly when score > t.
Pixels: the same order statistic over all normal pixels pooled (maps at the model's input
size), at `pixel_fpr`. Pixels of one image are correlated, so here the rate is an estimate
of the share of normal pixels above threshold, not a guarantee per image.

Nothing is learned from labels or masks: this works for a class the heads never saw.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["CalibrationError", "CalibrationFileError", "Calibration", "order_statistic", "min_images", "threshold_at_fpr",
           "thresholds", "calibrate", "scorer_identity", "calibration_path", "find_calibration",
           "save_calibration", "load_calibration", "operating_point", "binomial_interval",
           "observed_fpr", "calibration_spread", "RULE", "calibrate_pooled", "shipped_calibration",
           "SHIPPED_CALIBRATION", "REGENERATE", "GENERIC"]

log = logging.getLogger(__name__)

FORMAT = 1
RULE = "t = s_(k), k = ceil((1 - fpr) (n + 1)); anomalous iff score > t (split conformal)"


from .errors import CalibrationError, CalibrationFileError, StaleCalibrationError

# The kit's generic calibration of the training-free scorer in quick mode (bagclip-mini at
# Config.quick()'s settings), made on the normal images of the synthetic auxiliary classes by
# REGENERATE; predict uses it when no calibration of the user's class is given.
SHIPPED_CALIBRATION = Path(__file__).parent / "weights" / "quick-calibration.json"
REGENERATE = "python tools/calibrate_quick.py"
GENERIC = "generic: synthetic auxiliary parts"


def _ceil(x: float) -> int:
    # (1 - 0.05) * 20 is 19.000000000000004 in floating point: round off the noise first
    return math.ceil(round(x, 9))


def min_images(fpr: float) -> int:
    """Fewest normal images for which the order statistic at `fpr` exists (k <= n)."""
    _check_rate(fpr, "fpr")
    return max(1, _ceil(1 / fpr - 1))


def order_statistic(n: int, fpr: float) -> int:
    """k (1-based) of the threshold s_(k) for n normal values at rate fpr, or CalibrationError."""
    _check_rate(fpr, "fpr")
    k = _ceil((1 - fpr) * (n + 1))
    if k > n or n < 1:
        need = min_images(fpr)
        raise CalibrationError(
            f"{n} normal image{'s' if n != 1 else ''} cannot give FPR {fpr:.3g}: a threshold at that "
            f"rate needs at least {need} (the ceil((1-fpr)(n+1))-th smallest score must exist); add "
            f"images, or choose fpr >= {math.ceil(1000 / (n + 1)) / 1000:g}")  # rounded up: it works
    return max(k, 1)


def _check_rate(r: float, name: str) -> None:
    if not (isinstance(r, (int, float)) and 0 < r < 1):
        raise CalibrationError(f"{name}={r!r}: give a rate in (0, 1), e.g. 0.05 for 5 %")


def threshold_at_fpr(values, fpr: float) -> float:
    """s_(k) of values (any shape, flattened) at rate fpr (module docstring's rule)."""
    v = np.asarray(values, np.float64).ravel()
    if not np.isfinite(v).all():
        raise CalibrationError("scores contain NaN or infinity: the scorer is broken")
    k = order_statistic(v.size, fpr)
    return float(np.partition(v, k - 1)[k - 1])


def thresholds(scores, maps, fpr: float, pixel_fpr: float) -> tuple[float, float]:
    """(image threshold, pixel threshold) of normal image scores (n,) and maps (n, H, W)."""
    t_img = threshold_at_fpr(scores, fpr)
    t_pix = threshold_at_fpr(maps, pixel_fpr)
    if t_pix <= 0:
        raise CalibrationError(f"the normal maps' threshold is {t_pix}: maps cannot be normalised by it")
    return t_img, t_pix


@dataclass
class Calibration:
    class_name: str
    fpr: float
    pixel_fpr: float
    image_threshold: float
    pixel_threshold: float  # the map normaliser: 1.0 = this value
    scores: list[float]  # the n normal image scores, sorted
    images: list[dict]  # [{"name", "sha256"}] of the calibration images
    scorer: dict  # scorer_identity(): which heads / settings produced the scores
    rule: str = RULE
    format: int = FORMAT
    order: int = 0  # k of s_(k)
    weights_sha256: str | None = None  # SHA-256 of the backbone weights file the scores came from
    note: str = ""  # how it was made, for a calibration that is not one class's (shipped_calibration)
    check: dict | None = None  # observed_fpr() of the threshold on other normal images, and which

    @property
    def n_images(self) -> int:
        return len(self.scores)

    def is_anomalous(self, score: float) -> bool:
        return float(score) > self.image_threshold

    def tail(self, score: float) -> float:
        """Conformal p-value (1 + #{normal scores >= score}) / (n + 1): small = unusual."""
        s = np.asarray(self.scores)
        return float((1 + np.count_nonzero(s >= float(score))) / (s.size + 1))

    def normalise(self, anomaly_map) -> np.ndarray:
        """map (H, W) / pixel_threshold: 1.0 = as high as the top pixel_fpr of normal pixels."""
        return np.asarray(anomaly_map, np.float32) / np.float32(self.pixel_threshold)

    def meaning(self) -> str:
        """What 1.0 on a normalised map means, for a colour bar."""
        return (f"1.0 = top {self.pixel_fpr * 100:g} % of normal pixels ({self.class_name}, "
                f"{self.n_images} normal images)")


def operating_point(scores, labels, threshold: float) -> dict:
    """Precision, recall and FPR of "anomalous iff score > threshold" on scores (n,), labels
    (n,) 0/1; NaN where undefined (no image called anomalous, no anomalous or no normal image)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel() != 0
    pred = s > threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    div = lambda a, b: a / b if b else math.nan  # noqa: E731
    return {"threshold": float(threshold), "precision": div(tp, tp + fp), "recall": div(tp, n_pos),
            "fpr": div(fp, n_neg), "n_anomalous": n_pos, "n_normal": n_neg}


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a rate from k events in n trials: the rates p for
    which k is not in either tail of Binomial(n, p) beyond (1 - level) / 2. Conservative (covers
    at least `level`); (0, 1 - (alpha/2)^(1/n)) for k = 0, ((alpha/2)^(1/n), 1) for k = n."""
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise CalibrationError(f"binomial_interval: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < level < 1:
        raise CalibrationError(f"level={level!r}: give a coverage in (0, 1), e.g. 0.95")
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def observed_fpr(normal_scores, threshold: float, level: float = 0.95) -> dict:
    """The false-positive rate of "anomalous iff score > threshold" measured on normal images'
    scores (n,): {"false_positives", "n_normal", "fpr", "low", "high", "level"}, the interval
    by `binomial_interval` (how far the rate a line would see may lie from this count)."""
    s = np.asarray(normal_scores, np.float64).ravel()
    k = int(np.count_nonzero(s > threshold))
    low, high = binomial_interval(k, s.size, level)
    return {"false_positives": k, "n_normal": int(s.size), "fpr": k / s.size, "low": low, "high": high,
            "level": float(level)}


def compare_rates(k_a: int, n_a: int, k_b: int, n_b: int, level: float = 0.95,
                  alpha: float = 0.05) -> dict:
    """Two rates, k_a / n_a vs k_b / n_b (e.g. misses among faint vs other defects), each with
    its `binomial_interval`, and Fisher's exact two-sided test of the 2 x 2 table: what a lesson
    needs to say "the rates differ" (p < alpha) or "no evidence either way" from counts alone.
    Returns {"rate_a", "ci_a", "rate_b", "ci_b", "p", "differ"}."""
    from scipy.stats import fisher_exact

    ci_a, ci_b = binomial_interval(k_a, n_a, level), binomial_interval(k_b, n_b, level)
    p = float(fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)
    return {"rate_a": k_a / n_a, "ci_a": ci_a, "rate_b": k_b / n_b, "ci_b": ci_b, "p": p,
            "differ": p < alpha}


def calibration_spread(n: int, fpr: float, m: int | None = None, observed: int | None = None,
                       level: float = 0.95) -> dict:
    """How far one calibration of n normal images at `fpr` may land from its promise, for
    normal images exchangeable with the calibration ones (module docstring):
    - "k", "expected": the order statistic and (n + 1 - k) / (n + 1), the rate in expectation;
    - "rate_low", "rate_high": the central `level` range of one calibration's own rate, which
      is Beta(n + 1 - k, k) distributed over calibration sets;
    - with m fresh normal images, "count_low", "count_high": the central range of how many of
      them are flagged, BetaBinomial(m, n + 1 - k, k) (both spreads together);
    - with `observed` (a count among the m), "p_at_least": P(count >= observed) under it.
    """
    from scipy.stats import beta, betabinom

    k = order_statistic(n, fpr)
    a, b = n + 1 - k, k
    lo, hi = beta.interval(level, a, b)
    out = {"n": int(n), "fpr": float(fpr), "k": k, "expected": a / (n + 1), "rate_low": float(lo),
           "rate_high": float(hi), "level": float(level)}
    if m is not None:
        d = betabinom(int(m), a, b)
        c_lo, c_hi = d.interval(level)
        out.update(m=int(m), count_low=int(c_lo), count_high=int(c_hi))
        if observed is not None:
            out.update(observed=int(observed), p_at_least=float(d.sf(int(observed) - 1)))
    return out


def scorer_identity(cfg, checkpoint: str | os.PathLike | None = None) -> dict:
    """What makes the scores: the heads file's SHA-256 (or the training-free scorer), the
    backbone identity and the settings that change scores. Equal identities give equal scores."""
    from .cache import _file_digest  # the cache's own file hash
    from .checkpoint import HEADS

    ident = {"backbone": cfg.backbone_identity(), "image_size": cfg.image_size,
             "smoothing_sigma": cfg.smoothing_sigma, "image_score": cfg.image_score,
             "class_names": dict(sorted(cfg.class_names.items()))}
    if checkpoint is None:
        ident.update(kind="zeroshot", logit_scale=cfg.logit_scale,
                     detail_attention=cfg.detail_attention)
    else:
        p = Path(checkpoint)
        ident.update(kind="heads", heads_sha256=_file_digest(p / HEADS if p.is_dir() else p))
    return json.loads(json.dumps(ident))  # JSON-normal form (tuples -> lists) for comparison


def calibrate(images, class_name: str, fpr: float = 0.05, pixel_fpr: float = 0.01,
              checkpoint: str | os.PathLike | None = None, cfg=None, backbone=None,
              device=None, batch_size: int = 16) -> Calibration:
    """Calibrate a scorer on normal images of one class (a folder, a list of paths).

    checkpoint: trained heads (a run folder); None: the training-free scorer `ZeroShot` on
    cfg's backbone (default Config.quick()). Maps are taken at the model's input size.
    Refuses (CalibrationError) before any scoring when there are too few images for fpr.
    """
    return calibrate_pooled({class_name: images}, class_name, fpr, pixel_fpr, checkpoint, cfg, backbone,
                            device, batch_size, prefix_names=False)


def calibrate_pooled(groups: dict, name: str, fpr: float = 0.05, pixel_fpr: float = 0.01,
                     checkpoint: str | os.PathLike | None = None, cfg=None, backbone=None, device=None,
                     batch_size: int = 16, note: str = "", prefix_names: bool = True) -> Calibration:
    """One calibration of the normal images of several classes, pooled: groups is {class name:
    images}; each class's images are scored with its own class name, and the rule is applied to
    all scores together. `name` becomes the calibration's class_name (e.g. "generic"); image
    names are "<class>/<file>" (prefix_names). calibrate() is the one-class case."""
    from .cache import _file_digest
    from .inference import _collect, scorer

    _check_rate(pixel_fpr, "pixel_fpr")
    paths = {c: _collect(imgs) for c, imgs in groups.items()}
    n = sum(len(v) for v in paths.values())
    order_statistic(n, fpr)  # refuse early: before loading any model
    model, cfg, backbone = _scorer_parts(checkpoint, cfg, backbone, device)
    fn = scorer(model, backbone, cfg)
    scores, maps = map(np.concatenate, zip(*(_score(fn, ps, c, cfg, backbone, batch_size)
                                              for c, ps in paths.items())))
    t_img, t_pix = thresholds(scores, maps, fpr, pixel_fpr)
    hashes = [{"name": f"{c}/{Path(p).name}" if prefix_names else Path(p).name, "sha256": _file_digest(p)}
              for c, ps in paths.items() for p in ps]
    if len({h["sha256"] for h in hashes}) < len(hashes):
        log.warning("calibration: some images are byte-identical copies; each copy counts once more")
    return Calibration(str(name), float(fpr), float(pixel_fpr), t_img, t_pix,
                       sorted(float(x) for x in scores), hashes, scorer_identity(cfg, checkpoint),
                       order=order_statistic(n, fpr), weights_sha256=getattr(backbone, "weights_sha256", None),
                       note=note)


def _score(fn, paths, class_name: str, cfg, backbone, batch_size: int):
    """(scores (n,) float64, maps (n, S, S) float32) of images `paths` scored as `class_name`."""
    import torch

    from .data import load_image

    scores, maps = [], []
    for i in range(0, len(paths), batch_size):
        x = torch.stack([load_image(p, cfg.image_size) for p in paths[i:i + batch_size]])
        m, s = fn(x.to(backbone.device), class_name)
        maps.append(m.float().numpy())
        scores.append(s.double().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def _scorer_parts(checkpoint, cfg, backbone, device):
    """(model, cfg, backbone): trained heads from checkpoint, or ZeroShot on cfg's backbone."""
    from .backbone import load_backbone
    from .config import Config
    from .checkpoint import load_heads
    from .zeroshot import ZeroShot

    if checkpoint is not None:
        model, trained, backbone = load_heads(checkpoint, backbone=backbone, device=device)
        return model, (trained.check_eval_changes(cfg) if cfg is not None else trained), backbone
    cfg = cfg or (backbone.cfg if backbone is not None else Config.quick())
    backbone = backbone or load_backbone(cfg, device=device)
    return ZeroShot(backbone).to(backbone.device), cfg, backbone


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def calibration_path(folder: str | os.PathLike, class_name: str) -> Path:
    """`<folder>/calibration.<class>.json` (a run folder: beside heads.safetensors)."""
    p = Path(folder)
    if p.is_file():
        p = p.parent
    return p / f"calibration.{_SAFE.sub('_', class_name).strip('_') or 'class'}.json"


def find_calibration(folder: str | os.PathLike, class_name: str) -> Path | None:
    p = calibration_path(folder, class_name)
    return p if p.is_file() else None


def save_calibration(cal: Calibration, path: str | os.PathLike) -> Path:
    from .files import atomic_write_text

    atomic_write_text(Path(path), json.dumps(asdict(cal), indent=1))
    return Path(path)


def load_calibration(path: str | os.PathLike, scorer: dict | None = None,
                     class_name: str | None = None) -> Calibration:
    """Read and check a calibration file; with `scorer` (scorer_identity) and `class_name`, also
    that it belongs to them. Any problem is one CalibrationError naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        cal = Calibration(**data)
    except FileNotFoundError:
        raise CalibrationFileError(f"calibration {p} not found", path=p) from None
    except (OSError, ValueError, TypeError) as err:
        raise CalibrationFileError(f"calibration {p} is unreadable ({type(err).__name__})", path=p) from None
    if cal.format != FORMAT or cal.rule != RULE:
        raise CalibrationFileError(f"calibration {p} has another format or rule", path=p)
    try:
        # internally consistent: the stored threshold is the rule applied to the stored scores
        ok = (len(cal.images) == cal.n_images and cal.order == order_statistic(cal.n_images, cal.fpr)
              and cal.image_threshold == threshold_at_fpr(cal.scores, cal.fpr)
              and cal.scores == sorted(cal.scores)
              and math.isfinite(cal.pixel_threshold) and cal.pixel_threshold > 0)
    except (CalibrationError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CalibrationFileError(f"calibration {p} is inconsistent (edited or truncated)", path=p)
    if class_name is not None and cal.class_name != class_name:
        raise CalibrationFileError(f"calibration {p} is for class {cal.class_name!r}, not {class_name!r}",
                                   path=p)
    if scorer is not None and cal.scorer != scorer:
        diff = sorted(k for k in set(scorer) | set(cal.scorer) if scorer.get(k) != cal.scorer.get(k))
        raise CalibrationFileError(f"calibration {p} was made with another scorer or settings "
                                   f"({', '.join(diff)} differ)", path=p)
    return cal


def shipped_calibration(cfg, weights_sha256: str | None, path: str | os.PathLike | None = None) -> Calibration:
    """The shipped generic calibration (SHIPPED_CALIBRATION) for the training-free scorer on
    cfg, whose backbone weights file hashes to `weights_sha256` (Backbone.weights_sha256).

    StaleCalibrationError when it records other weights (the shipped weights were replaced:
    run REGENERATE); CalibrationFileError when it is missing or damaged, or cfg's settings are
    not the ones it was made with (another image size, backbone, prompts...)."""
    p = Path(path or SHIPPED_CALIBRATION)
    cal = load_calibration(p)
    if cal.weights_sha256 is None or cal.weights_sha256 != weights_sha256:
        raise StaleCalibrationError(
            f"the shipped generic calibration {p} was made on backbone weights sha256 "
            f"{str(cal.weights_sha256)[:12]}..., not on the ones loaded ({str(weights_sha256)[:12]}...)",
            path=p, weights_sha256=cal.weights_sha256, loaded_sha256=weights_sha256)
    ident = scorer_identity(cfg, None)
    if cal.scorer != ident:
        diff = sorted(k for k in set(ident) | set(cal.scorer) if ident.get(k) != cal.scorer.get(k))
        raise CalibrationFileError(f"the shipped generic calibration {p} is for quick mode's default "
                                   f"settings ({', '.join(diff)} differ)", path=p)
    return cal

