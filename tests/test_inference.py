"""predict(): one image, a folder, a tensor batch; maps at each image's own resolution."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bagclip.data import load_image
from bagclip.inference import heads_forward, predict
from bagclip.model import build_heads
from bagclip.prompts import class_texts
from bagclip.checkpoint import save_heads


@pytest.fixture(scope="module")
def heads(tiny_cfg, tiny_backbone):
    return build_heads(tiny_cfg.replace(seed=5), tiny_backbone).eval()


def test_maps_at_input_resolution_and_equal_to_heads_forward(tiny_cfg, tiny_backbone, heads, image_files):
    preds = predict(image_files[:2], cfg=tiny_cfg, backbone=tiny_backbone, model=heads, class_name="screw")
    s = tiny_cfg.image_size
    text = class_texts(tiny_backbone, ["screw"], tiny_cfg)["screw"]
    for p, f in zip(preds, image_files[:2]):
        w, h = Image.open(f).size
        assert p.anomaly_map.shape == (h, w) and p.path == str(f)
        tok = tiny_backbone.encode(load_image(f, s)[None])
        m, sc, pi = heads_forward(heads, tok, text[None], tiny_cfg)  # independent path, one image
        ref = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        np.testing.assert_allclose(p.anomaly_map, ref.numpy(), atol=1e-5)
        assert p.image_score == pytest.approx(float(sc[0]), abs=1e-5)
        assert p.p_img == pytest.approx(float(pi[0]), abs=1e-5)
        assert 0.0 <= p.anomaly_map.min() and p.anomaly_map.max() <= 1.0


def test_folder_tensor_and_checkpoint_give_the_same(tiny_cfg, tiny_backbone, heads, image_files, tmp_path):
    folder = image_files[0].parent
    by_folder = predict(folder, cfg=tiny_cfg, backbone=tiny_backbone, model=heads, batch_size=3)
    assert [p.path for p in by_folder] == [str(f) for f in sorted(image_files)]
    save_heads(heads, tiny_cfg.replace(seed=5), tmp_path / "heads.safetensors")
    by_ckpt = predict(image_files, checkpoint=tmp_path, backbone=tiny_backbone)
    for a, b in zip(by_folder, by_ckpt):
        np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)  # batch 3 vs 8
    batch = torch.stack([load_image(f, tiny_cfg.image_size) for f in image_files])
    by_tensor = predict(batch, cfg=tiny_cfg, backbone=tiny_backbone, model=heads)
    assert by_tensor[0].path is None
    assert by_tensor[0].anomaly_map.shape == (tiny_cfg.image_size,) * 2
    assert by_tensor[1].image_score == pytest.approx(by_folder[1].image_score, abs=1e-5)


SCORE_BOUND = 1e-4  # |unpadded - cached| image score; docs/decisions.md (measured <= 3e-6 on CPU)
MAP_BOUND = 1e-3  # the same for a smoothed map's pixels (measured <= 1e-4)


@pytest.fixture(scope="module")
def part_tree(tmp_path_factory):
    """(calibration images: train/good, test images: good and every defect kind) of two classes."""
    from bagclip.data import load_dataset
    from bagclip.data.synth import generate

    root = generate(tmp_path_factory.mktemp("parts") / "t", size=112, n_train=6, n_test_good=3,
                    n_test_bad=4, categories=["screw", "wood"])
    return ([s.image_path for s in load_dataset("synth", root, "train")],
            load_dataset("synth", root, "test"))


@pytest.mark.parametrize("kind", ["trained-heads checkpoint", "training-free scorer"])
def test_unpadded_paths_stay_within_the_bound_of_the_cached_path(tiny_cfg, tiny_backbone, heads,
                                                                 part_tree, tmp_path, kind):
    """predict (batches of 8, one at a time) and calibrate's scorer run without padding; the
    cache pads. Scores and maps agree within the documented bounds, and no decision against a
    calibration's threshold (or 0.5) flips: every image lies farther than the bound from it."""
    import dataclasses

    from bagclip.cache import FeatureCache
    from bagclip.calibrate import calibrate
    from bagclip.inference import predict_all
    from bagclip.zeroshot import ZeroShot

    cal_images, samples = part_tree
    samples = [dataclasses.replace(s, class_name="screw") for s in samples]  # one text: one scorer
    ck = None
    if kind == "trained-heads checkpoint":
        ck = save_heads(heads, tiny_cfg.replace(seed=5), tmp_path / "heads.safetensors").parent
        model = heads
    else:
        model = ZeroShot(tiny_backbone)
    kw = dict(class_name="screw", backbone=tiny_backbone,
              **(dict(checkpoint=ck) if ck else dict(cfg=tiny_cfg, model=model)))
    maps, cached = predict_all(model, tiny_cfg, tiny_backbone, FeatureCache(tiny_backbone, tmp_path / "c"),
                               samples)
    paths = [s.image_path for s in samples]
    unpadded = {"batches of 8 and a last of 6": predict(paths, **kw),
                "one image at a time": [p for f in paths for p in predict(f, **kw)]}
    cal = calibrate(cal_images, "screw", fpr=0.1, checkpoint=ck, cfg=None if ck else tiny_cfg,
                    backbone=tiny_backbone, batch_size=5)  # the scorer in chunks of 5: unpadded
    for name, preds in unpadded.items():
        got = np.array([p.image_score for p in preds])
        assert np.abs(got - cached).max() <= SCORE_BOUND, name
        assert max(np.abs(p.anomaly_map - m).max() for p, m in zip(preds, maps)) <= MAP_BOUND, name
        for t in (cal.image_threshold, 0.5):
            assert np.array_equal(got >= t, cached >= t), (name, t)
            assert np.abs(cached - t).min() > SCORE_BOUND, (name, t)  # so no flip was luck


def test_bad_inputs_are_named(tiny_cfg, tiny_backbone, heads, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        predict(tmp_path / "nope.png", cfg=tiny_cfg, backbone=tiny_backbone, model=heads)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        predict(tmp_path / "empty", cfg=tiny_cfg, backbone=tiny_backbone, model=heads)
    with pytest.raises(FileNotFoundError, match="train first"):
        predict(tmp_path / "empty", checkpoint=tmp_path / "run", backbone=tiny_backbone)


def test_one_rule_for_sets_mixing_masked_and_unmasked_anomalies(tiny_cfg, tiny_backbone, heads, tmp_path):
    """evaluate (any scorer, fresh tokens) and evaluate_cached (predict_samples over the cache)
    follow evaluate's one rule: an anomalous image without a mask counts in the image metrics
    only; the pixel metrics are those of the images whose ground truth is known."""
    import dataclasses
    import math

    from bagclip.cache import FeatureCache
    from bagclip.data import load_dataset
    from bagclip.data.synth import AUX_CLASSES, generate
    from bagclip.evaluate import evaluate, evaluate_cached
    from bagclip.inference import scorer

    root = generate(tmp_path / "s", size=112, n_train=1, n_test_good=2, n_test_bad=2,
                    categories=list(AUX_CLASSES[:2]))
    samples = load_dataset("synth", root, "test")
    bad = [i for i, s in enumerate(samples) if s.label]
    mixed = [dataclasses.replace(s, mask_path=None) if i == bad[0] else s for i, s in enumerate(samples)]
    known = [s for i, s in enumerate(samples) if i != bad[0]]
    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    cached = evaluate_cached(heads, tiny_cfg, tiny_backbone, cache, mixed)
    fresh = evaluate(scorer(heads, tiny_backbone, tiny_cfg), mixed, tiny_cfg.image_size, progress=False)
    without = evaluate_cached(heads, tiny_cfg, tiny_backbone, cache, known)
    for k in ("pixel_auroc", "pixel_ap", "pixel_aupro"):
        assert not math.isnan(cached[k]), k
        assert cached[k] == pytest.approx(fresh[k], abs=1e-6) and cached[k] == pytest.approx(without[k], abs=1e-6), k
    assert cached["image_auroc"] == pytest.approx(fresh["image_auroc"], abs=1e-6)
