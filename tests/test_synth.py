"""The synthetic benchmark: reproducible bytes, exact masks, disjoint groups, complete trees."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from PIL import Image

from bagclip.data import DataError, check_disjoint, load_dataset
from bagclip.data import synth
from bagclip.data.synth import AUX_CLASSES, CATEGORIES, MANIFEST, TARGET_CLASSES, ensure_synth, generate

SMALL = dict(size=64, n_train=1, n_test_good=1, n_test_bad=4)  # every defect kind once per class


def tree_hash(root) -> str:
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    """The default (quick) tree, generated once for this module."""
    t0 = time.perf_counter()
    root = generate(tmp_path_factory.mktemp("synth") / "quick")
    assert time.perf_counter() - t0 < 90  # 500 images, ~15 s of CPU; the generous bound avoids flakes
    return root


def test_quick_tree_sizes_aux_and_target_classes_apart(quick_root):
    """QUICK: 4 + 8 test images per auxiliary class, 40 + 40 per target class (issue 21);
    the first images of the larger target folders are those a one-size tree draws."""
    test = load_dataset("synth", quick_root, "test")
    for cat in CATEGORIES:
        y = [s.label for s in test if s.class_name == cat]
        want = (synth.QUICK["target_good"], synth.QUICK["target_bad"]) if cat in TARGET_CLASSES else \
            (synth.QUICK["n_test_good"], synth.QUICK["n_test_bad"])
        assert (y.count(0), y.count(1)) == want, cat
    assert synth.target_counts(2, 2) == (None, None) and synth.target_counts(4, 8) == (40, 40)
    small = generate(quick_root.parent / "one-size", categories=["screw"], n_train=1, n_test_good=1, n_test_bad=4)
    for f in (small / "screw" / "test").rglob("*.png"):
        assert f.read_bytes() == (quick_root / f.relative_to(small)).read_bytes(), f


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = generate(tmp_path / "a", seed=3, **SMALL)
    b = generate(tmp_path / "b", seed=3, **SMALL)
    c = generate(tmp_path / "c", seed=4, **SMALL)
    assert tree_hash(a) == tree_hash(b)
    assert tree_hash(a) != tree_hash(c)


def test_masks_are_exactly_the_changed_pixels(tmp_path):
    seen = []

    def hook(cat, split, defect, i, im):
        seen.append((cat, split, defect, i, im))

    root = generate(tmp_path / "t", seed=1, hook=hook, **SMALL)
    assert len(seen) == 10 * 6
    kinds = set()
    for cat, split, defect, i, im in seen:
        changed = (im.image != im.clean).any(-1)
        assert np.array_equal(changed, im.mask), (cat, defect, i)
        assert im.mask.any() == (defect != "good")
        on_disk = np.asarray(Image.open(root / cat / split / defect / f"{i:03d}.png"))
        assert np.array_equal(on_disk, im.image)
        if defect != "good":
            m = np.asarray(Image.open(root / cat / "ground_truth" / defect / f"{i:03d}_mask.png"))
            assert set(np.unique(m)) <= {0, 255} and np.array_equal(m > 0, im.mask)
            kinds.add(defect)
    assert kinds == {"crack", "scratch", "hole", "stain", "missing", "subtle"}


def test_exact_masks_at_full_resolution():
    for cat, kinds in CATEGORIES.items():
        im = synth.make_image(cat, kinds[0], size=518, seed=2)
        assert np.array_equal((im.image != im.clean).any(-1), im.mask)


def test_subtle_defects_are_low_contrast():
    im = synth.make_image("concrete", "subtle", 224, seed=0)
    diff = np.abs(im.image.astype(int) - im.clean.astype(int)).max(-1)[im.mask]
    assert diff.min() >= 1 and diff.max() <= 11


def test_groups_disjoint_and_cover_everything(quick_root):
    assert len(CATEGORIES) >= 8
    assert not set(AUX_CLASSES) & set(TARGET_CLASSES)
    assert set(AUX_CLASSES) | set(TARGET_CLASSES) == set(CATEGORIES)
    aux = load_dataset("synth", quick_root, "test", classes=AUX_CLASSES)
    target = load_dataset("synth", quick_root, "test", classes=TARGET_CLASSES)
    check_disjoint(aux, target)  # also after prompt-name mapping
    kinds = {s.defect_type for s in aux if s.label}
    assert kinds == {"crack", "scratch", "hole", "stain", "missing", "subtle"}


def test_every_test_split_has_good_and_bad(quick_root):
    test = load_dataset("synth", quick_root, "test")
    for cat in CATEGORIES:
        labels = [s.label for s in test if s.class_name == cat]
        assert 0 in labels and 1 in labels, cat
        assert all(s.mask_path is not None for s in test if s.label)
    train = load_dataset("synth", quick_root, "train")
    assert train and all(s.label == 0 for s in train)
    with Image.open(test[0].image_path) as im:
        assert im.size == (224, 224) and im.mode == "RGB"


def test_partial_tree_detected_and_regenerated(tmp_path):
    root = generate(tmp_path / "p", **SMALL)
    (root / MANIFEST).unlink()  # as if generation had stopped before the end
    with pytest.raises(DataError, match="not a complete synthetic tree"):
        load_dataset("synth", root)
    generate(root, **SMALL)
    assert len(load_dataset("synth", root)) == 10 * 5
    stamp = (root / MANIFEST).stat().st_mtime_ns
    generate(root, **SMALL)  # complete and same parameters: reused untouched
    assert (root / MANIFEST).stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_modified_tree_detected(tmp_path):
    root = generate(tmp_path / "m", **SMALL)
    (root / "wood" / "test" / "good" / "000.png").unlink()
    with pytest.raises(DataError, match="manifest"):
        load_dataset("synth", root)


def test_never_overwrites_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not a synthetic tree"):
        generate(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_ensure_synth_caches_under_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BAGCLIP_CACHE", str(tmp_path / "cache"))
    a = ensure_synth(seed=5, categories=["wood", "screw"], **SMALL)
    assert a.parent == tmp_path / "cache" and a.name.startswith("synth-")
    stamp = (a / MANIFEST).stat().st_mtime_ns
    assert ensure_synth(seed=5, categories=["wood", "screw"], **SMALL) == a
    assert (a / MANIFEST).stat().st_mtime_ns == stamp
    assert ensure_synth(seed=6, categories=["wood", "screw"], **SMALL) != a
    assert {s.class_name for s in load_dataset("synth", a)} == {"wood", "screw"}


def test_drawing_in_worker_processes_gives_the_same_images():
    """generate draws big trees in 2 spawned processes: same images, same order as one process."""
    from bagclip.data import synth as S

    plan = list(S._plan(["carpet", "screw"], 8, 12, 12, None, None))[:64]
    assert len(plan) == 64  # the size from which the pool is used
    one = list(S._draw_all(plan, 64, 3, parallel=False))
    pool = list(S._draw_all(plan, 64, 3, parallel=True))
    for a, b in zip(one, pool, strict=True):
        assert np.array_equal(a.image, b.image)
        assert (a.mask is None and b.mask is None) or np.array_equal(a.mask, b.mask)
