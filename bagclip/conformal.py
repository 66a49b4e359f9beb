"""The conformal rule, pure: thresholds at a chosen false-positive rate from normal scores, the
record of one calibration and its checks, and the rates a lesson compares. Numbers in, numbers
out: no torch, no model, no file (bagclip.calibrate scores images and reads and writes files).

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
"""
from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, fields

import numpy as np

from .errors import CalibrationError

__all__ = ["RULE", "FORMAT", "MIN_RATE", "Calibration", "CalibrationError", "min_images", "order_statistic",
           "check_rate", "threshold_at_fpr", "thresholds", "calibration_from_record", "operating_point",
           "binomial_interval", "observed_fpr", "compare_rates", "calibration_spread", "plural", "ordinal"]

FORMAT = 1
RULE = "t = s_(k), k = ceil((1 - fpr) (n + 1)); anomalous iff score > t (split conformal)"
# A rate below this needs more than a billion normal values (1/fpr - 1): no calibration set is
# that large, and below ~1e-308 1/fpr is not even a finite float (the probe's 1e-320).
MIN_RATE = 1e-9
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plural(n: int, word: str) -> str:
    """"1 image", "2 images" (regular English plurals only)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 102nd..."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _ceil(x: float) -> int:
    # (1 - 0.05) * 20 is 19.000000000000004 in floating point: round off the noise first
    return math.ceil(round(x, 9))


def _is_number(x) -> bool:
    """A real number of a JSON record: int or float, never a bool (True is an int in Python)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x) -> bool:
    """A finite real number (an int too large for a float is not one)."""
    try:
        return _is_number(x) and math.isfinite(x)
    except OverflowError:
        return False


def check_rate(r, name: str = "fpr") -> None:
    """CalibrationError unless r is a rate in [MIN_RATE, 1): `name` is the setting's name."""
    if not (_is_number(r) and 0 < r < 1):
        raise CalibrationError(f"{name}={r!r}: give a rate in (0, 1), e.g. 0.05 for 5 %")
    if r < MIN_RATE:
        raise CalibrationError(f"{name}={r!r}: a rate below {MIN_RATE:g} needs more than a billion normal "
                               f"values; give a rate of at least {MIN_RATE:g}, e.g. 0.05 for 5 %")


def min_images(fpr: float) -> int:
    """Fewest normal values for which the order statistic at `fpr` exists (k <= n)."""
    check_rate(fpr, "fpr")
    return max(1, _ceil(1 / fpr - 1))


def _least_rate(n: int) -> float:
    """The smallest rate that n values can give, 1 / (n + 1), rounded UP to 2 significant
    digits (so that the advice works as printed)."""
    r = 1 / (n + 1)
    e = math.floor(math.log10(r)) - 1
    return math.ceil(round(r / 10 ** e, 6)) * 10 ** e


def order_statistic(n: int, fpr: float, unit: str = "image", per_image: int = 1) -> int:
    """k (1-based) of the threshold s_(k) for n normal values at rate fpr, or CalibrationError.
    unit: "image" (image scores, the `fpr` setting) or "pixel" (pooled map pixels, the
    `pixel_fpr` setting; per_image: pixels of one map, to say how many images that takes)."""
    setting = "fpr" if unit == "image" else "pixel_fpr"
    check_rate(fpr, setting)
    k = _ceil((1 - fpr) * (n + 1))
    if k > n or n < 1:
        need = min_images(fpr)
        what = f"FPR {fpr:.3g}" if unit == "image" else f"a pixel FPR of {fpr:.3g}"
        images = "" if unit == "image" else f", the maps of {plural(math.ceil(need / per_image), 'image')}"
        raise CalibrationError(
            f"{plural(n, 'normal ' + unit)} cannot give {what}: a threshold at that rate needs at least "
            f"{plural(need, unit)}{images} (the ceil((1-fpr)(n+1))-th smallest value must exist); add "
            f"images, or choose {setting} >= {_least_rate(n):g}")
    return max(k, 1)


def threshold_at_fpr(values, fpr: float, unit: str = "image") -> float:
    """s_(k) of values (any shape, flattened) at rate fpr (module docstring's rule); unit as in
    `order_statistic` (values (n, H, W) for pixels)."""
    v = np.asarray(values, np.float64)
    per_image = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
    v = v.ravel()
    if not np.isfinite(v).all():
        raise CalibrationError("scores contain NaN or infinity: the scorer is broken")
    k = order_statistic(v.size, fpr, unit, per_image)
    return float(np.partition(v, k - 1)[k - 1])


def thresholds(scores, maps, fpr: float, pixel_fpr: float) -> tuple[float, float]:
    """(image threshold, pixel threshold) of normal image scores (n,) and maps (n, H, W)."""
    t_img = threshold_at_fpr(scores, fpr)
    t_pix = threshold_at_fpr(maps, pixel_fpr, "pixel")
    if t_pix <= 0:
        raise CalibrationError(f"the normal maps' threshold is {t_pix}: maps cannot be normalised by it")
    return t_img, t_pix


@dataclass
class Calibration:
    class_name: str  # the exact class name (file names are slugs of it: this is what is checked)
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
    note: str = ""  # how it was made, when that is not one class's normal images
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
                f"{plural(self.n_images, 'normal image')})")


def _field_problem(data: dict) -> str | None:
    """What is malformed in a calibration record (a dict read from JSON), or None: every field
    of its type, every score a finite number (never a bool or a string), one image per score."""
    names = {f.name for f in fields(Calibration)}
    required = {f.name for f in fields(Calibration) if f.default is MISSING}
    if missing := sorted(required - set(data)):
        return f"{', '.join(missing)} missing"
    if unknown := sorted(set(data) - names):
        return f"unknown field {', '.join(unknown)}"
    if not (isinstance(data["class_name"], str) and data["class_name"]):
        return "class_name is not a name"
    for key in ("fpr", "pixel_fpr", "image_threshold", "pixel_threshold"):
        if not _finite(data[key]):
            return f"{key} is {data[key]!r}, not a finite number"
    s = data["scores"]
    if not (isinstance(s, list) and s):
        return "scores is not a non-empty list"
    bad = [i for i, x in enumerate(s) if not _finite(x)]
    if bad:
        return f"scores[{bad[0]}] is {s[bad[0]]!r}, not a finite number"
    im = data["images"]
    if not (isinstance(im, list) and all(isinstance(i, dict) and isinstance(i.get("name"), str)
                                         and _SHA256.fullmatch(str(i.get("sha256"))) for i in im)):
        return "images is not a list of {name, sha256}"
    if len(im) != len(s):
        return f"{plural(len(im), 'image')} but {plural(len(s), 'score')}"
    w = data.get("weights_sha256")
    if w is not None and not (isinstance(w, str) and _SHA256.fullmatch(w)):
        return f"weights_sha256 is {w!r}, not a SHA-256"
    types = {"scorer": dict, "rule": str, "note": str}
    if bad := next((k for k, t in types.items() if k in data and not isinstance(data[k], t)), None):
        return f"{bad} is not a {types[bad].__name__}"
    if not all(isinstance(data.get(k, 0), int) and not isinstance(data.get(k, 0), bool) for k in ("format", "order")):
        return "format or order is not a whole number"
    if data.get("check") is not None and not isinstance(data["check"], dict):
        return "check is not a dict"
    return None


def calibration_from_record(data) -> Calibration:
    """A Calibration from its JSON record, or CalibrationError saying what is wrong: a field
    malformed (`_field_problem`), another format or rule, or a record that is not internally
    consistent (the stored threshold is not the rule applied to the stored scores: edited or
    truncated)."""
    if not isinstance(data, dict):
        raise CalibrationError(f"is not a calibration record (a JSON {type(data).__name__})")
    if problem := _field_problem(data):
        raise CalibrationError(f"is malformed ({problem})")
    cal = Calibration(**data)
    if cal.format != FORMAT or cal.rule != RULE:
        raise CalibrationError("has another format or rule")
    try:
        ok = (cal.order == order_statistic(cal.n_images, cal.fpr)
              and cal.image_threshold == threshold_at_fpr(cal.scores, cal.fpr)
              and cal.scores == sorted(cal.scores) and cal.pixel_threshold > 0)
    except CalibrationError:
        ok = False
    if not ok:
        raise CalibrationError("is inconsistent (edited or truncated)")
    return cal


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
