"""Dataset loaders on tiny trees laid out like each real archive, and every bad-input message."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bagclip.data import (CLIP_MEAN, CLIP_STD, DataError, Sample, auxiliary_samples, check_disjoint,
                          denormalize, load_dataset, load_image, load_mask, prompt_name, write_meta)
from fixtures_data import H, W, make_btad, make_folder, make_mvtec, make_visa, write_image, write_mask


def _stem_paired(samples):
    for s in samples:
        if s.mask_path is not None:
            assert s.mask_path.stem in (s.image_path.stem, s.image_path.stem + "_mask")


# ------------------------------------------------------------------------------ layouts
def test_mvtec_test_and_train(tmp_path):
    make_mvtec(tmp_path, classes=("bottle", "metal_nut"), defects=("broken", "crack"))
    test = load_dataset("mvtec", tmp_path, "test")
    assert len(test) == 2 * (2 + 2 * 2)
    assert all(isinstance(s, Sample) for s in test)
    assert {s.class_name for s in test} == {"bottle", "metal_nut"}
    good = [s for s in test if s.label == 0]
    assert all(s.mask_path is None and s.defect_type == "good" for s in good)
    assert all(s.mask_path is not None for s in test if s.label == 1)
    _stem_paired(test)
    train = load_dataset("mvtec", tmp_path, "train", classes="bottle")
    assert len(train) == 2 and all(s.label == 0 and s.class_name == "bottle" for s in train)
    with pytest.raises(AttributeError):
        test[0].label = 1  # frozen


def test_unknown_class_lists_available(tmp_path):
    make_mvtec(tmp_path)
    with pytest.raises(DataError, match="available: bottle"):
        load_dataset("mvtec", tmp_path, classes=["cable"])


def test_mpdd_masks_without_suffix(tmp_path):
    make_mvtec(tmp_path, classes=("bracket_black",), defects=("hole",), mask_fmt="{stem}.png")
    s = load_dataset("mpdd", tmp_path)
    assert sum(x.label for x in s) == 2
    _stem_paired(s)


def test_btad_bmp_png_ok_ko(tmp_path):
    make_btad(tmp_path)
    s = load_dataset("btad", tmp_path, "test")
    assert {x.class_name for x in s} == {"01", "02", "03"}
    assert {x.defect_type for x in s} == {"good", "ko"}
    assert len([x for x in s if x.label]) == 6
    _stem_paired(s)
    bmp = next(x for x in s if x.class_name == "01" and x.label)
    assert bmp.image_path.suffix == ".bmp" and bmp.mask_path.suffix == ".png"
    assert load_image(bmp.image_path, 28).shape == (3, 28, 28)
    assert len(load_dataset("btad", tmp_path, "train")) == 6


def test_visa_csv_jpg_and_01_masks(tmp_path):
    make_visa(tmp_path)
    s = load_dataset("visa", tmp_path, "test")
    assert len(s) == 8 and {x.class_name for x in s} == {"pcb1", "candle"}
    anomalous = [x for x in s if x.label]
    assert len(anomalous) == 4 and all(x.defect_type == "anomaly" for x in anomalous)
    _stem_paired(s)
    m = load_mask(anomalous[0].mask_path, None)  # 0/1 values: > 0 binarisation
    assert m.shape == (H, W) and m[:6, :6].all() and m.sum() == 36
    assert len(load_dataset("visa", tmp_path, "train", classes=["pcb1"])) == 2
    with pytest.raises(DataError, match="split_csv"):
        load_dataset("visa", tmp_path / "pcb1")


def test_miad_and_insplad_image_level(tmp_path):
    make_mvtec(tmp_path / "miad", classes=("metal_welding",), defects=("crack",))
    assert len(load_dataset("miad", tmp_path / "miad")) == 4
    root = make_mvtec(tmp_path / "insplad", classes=("glass-insulator",), defects=("missing-cap",),
                      mask_fmt="")  # InsPLAD-fault ships image-level labels only
    with pytest.raises(DataError, match="setting image_level") as e:
        load_dataset("insplad", root)
    assert "missing-cap" in str(e.value) and "000.png" in str(e.value)
    s = load_dataset("insplad", root, image_level=True)
    assert [x.mask_path for x in s if x.label] == [None, None]
    assert prompt_name(s[0].class_name) == "glass insulator"


def test_folder_layout(tmp_path):
    root = make_folder(tmp_path / "eped")
    s = load_dataset("folder", root)
    assert {x.class_name for x in s} == {"eped"}
    assert sorted(x.defect_type for x in s) == ["good", "good", "scratch", "scratch"]
    _stem_paired(s)
    s2 = load_dataset("folder", root, normal="normal", abnormal="abnormal", class_name="board")
    assert s2[0].class_name == "board"
    with pytest.raises(DataError, match="single split"):
        load_dataset("folder", root, "train")
    with pytest.raises(DataError, match="good_imgs"):
        load_dataset("folder", root, normal="good_imgs", abnormal="bad_imgs")


def test_meta_json_round_trip(tmp_path):
    make_mvtec(tmp_path, classes=("bottle", "pcb1"), defects=("broken",))
    samples = load_dataset("mvtec", tmp_path, "test")
    path = write_meta({"test": samples, "train": load_dataset("mvtec", tmp_path, "train")}, tmp_path)
    data = json.loads(path.read_text())
    assert set(data) == {"train", "test"} and set(data["test"]) == {"bottle", "pcb1"}
    e = next(x for x in data["test"]["bottle"] if x["anomaly"] == 1)
    assert set(e) == {"img_path", "mask_path", "cls_name", "specie_name", "anomaly"}
    assert e["img_path"] == "bottle/test/broken/000.png"
    assert e["mask_path"] == "bottle/ground_truth/broken/000_mask.png"
    assert all(x["mask_path"] == "" for x in data["test"]["bottle"] if x["anomaly"] == 0)
    back = load_dataset("meta", tmp_path, "test")
    key = lambda s: (s.class_name, str(s.image_path))  # noqa: E731
    assert sorted(back, key=key) == sorted(samples, key=key)
    with pytest.raises(DataError, match="not under the root"):
        write_meta(samples, tmp_path / "bottle")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="choose one of"):
        load_dataset("mvtec2", tmp_path)


# ------------------------------------------------------------------------------ bad inputs
def test_wrong_root_names_it(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset("mvtec", tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


def test_empty_root_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match=r"<class>/test/good") as e:
        load_dataset("mvtec", tmp_path)
    assert "empty folder" in str(e.value)
    with pytest.raises(DataError, match=r"<class>/test/ok"):
        load_dataset("btad", tmp_path)


def test_category_folder_as_root_gets_a_hint(tmp_path):
    make_mvtec(tmp_path)
    with pytest.raises(DataError, match="ONE category folder"):
        load_dataset("mvtec", tmp_path / "bottle")


def test_unpaired_masks_named(tmp_path):
    make_mvtec(tmp_path)
    gt = tmp_path / "bottle" / "ground_truth" / "broken"
    (gt / "001_mask.png").rename(gt / "007_mask.png")  # sort order would still "pair" it
    with pytest.raises(DataError) as e:
        load_dataset("mvtec", tmp_path)
    msg = str(e.value)
    assert "007_mask.png" in msg and "001.png" in msg and "setting image_level" in msg


def test_anomalous_without_mask_only_in_image_level(tmp_path):
    make_mvtec(tmp_path)
    (tmp_path / "bottle" / "ground_truth" / "broken" / "000_mask.png").unlink()
    with pytest.raises(DataError, match="without a mask.*000.png.*setting image_level"):
        load_dataset("mvtec", tmp_path)
    s = load_dataset("mvtec", tmp_path, image_level=True)
    masks = {x.image_path.name: x.mask_path for x in s if x.label}
    assert masks["000.png"] is None and masks["001.png"].name == "001_mask.png"


def test_corrupt_image_named_or_skipped(tmp_path):
    make_mvtec(tmp_path)
    bad = tmp_path / "bottle" / "test" / "good" / "001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="001.png.*Replace or delete"):
        load_dataset("mvtec", tmp_path)
    with pytest.warns(UserWarning, match="001.png"):
        s = load_dataset("mvtec", tmp_path, skip_bad=True)
    assert bad not in [x.image_path for x in s] and len(s) == 3


def test_truncated_image_raises_naming_it(tmp_path):
    p = write_image(tmp_path / "t.png", hw=(64, 64))
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match="t.png"):
        load_image(p, 32)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.png", 32)
    make_mvtec(tmp_path / "ds")
    q = tmp_path / "ds" / "bottle" / "test" / "good" / "000.png"
    q.write_bytes(q.read_bytes()[:100])
    with pytest.raises(DataError, match="000.png"):
        load_dataset("mvtec", tmp_path / "ds", verify=True)  # full decode catches truncation


# ------------------------------------------------------------------------------ images, masks
@pytest.mark.parametrize("mode,suffix", [("L", ".png"), ("RGBA", ".png"), ("P", ".png"),
                                         ("I;16", ".png"), ("RGB", ".JPG"), ("RGB", ".bmp")])
def test_any_image_mode_loads_as_rgb(tmp_path, mode, suffix):
    p = write_image(tmp_path / f"x{suffix}", mode=mode)
    x = load_image(p, 40)
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert load_image(p, None).shape == (3, H, W)


def test_16bit_is_rescaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "w16.png")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "g16.png")
    white = load_image(tmp_path / "w16.png", 8)[:, 0, 0]
    expect = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(white, expect, atol=1e-5)
    grey = denormalize(load_image(tmp_path / "g16.png", 8))
    assert abs(int(grey[0, 0, 0]) - 128) <= 1  # mid-grey, not saturated white


def test_normalisation_and_denormalize_round_trip(tmp_path):
    p = write_image(tmp_path / "a.png")
    x = load_image(p, None)
    assert np.array_equal(denormalize(x), np.asarray(Image.open(p).convert("RGB")))
    assert denormalize(x).dtype == np.uint8 and denormalize(x).shape == (H, W, 3)


def test_mask_resize_nearest_and_shapes(tmp_path):
    p = write_mask(tmp_path / "m.png", hw=(20, 40), box=10)  # left quarter of the top half
    m = load_mask(p, 80)
    assert m.shape == (80, 80) and m.dtype == torch.bool
    assert m[:40, :20].all() and not m[40:].any() and not m[:, 20:].any()
    assert load_mask(p, None).shape == (20, 40)  # native (H, W)
    assert load_mask(p, (10, 30)).shape == (10, 30)


def test_normal_mask_is_hw_for_non_square(tmp_path):
    img = write_image(tmp_path / "i.png", hw=(30, 50))
    m = load_mask(None, None, like=img)
    assert m.shape == (30, 50) and not m.any()
    assert load_mask(None, 16).shape == (16, 16)
    with pytest.raises(DataError, match="like="):
        load_mask(None, None)


def test_rgb_and_palette_masks_binarised(tmp_path):
    a = np.zeros((8, 8, 3), np.uint8)
    a[0, 0] = (0, 0, 1)  # a faint colour still counts
    Image.fromarray(a).save(tmp_path / "rgb.png")
    Image.fromarray(a).quantize(4).save(tmp_path / "pal.png")
    for name in ("rgb.png", "pal.png"):
        m = load_mask(tmp_path / name, None)
        assert m[0, 0] and m.sum() == 1


# ------------------------------------------------------------------------------ names, convention
def test_prompt_names():
    assert prompt_name("pcb3") == "printed circuit board"
    assert prompt_name("metal_nut") == "metal nut"
    assert prompt_name("macaroni2") == "macaroni"
    assert prompt_name("pipe_fryum") == "pipe fryum"
    assert prompt_name("chewinggum") == "chewing gum"
    assert {prompt_name(c) for c in ("01", "02", "03")} == {"metal plate", "wooden board", "metal part"}
    assert prompt_name("photovoltaic_module") == "photovoltaic module"
    assert prompt_name("some_new-part") == "some new part"
    assert prompt_name("pcb1", {"pcb1": "board"}) == "board"


def test_auxiliary_samples_and_disjointness(tmp_path):
    make_mvtec(tmp_path / "mvtec", classes=("bottle",))
    make_visa(tmp_path / "visa", classes=("pcb1",))
    aux = auxiliary_samples({"mvtec": tmp_path / "mvtec", "visa": tmp_path / "visa"})
    assert {s.class_name for s in aux} == {"bottle", "pcb1"} and any(s.label for s in aux)
    target = load_dataset("visa", make_visa(tmp_path / "visa2", classes=("pcb2", "candle")))
    with pytest.raises(DataError, match="printed circuit board.*pcb1.*pcb2"):
        check_disjoint(aux, target)  # pcb1 vs pcb2: the same prompt name
    check_disjoint(aux, [s for s in target if s.class_name == "candle"])
    check_disjoint(aux, target, overrides={"pcb2": "another board"})
