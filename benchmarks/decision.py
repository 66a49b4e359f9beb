"""What `bagclip predict --quick` decides by default, and what a calibration of the user's own
class gives, on normal images only (every flag is a false positive), through the CLI itself.

1. The default: `predict --quick` without a calibration, on --default-normals normal images of
   the synthetic target classes (the kit calibrated on none of them; it ships no calibration
   at all). Since issue 32 it does not decide: the count printed is "0 of N flagged, N
   undecided", as the command prints it, not a rate to compare with 5 %.
2. A user's calibration: per class, `calibrate` on --calibration-normals (20) normal images at
   --fpr (5 %), then `predict --calibration` on --fresh (100) other normal images of the class.
   Printed: the flagged share with its exact (Clopper-Pearson) 95 % interval, the rate the
   calibration states ((n + 1 - k) / (n + 1) <= fpr), and whether the count lies in the range
   one calibration of n images gives (beta-binomial, bagclip.conformal.calibration_spread):
   one calibration's own rate is luck, so "outside" means these normals differ from the
   calibration ones, not that the rule failed. Then all classes pooled.

Images: bagclip.data.synth.make_image (seeded, drawn here, no pool), at --size pixels.

    python benchmarks/decision.py                        # 5 classes, 100 + 20/100 each, 224 px
    python benchmarks/decision.py --classes screw --default-normals 5 --fresh 5 --size 112   # plumbing
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bagclip

from PIL import Image  # noqa: E402

from bagclip.calibrate import binomial_interval, calibration_spread, plural  # noqa: E402
from bagclip.cli import main as bagclip  # noqa: E402
from bagclip.data import synth  # noqa: E402
from bagclip.experiments import machine  # noqa: E402


def normals(folder: Path, category: str, n: int, size: int, split: str, start: int = 0) -> Path:
    """n normal images of `category` drawn into folder (seed 0; `split` keeps sets apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(synth.make_image(category, "good", size, seed=0, index=i, split=split).image) \
            .save(folder / f"{i:04d}.png")
    return folder


def run(argv: list[str]) -> tuple[str, str]:
    """(stdout, stderr) of one bagclip command, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        bagclip(argv)
    return out.getvalue(), err.getvalue()


def verdicts(stdout: str) -> dict[str, int]:
    """How many prediction lines end ANOMALOUS, normal and undecided, and how many there are."""
    ends = {"undecided": "undecided (no calibration)", "ANOMALOUS": "ANOMALOUS", "normal": "normal"}
    lines = [line.rstrip() for line in stdout.splitlines() if "\tscore=" in line]
    out = {v: sum(line.endswith(e) for line in lines) for v, e in ends.items()}
    return {**out, "lines": len(lines)}


def default_decision(work: Path, a, flags: list[str]) -> None:
    per = {c: a.default_normals // len(a.classes) + (i < a.default_normals % len(a.classes))
           for i, c in enumerate(a.classes)}
    counts = {"ANOMALOUS": 0, "normal": 0, "undecided": 0, "lines": 0}
    said = ""
    for c, n in per.items():
        if n == 0:
            continue
        out, err = run(["predict", str(normals(work / "default" / c, c, n, a.size, "decision-default")),
                        *flags, "--class-name", c])
        for k, v in verdicts(out).items():
            counts[k] += v
        said = said or next((line for line in err.splitlines() if line.startswith("decision:")), "")
    m = counts["lines"]
    print(f"1. default (predict --quick, no calibration of the class), {plural(m, 'normal image')} of "
          f"{', '.join(c for c in per if per[c])} (classes the kit did not calibrate on):")
    if counts["undecided"] == m:
        print(f"   no decision: flagged 0 of {m}, {m} undecided (no false positive because no answer).")
        print(f"   what it says instead: {said}")
    else:
        k = counts["ANOMALOUS"]
        lo, hi = binomial_interval(k, m)
        print(f"   flagged {k} of {m} ({k / m:.1%}, 95 % interval {lo:.1%}-{hi:.1%}); "
              f"{counts['undecided']} undecided")


def user_calibration(work: Path, a, flags: list[str]) -> None:
    print(f"2. a user's calibration: {a.calibration_normals} normal images of the class at FPR {a.fpr:g}, "
          f"then {a.fresh} other normal images of it")
    total_k = total_m = 0
    for c in a.classes:
        cal_dir = work / "cal" / c
        run(["calibrate", str(normals(work / "calib" / c, c, a.calibration_normals, a.size, "decision-cal")),
             *flags, "--class-name", c, "--fpr", str(a.fpr), "--out", str(cal_dir)])
        out, _ = run(["predict", str(normals(work / "fresh" / c, c, a.fresh, a.size, "decision-fresh")),
                      *flags, "--class-name", c, "--calibration", str(cal_dir)])
        v = verdicts(out)
        k, m = v["ANOMALOUS"], v["lines"]
        total_k, total_m = total_k + k, total_m + m
        sp = calibration_spread(a.calibration_normals, a.fpr, m=m, observed=k)
        lo, hi = binomial_interval(k, m)
        inside = sp["count_low"] <= k <= sp["count_high"]
        print(f"   {c}: flagged {k} of {m} ({k / m:.1%}, 95 % interval {lo:.1%}-{hi:.1%}); stated "
              f"{sp['expected']:.1%} (<= {a.fpr:.0%}); one calibration of {a.calibration_normals} flags "
              f"{sp['count_low']}-{sp['count_high']} of {m} in 95 % of calibration sets: "
              f"{'inside' if inside else 'OUTSIDE'}")
    lo, hi = binomial_interval(total_k, total_m)
    expected = calibration_spread(a.calibration_normals, a.fpr)["expected"]
    # pooled over classes, each with its own calibration: the interval is the count's alone
    print(f"   pooled: flagged {total_k} of {total_m} ({total_k / total_m:.1%}, 95 % interval {lo:.1%}-"
          f"{hi:.1%}) against a stated {expected:.1%}: "
          f"{'inside' if lo <= expected <= hi else 'OUTSIDE'} the interval")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", nargs="+", default=list(synth.TARGET_CLASSES), choices=synth.TARGET_CLASSES)
    ap.add_argument("--default-normals", type=int, default=100, help="images for the default (100)")
    ap.add_argument("--calibration-normals", type=int, default=20, help="per class (20)")
    ap.add_argument("--fresh", type=int, default=100, help="other normal images per class (100)")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--size", type=int, default=224, help="image and model size (quick mode: 224)")
    ap.add_argument("--work", default=None, help="folder for the images (default: a temporary one)")
    a = ap.parse_args(argv)
    flags = ["--quick"] + (["--set", f"image_size={a.size}"] if a.size != 224 else [])
    print(f"machine: {machine()}")
    print(f"scorer: training-free ZeroShot on bagclip-mini ({' '.join(flags)})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        default_decision(work, a, flags)
        user_calibration(work, a, flags)


if __name__ == "__main__":
    main()
