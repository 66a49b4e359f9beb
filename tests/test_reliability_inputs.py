"""Issue 19, inputs: read as a person sees them (EXIF orientation), masks binarised by one
documented rule, and every index entry validated with one line naming the file and entry.

Expected values come from numpy's own rotations and from the boxes the tests draw, never from
the function under test.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bagclip.data import DataError, load_dataset
from bagclip.data.io import binarize_mask, image_hw, load_image, load_mask, mask_array, read_rgb

from fixtures_data import make_visa, write_image

# EXIF orientation -> what a viewer does to the stored pixels (the EXIF 2.3 table)
DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),
}


def _save_with_orientation(path: Path, a: np.ndarray, orientation: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", sorted(DISPLAY))
@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_exif_orientation_is_applied_to_images(tmp_path, orientation, suffix):
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # not square: turns are visible
    p = _save_with_orientation(tmp_path / f"im{suffix}", stored, orientation)
    want = DISPLAY[orientation](stored)
    if suffix == ".webp":  # lossy by default: compare shapes and the coarse layout only
        got = read_rgb(p)
        assert got.shape == want.shape
        return
    np.testing.assert_array_equal(read_rgb(p), want)
    assert image_hw(p) == want.shape[:2]
    x = load_image(p, None)
    assert tuple(x.shape[1:]) == want.shape[:2]


@pytest.mark.parametrize("orientation", sorted(DISPLAY))
def test_exif_orientation_is_applied_to_masks(tmp_path, orientation):
    stored = np.zeros((10, 16), np.uint8)
    stored[:3, :5] = 255  # a box in the stored top-left corner
    p = _save_with_orientation(tmp_path / "m.png", stored, orientation)
    want = DISPLAY[orientation](stored) > 0
    np.testing.assert_array_equal(mask_array(p), want)
    np.testing.assert_array_equal(load_mask(p, None).numpy(), want)
    assert tuple(load_mask(None, None, like=p).shape) == want.shape  # a normal image's mask too


def test_rotated_image_pairs_with_its_displayed_mask(tmp_path):
    """A portrait photo stored landscape + tag 6, its mask drawn on the displayed (portrait)
    image: the loader pairs them (sizes agree as displayed) and the box lands where drawn."""
    root = tmp_path / "f"
    stored = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    _save_with_orientation(root / "abnormal" / "001.png", stored, 6)
    drawn = np.zeros((32, 24), np.uint8)  # as displayed: 32 high, 24 wide
    drawn[-4:, -6:] = 255
    (root / "masks").mkdir(parents=True)
    Image.fromarray(drawn).save(root / "masks" / "001_mask.png")
    write_image(root / "normal" / "000.png", hw=(32, 24))
    s = [x for x in load_dataset("folder", root) if x.label]
    assert len(s) == 1
    np.testing.assert_array_equal(load_mask(s[0].mask_path, None).numpy(), drawn > 0)
    assert tuple(load_image(s[0].image_path, None).shape[1:]) == (32, 24)


# --- mask binarisation ----------------------------------------------------------------------
def _box(hw=(32, 40), box=(8, 24, 10, 30), on=255, dtype=np.uint8):
    a = np.zeros(hw, dtype)
    a[box[0]:box[1], box[2]:box[3]] = on
    return a


def _jpeg(a: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# (id, array or bytes written to the file, suffix, expected bool array, a warning expected)
TRUTH = _box() > 0
MASKS = [
    ("MVTec 0/255", _box(), ".png", TRUTH, False),
    ("VisA 0/1", _box(on=1), ".png", TRUTH, False),
    ("label 0/38", _box(on=38), ".png", TRUTH, False),
    ("16-bit 0/65535", _box(on=65535, dtype=np.uint16), ".png", TRUTH, False),
    ("all normal", np.zeros((32, 40), np.uint8), ".png", np.zeros((32, 40), bool), False),
    ("colour red on black", np.stack([_box(), _box(on=0), _box(on=0)], -1), ".png", TRUTH, False),
    ("anti-aliased edge", np.where(_box() > 0, 255, 0).astype(np.uint8) | _box(box=(7, 8, 10, 30), on=100),
     ".png", TRUTH, True),
    ("label map 0/1/2", _box(on=1) + _box(box=(0, 2, 0, 2), on=2), ".png",
     TRUTH | (_box(box=(0, 2, 0, 2)) > 0), True),
    ("16-bit with a halo", _box(on=65535, dtype=np.uint16) | _box(box=(7, 8, 10, 30), on=300, dtype=np.uint16),
     ".png", TRUTH, True),
]


@pytest.mark.parametrize("case", MASKS, ids=[c[0] for c in MASKS])
def test_mask_binarisation_rule(tmp_path, caplog, case):
    _, a, suffix, want, warns = case
    p = tmp_path / f"{case[0].replace(' ', '_').replace('/', '-')}{suffix}"
    Image.fromarray(a).save(p)
    with caplog.at_level(logging.WARNING, logger="bagclip.data.io"):
        got = mask_array(p)
    np.testing.assert_array_equal(got, want)
    warned = [r for r in caplog.records if str(p) in r.getMessage() and "marks no defect" not in r.getMessage()]
    assert bool(warned) == warns, caplog.text
    if warns:
        assert "binarised at >" in warned[0].getMessage() and "PNG" in warned[0].getMessage()


@pytest.mark.parametrize("quality", [40, 60, 85])
@pytest.mark.parametrize("box", [(3, 21, 5, 27), (1, 6, 0, 40), (3, 29, 17, 19)])
def test_jpeg_mask_halo_is_not_defect(tmp_path, caplog, quality, box):
    truth = _box(box=box) > 0
    p = tmp_path / "m.jpg"
    p.write_bytes(_jpeg(_box(box=box), quality))
    raw = np.asarray(Image.open(p).convert("L"))
    with caplog.at_level(logging.WARNING, logger="bagclip.data.io"):
        got = mask_array(p)
    # the old rule (> 0) grows the defect by the halo; the documented one keeps the drawn box
    assert (raw > 0).sum() > truth.sum()
    assert (got != truth).mean() < 0.02, ((got != truth).sum(), truth.sum())
    assert any("lossy" in r.getMessage() and str(p) in r.getMessage() for r in caplog.records)


def test_lossy_mask_warned_once_per_file(tmp_path, caplog):
    p = tmp_path / "once.jpg"
    p.write_bytes(_jpeg(_box(), 90))
    with caplog.at_level(logging.WARNING, logger="bagclip.data.io"):
        for _ in range(3):  # training reloads masks every step
            load_mask(p, 16)
    assert sum(str(p) in r.getMessage() for r in caplog.records) == 1


def test_binarize_mask_arrays_directly():
    assert binarize_mask(np.array([[0, 1]], np.uint8)).tolist() == [[False, True]]
    assert binarize_mask(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[False, False, True, True]]
    assert binarize_mask(np.array([[0.0, 0.4, 0.6, 1.0]], np.float32)).tolist() == [[False, False, True, True]]


# --- meta.json: every entry validated, one line naming the file and the entry ----------------
def _meta_root(tmp_path) -> Path:
    root = tmp_path / "m"
    write_image(root / "a" / "000.png")
    write_image(root / "a" / "001.png", seed=1)
    return root


GOOD = {"img_path": "a/000.png", "mask_path": "", "cls_name": "a", "specie_name": "good", "anomaly": 0}
# (id, meta.json content (an object, or raw bytes), words the one-line message holds)
META = [
    ("test is a list", {"train": {}, "test": [GOOD]}, ["'test' is a list", "<class>"]),
    ("test is a string", {"train": {}, "test": "a/000.png"}, ["'test' is a str"]),
    ("test is a number", {"train": {}, "test": 3}, ["'test' is a int"]),
    ("class is a string", {"test": {"a": "a/000.png"}}, ["test/a is a str", "list of entries"]),
    ("class is an object", {"test": {"a": GOOD}}, ["test/a is a dict"]),
    ("entry is a string", {"test": {"a": ["a/000.png"]}}, ["entry 0 of test/a", "not an object"]),
    ("entry lacks img_path", {"test": {"a": [{"anomaly": 0}]}}, ["entry 0 of test/a", "lacks img_path"]),
    ("entry lacks anomaly", {"test": {"a": [{"img_path": "a/000.png"}]}}, ["lacks anomaly"]),
    ("img_path a number", {"test": {"a": [{**GOOD, "img_path": 7}]}}, ["img_path is 7"]),
    ("img_path empty", {"test": {"a": [{**GOOD, "img_path": " "}]}}, ["img_path is ' '"]),
    ("mask_path a list", {"test": {"a": [{**GOOD, "anomaly": 1, "mask_path": ["x"]}]}}, ["mask_path is ['x']"]),
    ("anomaly yes", {"test": {"a": [{**GOOD, "anomaly": "yes"}]}}, ["anomaly is 'yes'", "0 (normal) or 1"]),
    ("anomaly 2", {"test": {"a": [{**GOOD, "anomaly": 2}]}}, ["anomaly is 2"]),
    ("anomaly 0.5", {"test": {"a": [{**GOOD, "anomaly": 0.5}]}}, ["anomaly is 0.5"]),
    ("anomaly null", {"test": {"a": [{**GOOD, "anomaly": None}]}}, ["anomaly is None"]),
    ("specie_name a number", {"test": {"a": [{**GOOD, "specie_name": 3}]}}, ["specie_name is 3"]),
    ("second entry bad", {"test": {"a": [GOOD, {**GOOD, "img_path": "a/001.png", "anomaly": -1}]}},
     ["entry 1 of test/a", "anomaly is -1"]),
    ("duplicate image", {"test": {"a": [GOOD, GOOD]}}, ["entry 1 of test/a", "already listed", "once"]),
    ("duplicate across classes", {"test": {"a": [GOOD], "b": [GOOD]}}, ["test/b", "already listed"]),
    ("duplicate through ./", {"test": {"a": [GOOD, {**GOOD, "img_path": "./a/000.png"}]}}, ["already listed"]),
    ("top level a list", [GOOD], ["no 'test' split"]),
    ("Latin-1 text", json.dumps({"test": {"a": [{**GOOD, "specie_name": "rayé"}]}},
                                ensure_ascii=False).encode("latin-1"), ["UTF-8", "0xe9", "re-save"]),
    ("UTF-16 text", json.dumps({"test": {"a": [GOOD]}}).encode("utf-16"), ["UTF-8", "re-save"]),
    ("not JSON", b"{test: 1}", ["not valid JSON"]),
]


@pytest.mark.parametrize("case", META, ids=[c[0] for c in META])
def test_meta_entries_validated(tmp_path, case):
    _, content, words = case
    root = _meta_root(tmp_path)
    (root / "meta.json").write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(DataError) as e:
        load_dataset("meta", root, "test")
    msg = str(e.value)
    assert "\n" not in msg and str(root / "meta.json") in msg, msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("content", [
    {"test": {"a": [GOOD, {**GOOD, "img_path": "a/001.png", "anomaly": True}]}},
    {"test": {"a": [GOOD, {**GOOD, "img_path": "a/001.png", "anomaly": "1"}]}},
    {"test": {"a": [{**GOOD, "anomaly": 0.0}]}},
])
def test_meta_accepts_the_peers_spellings(tmp_path, content):
    root = _meta_root(tmp_path)
    data = json.dumps(content).encode("utf-8")
    (root / "meta.json").write_bytes(b"\xef\xbb\xbf" + data)  # a BOM as Windows editors write it
    s = load_dataset("meta", root, "test", image_level=True)
    assert [x.image_path.name for x in s] == [e["img_path"].split("/")[-1] for e in content["test"]["a"]]


# --- VisA split csv --------------------------------------------------------------------------
def _visa(tmp_path, mutate) -> Path:
    root = make_visa(tmp_path / "visa", classes=("pcb1",))
    table = root / "split_csv" / "1cls.csv"
    lines = table.read_text().splitlines()
    table.write_bytes(mutate(lines))
    return root


def _lines(f):
    return lambda lines: ("\n".join(f(list(lines))) + "\n").encode("utf-8")


VISA = [
    ("row with two fields", _lines(lambda l: l[:3] + ["pcb1,test"] + l[3:]), ["line 4", "2 field(s)", "header has 5"]),
    ("row with one field", _lines(lambda l: l + ["pcb1"]), ["line 8", "1 field(s)"]),
    ("row with six fields", _lines(lambda l: l[:2] + [l[2] + ",extra"] + l[3:]), ["line 3", "6 field(s)"]),
    ("unknown label", _lines(lambda l: l[:2] + [l[2].replace("normal", "norml")] + l[3:]),
     ["line 3", "label 'norml'", "normal or anomaly"]),
    ("empty label", _lines(lambda l: l[:2] + [l[2].replace("normal", "")] + l[3:]), ["line 3", "label ''"]),
    ("empty image", _lines(lambda l: l[:1] + ["pcb1,test,normal,,"] + l[1:]), ["line 2", "image empty"]),
    ("duplicate row", _lines(lambda l: l + [l[3]]), ["line 8", "already listed", "line 4"]),
    ("line numbers count blank lines", _lines(lambda l: l[:1] + ["", ""] + l[1:] + ["pcb1,test"]),
     ["line 10", "2 field(s)"]),
    ("missing column", _lines(lambda l: [l[0].replace(",mask", "")] + [x.rsplit(",", 1)[0] for x in l[1:]]),
     ["needs the columns", "mask"]),
    ("Latin-1 file", lambda l: ("\n".join(l + ["pcb1,test,normal,é.JPG,"]) + "\n").encode("latin-1"),
     ["UTF-8", "0xe9"]),
]


@pytest.mark.parametrize("case", VISA, ids=[c[0] for c in VISA])
def test_visa_rows_validated(tmp_path, case):
    _, mutate, words = case
    root = _visa(tmp_path, mutate)
    with pytest.raises(DataError) as e:
        load_dataset("visa", root, "test")
    msg = str(e.value)
    assert "\n" not in msg and "1cls.csv" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_visa_accepts_capitalised_labels_and_a_bom(tmp_path):
    root = _visa(tmp_path, lambda l: ("\ufeff" + "\n".join(x.replace("anomaly", "Anomaly") for x in l)
                                      + "\n").encode("utf-8"))
    s = load_dataset("visa", root, "test")
    assert sorted(x.label for x in s) == [0, 0, 1, 1]


# --- through the command line: one line, no traceback ---------------------------------------
@pytest.mark.parametrize("case", [META[0], META[5], META[11], META[21]], ids=lambda c: c[0])
def test_cli_says_one_line_for_a_bad_meta(tmp_path, capsys, case):
    from bagclip.cli import main

    root = _meta_root(tmp_path)
    content = case[1]
    (root / "meta.json").write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(SystemExit) as e:
        main(["cache", "--quick", "--dataset", f"meta={root}", "--cache-dir", str(tmp_path / "c")])
    msg = str(e.value.code)
    assert msg.startswith("bagclip cache: meta:") and "\n" not in msg and "meta.json" in msg, msg


def test_cli_names_its_own_flag_for_image_level(tmp_path, capsys):
    from bagclip.cli import main

    root = _meta_root(tmp_path)
    (root / "meta.json").write_text(json.dumps({"test": {"a": [{**GOOD, "anomaly": 1}]}}))
    with pytest.raises(SystemExit) as e:
        main(["cache", "--quick", "--dataset", f"meta={root}", "--cache-dir", str(tmp_path / "c")])
    msg = str(e.value.code)
    assert "image_level=True" not in msg and "--image-level" in msg, msg


# --- issue 32: an anomalous image whose mask marks nothing is named, once ------------------
def _pil(a, mode=None):
    return Image.fromarray(a, mode) if mode else Image.fromarray(a)


def _palette_black():
    im = Image.new("P", (40, 32), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return im


# (id, the mask image, suffix, marks a pixel): masks of anomalous images
EMPTY = [
    ("8-bit zeros", lambda: _pil(np.zeros((32, 40), np.uint8)), ".png", False),
    ("16-bit zeros", lambda: _pil(np.zeros((32, 40), np.uint16)), ".png", False),
    ("black RGB", lambda: _pil(np.zeros((32, 40, 3), np.uint8)), ".png", False),
    ("palette of black", _palette_black, ".png", False),
    ("float TIFF zeros", lambda: _pil(np.zeros((32, 40), np.float32)), ".tif", False),
    ("lossy zeros", lambda: _pil(np.zeros((32, 40), np.uint8)), ".jpg", False),
    ("one pixel", lambda: _pil(_box(box=(5, 6, 7, 8))), ".png", True),
    ("VisA 0/1 box", lambda: _pil(_box(on=1)), ".png", True),
]


@pytest.mark.parametrize("case", EMPTY, ids=[c[0] for c in EMPTY])
def test_an_empty_mask_is_named_once_when_evaluated(tmp_path, caplog, case):
    """Evaluated (and trained on, which reloads masks every step) with one warning naming the
    file and what it means; a mask that marks any pixel gives none. docs/decisions.md says why
    it is a warning and not a refusal."""
    import torch

    from bagclip.data import Sample
    from bagclip.evaluate import evaluate

    _, make, suffix, marks = case
    img, mask = tmp_path / "bad.png", tmp_path / f"bad_mask{suffix}"
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(img)
    make().save(mask)
    samples = [Sample(img, None, "part", "good", 0), Sample(img, mask, "part", "dent", 1)]

    def scorer(images, cls):  # (maps (B, 16, 16), scores (B,)): any scorer
        maps = torch.rand(len(images), 16, 16, generator=torch.Generator().manual_seed(0))
        return maps, torch.tensor([0.2, 0.7])[:len(images)]

    with caplog.at_level(logging.WARNING, logger="bagclip.data.io"):
        evaluate(scorer, samples, 16, progress=False)
        for _ in range(2):  # training reloads it every step
            load_mask(mask, 16)
    named = [r.getMessage() for r in caplog.records if "marks no defect" in r.getMessage()]
    if marks:
        assert named == []
        return
    assert len(named) == 1 and str(mask) in named[0], caplog.text
    assert "counts as normal" in named[0] and "Draw the defect" in named[0] and "\n" not in named[0]
