"""Issue 19, rule 7 (standalone functions, not yet wired into run keys): fingerprints of what a
result was computed from, and refusals of repeated names and seeds and of non-disjoint sets."""
from __future__ import annotations

import os

import pytest

from bagclip.data import DataError, Sample
from bagclip.fingerprint import (check_same_inputs, check_unique_names, check_unique_values,
                                 check_zero_shot, inputs_fingerprint, samples_fingerprint)

from fixtures_data import write_image, write_mask


@pytest.fixture()
def data(tmp_path):
    imgs = [write_image(tmp_path / "a" / f"{i}.png", seed=i) for i in range(3)]
    mask = write_mask(tmp_path / "a" / "2_mask.png")
    return [Sample(imgs[0], None, "a", "good", 0), Sample(imgs[1], None, "a", "good", 0),
            Sample(imgs[2], mask, "a", "x", 1)]


def _replace_bytes(p):
    st = os.stat(p)
    data = bytearray(p.read_bytes())
    data[-10] ^= 1
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and date


# (id, change to the data set, listing fingerprint changes, contents fingerprint changes)
CHANGES = [
    ("nothing", lambda s: s, False, False),
    ("another order", lambda s: s[::-1], False, False),
    ("one image fewer", lambda s: s[:2], True, True),
    ("a label flipped", lambda s: [*s[:2], Sample(s[2].image_path, None, "a", "x", 0)], True, True),
    ("a class renamed", lambda s: [Sample(x.image_path, x.mask_path, "b", x.defect_type, x.label) for x in s],
     True, True),
    ("an image rewritten", lambda s: (s[0].image_path.write_bytes(s[1].image_path.read_bytes()), s)[1], True, True),
    ("a mask touched", lambda s: (os.utime(s[2].mask_path, ns=(1, 10**18)), s)[1], True, False),
    ("same size and date, other bytes", lambda s: (_replace_bytes(s[1].image_path), s)[1], False, True),
]


@pytest.mark.parametrize("case", CHANGES, ids=[c[0] for c in CHANGES])
def test_samples_fingerprint(data, case):
    before = samples_fingerprint(data), samples_fingerprint(data, contents=True)
    after_set = case[1](list(data))
    after = samples_fingerprint(after_set), samples_fingerprint(after_set, contents=True)
    assert (before[0] != after[0]) == case[2]
    assert (before[1] != after[1]) == case[3]


def test_inputs_fingerprint_and_check(data, tiny_backbone):
    a = inputs_fingerprint(data[:2], {"t": data[2:]}, tiny_backbone)
    assert set(a) == {"aux", "targets", "backbone"}
    check_same_inputs(a, dict(a), "run x")
    check_same_inputs(None, a, "run x")  # before fingerprints: accepted
    b = inputs_fingerprint(data[:1], {"t": data[2:]}, tiny_backbone)
    with pytest.raises(ValueError, match="run x was made from other inputs \\(aux differ"):
        check_same_inputs(a, b, "run x")
    c = inputs_fingerprint(data[:2], {"t": data[2:]}, {"backbone": "other"})
    with pytest.raises(ValueError, match="backbone differ"):
        check_same_inputs(a, c, "run x")


@pytest.mark.parametrize("specs, twice", [
    (["folder=A", "folder=B"], "folder"),
    (["mvtec=A", "MVTec=B"], "mvtec"),
    (["visa=A", "mvtec=B", "visa=A"], "visa"),
    (["mvtec=A", "visa=B"], None),
])
def test_repeated_dataset_names(specs, twice):
    if twice is None:
        check_unique_names(specs)
        return
    with pytest.raises(ValueError, match=f"given twice: {twice}"):
        check_unique_names(specs)


@pytest.mark.parametrize("values, bad", [([1, 2], False), ([0, 0], True), ([1, 2, 1], True),
                                         ([[5, 10], [5, 10]], True), ([1, 1.5], False)])
def test_repeated_seeds_or_values(values, bad):
    if not bad:
        check_unique_values(values, "--seeds")
        return
    with pytest.raises(ValueError, match="--seeds: .* given more than once"):
        check_unique_values(values, "--seeds")


# (id, target built from the training samples, refused, words)
ZS = [
    ("same set", lambda d: d, True, "share class"),
    ("same files, other class", lambda d: [Sample(x.image_path, x.mask_path, "zz", x.defect_type, x.label) for x in d],
     True, r"shares 3 image\(s\)"),
    ("other class and files", lambda d: [Sample(d[0].image_path.with_name("9.png"), None, "zz", "good", 0)], False, ""),
]


@pytest.mark.parametrize("case", ZS, ids=[c[0] for c in ZS])
def test_zero_shot_targets_disjoint(data, case):
    target = case[1](data)
    if not case[2]:
        check_zero_shot(data, {"t": target})
        return
    with pytest.raises(DataError, match=case[3]):
        check_zero_shot(data, {"t": target})
