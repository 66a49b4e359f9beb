"""The evaluator on a tiny synthetic dataset with a trivial scorer (maps = blurred mask), with
stand-in data loaders so that it does not depend on bagclip.data's file formats."""
import json
import math
import sys
import types
from collections import namedtuple

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bagclip.evaluate import evaluate
from bagclip.metrics import METRIC_KEYS, PIXEL_KEYS, compute_metrics
from bagclip.report import format_table1, format_table2, seed_table, write_results

Sample = namedtuple("Sample", "image_path mask_path class_name defect_type label")
H, W = 20, 28  # native files are not square: catches (W, H) / (H, W) mix-ups


def _resize(a: np.ndarray, size: int, mode: str) -> torch.Tensor:
    t = torch.as_tensor(a, dtype=torch.float32)[None, None]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=(size, size), mode=mode, **kw)[0, 0]


@pytest.fixture
def fake_data(monkeypatch):
    """bagclip.data stand-in: load_image puts the mask (the 'defect') in channel 0."""
    mod = types.ModuleType("bagclip.data")

    def load_image(path, size):
        a = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        return _resize(a, size, "bilinear")[None].repeat(3, 1, 1)

    def load_mask(path, size, like=None):
        if path is None:
            hw = (size, size) if size else np.asarray(Image.open(like)).shape[:2]
            return torch.zeros(hw, dtype=torch.bool)
        m = np.asarray(Image.open(path)) > 0
        return torch.from_numpy(m) if size is None else _resize(m, size, "nearest") > 0

    mod.load_image, mod.load_mask = load_image, load_mask
    monkeypatch.setitem(sys.modules, "bagclip.data", mod)
    return mod


def make_samples(root, n_per_class=(5, 3), masks=True, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for c, n in zip(("bolt", "plate"), n_per_class):
        for i in range(n):
            label = int(i % 2 == 1 or i == n - 1)
            gt = np.zeros((H, W), bool)
            if label:
                y, x = rng.integers(0, H - 6), rng.integers(0, W - 6)
                gt[y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = True
            img = np.clip(gt * 0.6 + rng.random((H, W)) * 0.5, 0, 1)
            ip, mp = root / f"{c}_{i}.png", root / f"{c}_{i}_mask.png"
            Image.fromarray((img * 255).astype(np.uint8)).save(ip)
            mask_path = None
            if label and masks:
                Image.fromarray(gt.astype(np.uint8) * 255).save(mp)
                mask_path = str(mp)
            out.append(Sample(str(ip), mask_path, c, "blob" if label else "good", label))
    return out


def blur_scorer(calls=None):
    def fn(images, class_name):
        if calls is not None:
            calls.append((class_name, images.shape[0]))
        maps = F.avg_pool2d(images[:, :1], 3, stride=1, padding=1)[:, 0]
        return maps, maps.flatten(1).amax(1)
    return fn


def test_evaluate_matches_compute_metrics_and_results_files(fake_data, tmp_path):
    samples = make_samples(tmp_path)
    calls = []
    res = evaluate(blur_scorer(calls), samples, image_size=32, batch_size=2,
                   dataset_name="toy", progress=False)
    write_results(res, tmp_path / "out")
    assert all(b <= 2 for _, b in calls) and [c for c, _ in calls] == ["bolt"] * 3 + ["plate"] * 2
    # the same numbers computed by hand from the same maps
    fn = blur_scorer()
    imgs = torch.stack([fake_data.load_image(s.image_path, 32) for s in samples])
    maps, scores = fn(imgs, "any")
    masks = torch.stack([fake_data.load_mask(s.mask_path, 32) for s in samples])
    ref = compute_metrics(scores, [s.label for s in samples], maps, masks,
                          class_names=[s.class_name for s in samples])
    for k in METRIC_KEYS:
        assert res[k] == pytest.approx(ref[k], abs=1e-12)
        assert 0.5 < res[k] <= 1.0  # the scorer sees the defects
    assert res["resolution"] == 32 and res["n_images"] == 8 and res["dataset"] == "toy"
    # files: strict JSON, CSV per class + mean, no temp files left behind
    out = tmp_path / "out"
    data = json.loads((out / "metrics.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert set(data["per_class"]) == {"bolt", "plate"}
    csv = pd.read_csv(out / "metrics.csv")
    assert list(csv["class"]) == ["bolt", "plate", "mean"]
    assert csv.loc[2, "pixel_aupro"] == pytest.approx(res["pixel_aupro"])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.json"]


def test_batch_size_does_not_change_results(fake_data, tmp_path):
    samples = make_samples(tmp_path, seed=1)
    a = evaluate(blur_scorer(), samples, 32, batch_size=1, progress=False)
    b = evaluate(blur_scorer(), samples, 32, batch_size=8, resolution=32, progress=False)
    for k in METRIC_KEYS:
        assert a[k] == b[k]


def test_resolutions_int_and_native(fake_data, tmp_path):
    samples = make_samples(tmp_path, seed=2)
    r16 = evaluate(blur_scorer(), samples, 32, resolution="16", progress=False)
    nat = evaluate(blur_scorer(), samples, 32, resolution="native", progress=False)
    assert r16["resolution"] == 16 and nat["resolution"] == "native"
    # native: maps bilinearly resized to (H, W) and the original masks
    fn = blur_scorer()
    maps, scores = fn(torch.stack([fake_data.load_image(s.image_path, 32) for s in samples]), "")
    maps = F.interpolate(maps[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    masks = np.stack([np.asarray(Image.open(s.mask_path)) > 0 if s.mask_path
                      else np.zeros((H, W), bool) for s in samples])
    ref = compute_metrics(scores, [s.label for s in samples], maps, masks,
                          class_names=[s.class_name for s in samples])
    for k in PIXEL_KEYS:
        assert nat[k] == pytest.approx(ref[k], abs=1e-12)
    with pytest.raises(ValueError):
        evaluate(blur_scorer(), samples, 32, resolution="full", progress=False)


def test_image_level_only_dataset(fake_data, tmp_path):
    samples = make_samples(tmp_path, masks=False, seed=3)
    res = evaluate(blur_scorer(), samples, 32, progress=False)
    assert all(math.isnan(res[k]) for k in PIXEL_KEYS)
    assert not math.isnan(res["image_auroc"])


def test_seed_table_and_paper_formats():
    runs = {"EPED": [{"image_auroc": a, "image_f1_max": 0.776, "image_ap": 0.728,
                      "pixel_auroc": 0.979, "pixel_f1_max": 0.289, "pixel_ap": 0.232,
                      "pixel_aupro": 0.859, "resolution": 518} for a in (0.762, 0.764, 0.766)],
            "MIAD": [{k: 0.5 for k in METRIC_KEYS} | {"pixel_aupro": math.nan, "resolution": 518}]}
    table = seed_table(runs)
    assert table.loc["EPED", ("image_auroc", "mean")] == pytest.approx(76.4)
    assert table.loc["EPED", ("image_auroc", "std")] == pytest.approx(0.2)
    assert table.loc["EPED", ("n_seeds", "")] == 3
    t1 = format_table1(table)
    assert list(t1.columns) == ["AUROC", "F1-Max", "AP"]
    assert t1.loc["EPED", "AUROC"] == "76.4 ± 0.2" and t1.loc["EPED", "F1-Max"] == "77.6 ± 0.0"
    assert t1.loc["MIAD", "AUROC"] == "50.0"  # one seed: no std
    t2 = format_table2(table)
    assert list(t2.columns) == ["AUROC", "F1-Max", "AP", "AUPRO"]
    assert t2.loc["EPED", "AUPRO"] == "85.9 ± 0.0" and t2.loc["MIAD", "AUPRO"] == "n/a"
    md = format_table2(table, fmt="markdown")
    assert md.startswith("| dataset | AUROC | F1-Max | AP | AUPRO |") and "resolution 518" in md
    assert "EPED,76.4 ± 0.2" in format_table1(table, fmt="csv")


def test_native_masks_follow_the_one_binarisation_rule(tmp_path):
    """A defect drawn in a colour whose luminance rounds to 0 (blue 1) is still a defect at
    native resolution: evaluate reads masks with load_mask's rule (any channel > 0)."""
    from bagclip.data import Sample as DataSample
    from bagclip.data import load_mask

    img, bad, gt = np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8)
    bad[4:9, 5:11] = 200
    gt[4:9, 5:11] = (0, 0, 1)  # convert("L") gives round(0.114) = 0 here
    for name, a in (("good.png", img), ("bad.png", bad), ("bad_mask.png", gt)):
        Image.fromarray(a).save(tmp_path / name)
    assert np.asarray(Image.open(tmp_path / "bad_mask.png").convert("L")).max() == 0
    assert int(load_mask(tmp_path / "bad_mask.png", None).sum()) == 5 * 6
    samples = [DataSample(tmp_path / "good.png", None, "c", "good", 0),
               DataSample(tmp_path / "bad.png", tmp_path / "bad_mask.png", "c", "x", 1)]

    def scorer(images, class_name):
        maps = images[:, 0]
        return maps, maps.flatten(1).amax(1)

    res = evaluate(scorer, samples, 28, resolution="native", progress=False)
    assert res["pixel_auroc"] > 0.9  # NaN if the defect had been binarised away
