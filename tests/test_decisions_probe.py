"""The hostile probe of calibrate and predict (issue 32), one table per kind of finding, each
with more instances than the probe listed: which calibration file is used, which are refused,
what calibrate may replace, file names of colliding class names, two calibrates at once,
--checkpoint with --out, predict's own maps, non-UTF-8 file names, extreme rates, the bit depth
of 16-bit data, misleading words, images too small or too long."""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bagclip import Config
from bagclip import calibrate as C
from bagclip import conformal as K
from bagclip.cli import main
from bagclip.files import OutputError

SMALL = ["--quick", "--set", "image_size=112"]
CFG = Config.quick(image_size=112)
WEIGHTS = "ab" * 32


def _one_line(msg) -> str:
    msg = str(msg)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _record(class_name="screw", n=20, fpr=0.05, weights=WEIGHTS, seed=0, scorer=None) -> dict:
    """A well-formed calibration record (the rule applied to n random scores)."""
    rng = np.random.default_rng(seed)
    scores = sorted(float(x) for x in rng.random(n))
    cal = K.Calibration(class_name, fpr, 0.01, K.threshold_at_fpr(scores, fpr), 0.25, scores,
                        [{"name": f"{i:03d}.png", "sha256": f"{i:064x}"} for i in range(n)],
                        scorer if scorer is not None else C.scorer_identity(CFG), order=K.order_statistic(n, fpr),
                        weights_sha256=weights)
    return asdict(cal)


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _normals(folder: Path, n: int, start: int = 0, size: int = 112) -> Path:
    from bagclip.data.synth import make_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(make_image("screw", "good", size, seed=0, index=i, split="probe").image) \
            .save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """4 normal images, a calibration of them by the CLI (FPR 25 %) and 2 parts to predict."""
    root = tmp_path_factory.mktemp("probe")
    good = _normals(root / "good", 4)
    main(["calibrate", str(good), *SMALL, "--class-name", "screw", "--fpr", "0.25", "--out", str(root / "cal")])
    return {"good": good, "cal": root / "cal" / "calibration.screw.json", "parts": _normals(root / "parts", 2, 100)}


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "\tscore=" in line]


# ------------------------------------------------ a calibration file that is malformed or foreign
MALFORMED = {  # edit of a well-formed record -> a word of the one-line refusal
    "scores all true": (lambda d: d.update(scores=[True] * 20), "scores[0] is True"),
    "scores as strings": (lambda d: d.update(scores=[str(s) for s in d["scores"]]), "not a finite number"),
    "a NaN score": (lambda d: d["scores"].__setitem__(7, float("nan")), "scores[7]"),
    "an infinite score": (lambda d: d["scores"].__setitem__(19, float("inf")), "scores[19]"),
    "a score too large for a float": (lambda d: d["scores"].__setitem__(19, 10 ** 400), "scores[19]"),
    "no scores": (lambda d: d.update(scores=[], images=[]), "non-empty"),
    "one score less than images": (lambda d: d["scores"].pop(), "20 images but 19 scores"),
    "one image less than scores": (lambda d: d["images"].pop(), "19 images but 20 scores"),
    "too few scores for the rate": (lambda d: (d["scores"].pop(), d["images"].pop()), "inconsistent"),
    "scores out of order": (lambda d: d["scores"].reverse(), "inconsistent"),
    "threshold edited": (lambda d: d.update(image_threshold=d["image_threshold"] * 0.9), "inconsistent"),
    "threshold as a string": (lambda d: d.update(image_threshold=str(d["image_threshold"])), "image_threshold"),
    "fpr a bool": (lambda d: d.update(fpr=True), "fpr is True"),
    "fpr 1e-320": (lambda d: d.update(fpr=1e-320), "inconsistent"),
    "pixel threshold zero": (lambda d: d.update(pixel_threshold=0.0), "inconsistent"),
    "pixel threshold NaN": (lambda d: d.update(pixel_threshold=float("nan")), "pixel_threshold"),
    "order a bool": (lambda d: d.update(order=True), "order"),
    "order a float": (lambda d: d.update(order=20.0), "order"),
    "weights not a hash": (lambda d: d.update(weights_sha256="abc"), "weights_sha256"),
    "weights a number": (lambda d: d.update(weights_sha256=12), "weights_sha256"),
    "image without a hash": (lambda d: d["images"][0].pop("sha256"), "images"),
    "class name empty": (lambda d: d.update(class_name=""), "class_name"),
    "class name a number": (lambda d: d.update(class_name=7), "class_name"),
    "scorer a list": (lambda d: d.update(scorer=[]), "scorer"),
    "an unknown field": (lambda d: d.update(thresh=0.5), "unknown field thresh"),
    "a field missing": (lambda d: d.pop("scores"), "scores missing"),
    "another format": (lambda d: d.update(format=2), "another format"),
}


def test_the_unedited_record_loads():
    """The control of the table below: each refusal there is the edit's, not the record's."""
    assert C.calibration_from_record(_record()).n_images == 20


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_calibration_is_refused_in_one_line(tmp_path, case):
    edit, word = MALFORMED[case]
    data = _record()
    edit(data)
    path = _write(tmp_path / "calibration.screw.json", json.dumps(data))  # NaN/Infinity as JSON allows
    with pytest.raises(C.CalibrationFileError) as err:
        C.load_calibration(path)
    msg = _one_line(err.value)
    assert str(path) in msg and word in msg, msg


@pytest.mark.parametrize("text", ["", "[1, 2]", "null", "not json", "\xff\xfe", '{"scores": [1'])
def test_a_file_that_is_no_calibration_record_is_refused_in_one_line(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(C.CalibrationFileError) as err:
        C.load_calibration(path)
    assert str(path) in _one_line(err.value)


@pytest.mark.parametrize("recorded, loaded", [
    ("cd" * 32, WEIGHTS),  # the record edited, or the weights file replaced
    (WEIGHTS, "cd" * 32),
    (None, WEIGHTS),  # made on weights without a file (a hub tag), used on a file
    (WEIGHTS, None),
])
def test_a_calibration_of_other_backbone_weights_is_refused(tmp_path, recorded, loaded):
    path = _write(tmp_path / "c.json", _record(weights=recorded))
    with pytest.raises(C.StaleCalibrationError) as err:
        C.load_calibration(path, weights_sha256=loaded)
    assert "made on backbone weights" in _one_line(err.value)
    assert C.load_calibration(path, weights_sha256=recorded).weights_sha256 == recorded  # its own: fine


# ------------------------------------------------ which file --calibration uses
def _args(**kw):
    base = dict(calibration=None, threshold=None, checkpoint=None, class_name="screw", quick=True,
                config=None, set=["image_size=112"], class_name_map=None, seed=None)
    return argparse.Namespace(**{**base, **kw})


class _Weights:  # the one thing of a backbone _decider reads
    weights_sha256 = WEIGHTS


def _decide(a):
    from bagclip.cli.decisions import _decider

    return _decider(a, CFG, _Weights())


@pytest.mark.parametrize("name", ["mycal", "mine.json", "cal.JSON", "calibration.bolt.json", ".hidden"])
def test_a_calibration_file_named_is_the_file_used(tmp_path, name, capsys):
    """Whatever its suffix, and whatever else lies in its folder (here a calibration of the
    class under its default name, with another threshold)."""
    _write(tmp_path / "calibration.screw.json", _record(seed=1))
    named = _write(tmp_path / name, _record(seed=2))
    cal = _decide(_args(calibration=str(named)))
    assert cal.image_threshold == _record(seed=2)["image_threshold"] != _record(seed=1)["image_threshold"]
    assert f"calibration: {named} (" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["cal_typo", "cal_typo.json", "folder/missing.json", "missing/calibration.screw.json"])
def test_a_calibration_path_that_does_not_exist_is_refused_in_one_line(tmp_path, where, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    _write(tmp_path / "folder" / "calibration.screw.json", _record())  # never used instead
    with pytest.raises(FileNotFoundError) as err:
        _decide(_args(calibration=where))
    assert f"calibration {where} not found" in _one_line(err.value)


@pytest.mark.parametrize("present", [[], ["calibration.bolt.json"], ["calibration.screw.txt"], ["notes.txt"]])
def test_a_folder_without_the_class_calibration_is_refused_in_one_line(tmp_path, present):
    for name in present:
        _write(tmp_path / name, _record(class_name=name.split(".")[1]) if name.endswith("json") else "hi")
    with pytest.raises(C.CalibrationFileError) as err:
        _decide(_args(calibration=str(tmp_path)))
    assert "holds no calibration of class 'screw'" in _one_line(err.value)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_threshold_and_calibration_are_never_both_the_decision(tmp_path, threshold, capsys):
    """--threshold beside --calibration is refused; beside a checkpoint's calibration, the
    line says the threshold decides and the calibration is not used, and none is returned."""
    path = _write(tmp_path / "calibration.screw.json", _record())
    with pytest.raises(ValueError) as err:
        _decide(_args(calibration=str(path), threshold=threshold))
    assert "--threshold and --calibration both set the decision: give one" in _one_line(err.value)
    (tmp_path / "heads.safetensors").write_bytes(b"x")
    assert _decide(_args(checkpoint=str(tmp_path), threshold=threshold)) is None
    said = capsys.readouterr().out
    assert f"decision: score >= {threshold:g} (--threshold" in said and f"{path} beside the checkpoint is not used" in said


# ------------------------------------------------ file names of class names that collide when slugged
COLLIDING = [
    ["metal plate", "metal_plate", "metal-plate", "Metal Plate", "metal.plate", "metal  plate", "_metal_plate_"],
    ["металл", "пластина", "螺丝", "ねじ", "٣", "🙂", "?"],  # one slug ("class") for all of them before
    ["Screw", "screw", "SCREW"],  # one file on a case-insensitive disk
    ["a" * 300, "a" * 301, "b/../a", "..", "."],  # too long for a file name; path-like names
]


@pytest.mark.parametrize("names", COLLIDING, ids=["latin", "non-latin", "case", "long-or-pathlike"])
def test_class_names_that_slug_alike_get_files_of_their_own(tmp_path, names):
    files = [C.calibration_name(n) for n in names]
    assert len({f.lower() for f in files}) == len(names), files
    assert all(len(f.encode()) <= 255 and "/" not in f and f.startswith("calibration.") for f in files)
    for i, n in enumerate(names):  # written into one folder: each reads back as its own class only
        C.save_calibration(C.calibration_from_record(_record(class_name=n, seed=i)), C.calibration_path(tmp_path, n))
    for i, n in enumerate(names):
        path = C.find_calibration(tmp_path, n)
        assert C.load_calibration(path, class_name=n).image_threshold == _record(seed=i)["image_threshold"]
    with pytest.raises(C.CalibrationFileError, match="is for class"):
        C.load_calibration(C.find_calibration(tmp_path, names[0]), class_name=names[1])


def test_a_plain_class_name_keeps_its_file_name_and_an_old_file_is_found_by_its_recorded_name(tmp_path):
    assert C.calibration_name("screw") == "calibration.screw.json"
    assert C.calibration_name("pcb1") == "calibration.pcb1.json"
    old = _write(tmp_path / "calibration.metal_plate.json", _record(class_name="metal plate"))  # before issue 32
    assert C.find_calibration(tmp_path, "metal plate") == old
    with pytest.raises(C.CalibrationFileError, match="is for class 'metal plate', not 'metal_plate'"):
        C.load_calibration(C.find_calibration(tmp_path, "metal_plate"), class_name="metal_plate")


# ------------------------------------------------ what calibrate may replace
NOT_OURS = {  # what lies at the calibration's path
    "the user's own notes": "threshold 0.3, set by hand",
    "another tool's JSON": json.dumps({"threshold": 0.3, "class": "screw"}),
    "a calibration of another class": json.dumps(_record(class_name="bolt")),
    "an edited calibration": json.dumps({**_record(), "image_threshold": 0.123}),
    "an empty file": "",
}


@pytest.mark.parametrize("case", sorted(NOT_OURS))
def test_calibrate_never_replaces_a_file_it_did_not_write(tmp_path, case, monkeypatch, made):
    """Refused before any scoring; the file is left byte for byte."""
    import bagclip.calibrate as lib

    path = _write(tmp_path / "calibration.screw.json", NOT_OURS[case])
    before = path.read_bytes()
    monkeypatch.setattr(lib, "calibrate", lambda *a, **k: pytest.fail("scored before refusing"))
    with pytest.raises(SystemExit) as err:
        main(["calibrate", str(made["good"]), *SMALL, "--class-name", "screw", "--fpr", "0.25", "--out", str(tmp_path)])
    assert "is not a calibration of class 'screw'; it is kept" in _one_line(err.value)
    assert path.read_bytes() == before
    with pytest.raises(OutputError):  # the library's own rule, for a caller of save_calibration
        C.save_calibration(C.calibration_from_record(_record()), path)
    assert path.read_bytes() == before


def test_an_earlier_calibration_of_the_class_is_replaced(tmp_path):
    """The control of the table above: a calibration of the same class is the kit's own."""
    path = C.save_calibration(C.calibration_from_record(_record(seed=1)), tmp_path / "calibration.screw.json")
    C.save_calibration(C.calibration_from_record(_record(seed=2)), path)
    assert C.load_calibration(path).image_threshold == _record(seed=2)["image_threshold"]


# ------------------------------------------------ two calibrates into one folder at once
@pytest.mark.parametrize("names", [("screw", "screw"), ("metal plate", "metal_plate"), ("металл", "пластина"),
                                   ("Screw", "screw")])
def test_two_calibrates_at_once_into_one_folder_lose_neither(tmp_path, names, monkeypatch, made, capsys):
    """Both commands score at the same time (a barrier), then write: every calibration is on
    disk afterwards and the one of each class a predict finds is a complete file."""
    import bagclip.calibrate as lib

    barrier = threading.Barrier(2, timeout=60)

    def fake(images, class_name, *a, **k):
        barrier.wait()  # both have looked at the folder before either writes
        return K.Calibration(**_record(class_name=class_name, seed=len(threading.current_thread().name)))

    monkeypatch.setattr(lib, "calibrate", fake)
    kit_log = logging.getLogger("bagclip")  # main() in two threads: each restores what it saw
    monkeypatch.setattr(kit_log, "propagate", kit_log.propagate)
    monkeypatch.setattr(kit_log, "level", kit_log.level)
    out, errors = tmp_path / "cal", []

    def one(name):
        try:
            main(["calibrate", str(made["good"]), *SMALL, "--class-name", name, "--fpr", "0.25", "--out", str(out)])
        except BaseException as e:  # noqa: BLE001  SystemExit too: the test says which
            errors.append(e)

    threads = [threading.Thread(target=one, args=(n,), name="t" * (i + 1)) for i, n in enumerate(names)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    assert not errors, errors
    written = sorted(p for p in out.glob("calibration.*json"))
    assert len(written) == 2, written
    kept = {C.load_calibration(p).image_threshold for p in written}
    assert kept == {_record(seed=1)["image_threshold"], _record(seed=2)["image_threshold"]}
    if names[0] == names[1]:
        note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
        assert len(note) == 1 and "both are kept" in note[0] and "--calibration" in note[0]


# ------------------------------------------------ calibrate --checkpoint CK --out DIR
@pytest.mark.parametrize("out", ["new", "existing", "nested/deeper"])
@pytest.mark.parametrize("checkpoint", ["folder", "heads file"])
def test_calibrate_with_a_checkpoint_writes_where_out_says(tmp_path, monkeypatch, made, capsys, out, checkpoint):
    import bagclip.calibrate as lib
    import bagclip.cli.decisions as dec

    ck = tmp_path / "run"
    ck.mkdir()
    (ck / "heads.safetensors").write_bytes(b"heads")
    (tmp_path / "existing").mkdir()
    monkeypatch.setattr(dec, "_trained", lambda a: (None, CFG, None))
    monkeypatch.setattr(lib, "calibrate", lambda *a, **k: K.Calibration(**_record()))
    given = ck if checkpoint == "folder" else ck / "heads.safetensors"
    main(["calibrate", str(made["good"]), "--checkpoint", str(given), "--class-name", "screw", "--fpr", "0.25",
          "--out", str(tmp_path / out)])
    assert (tmp_path / out / "calibration.screw.json").is_file()
    assert sorted(p.name for p in ck.iterdir() if not p.name.startswith(".")) == ["heads.safetensors"]
    said = capsys.readouterr().out.splitlines()[-1]
    assert said.startswith("decide with it: bagclip predict IMAGES") and f"--calibration {tmp_path / out}" in said


# ------------------------------------------------ rates no calibration can have
@pytest.mark.parametrize("flag", ["--fpr", "--pixel-fpr"])
@pytest.mark.parametrize("value", ["1e-320", "5e-324", "1e-300", "1e-12", "2.2250738585072014e-308"])
def test_extreme_rates_are_refused_in_one_line_before_any_work(flag, value, made, monkeypatch):
    """1e-320 was an OverflowError traceback (1 / fpr is infinite)."""
    import bagclip.calibrate as lib

    monkeypatch.setattr(lib, "calibrate", lambda *a, **k: pytest.fail("scored before refusing"))
    rate = ["--fpr", "0.25"] if flag == "--pixel-fpr" else []  # 4 images: enough at 25 %
    with pytest.raises(SystemExit) as err:
        main(["calibrate", str(made["good"]), *SMALL, "--class-name", "screw", *rate, flag, value,
              "--out", str(made["good"].parent / "unused")])
    msg = _one_line(err.value.code)
    assert msg.startswith("bagclip calibrate: ") and "a rate below 1e-09" in msg


@pytest.mark.parametrize("n, side, pixel_fpr", [(1, 224, 1e-6), (4, 112, 1e-6), (20, 16, 1e-4), (2, 8, 0.005)])
def test_too_few_pixels_are_called_pixels_and_the_advised_rate_works(n, side, pixel_fpr):
    maps = np.random.default_rng(0).random((n, side, side)) + 0.1
    with pytest.raises(K.CalibrationError) as err:
        K.thresholds(np.arange(n, dtype=float), maps, 0.5, pixel_fpr)
    msg = _one_line(err.value)
    assert f"{n * side * side} normal pixels cannot give a pixel FPR" in msg and "images cannot" not in msg
    advised = float(msg.rsplit("pixel_fpr >= ", 1)[1])
    assert K.thresholds(np.arange(n, dtype=float), maps, 0.5, advised)[1] > 0  # the advice works as printed
    assert 1 / (n * side * side + 1) <= advised < 1.1 / (n * side * side + 1)  # and asks for no more


@pytest.mark.parametrize("n, fpr", [(3, 0.01), (18, 0.05), (1, 0.3), (98, 0.01), (9, 0.09)])
def test_too_few_images_are_called_images_and_the_advised_rate_works(n, fpr):
    with pytest.raises(K.CalibrationError) as err:
        K.threshold_at_fpr(np.arange(n, dtype=float), fpr)
    msg = _one_line(err.value)
    assert msg.startswith(f"{n} normal image{'s' if n > 1 else ''} cannot give FPR")
    K.threshold_at_fpr(np.arange(n, dtype=float), float(msg.rsplit("fpr >= ", 1)[1]))


# ------------------------------------------------ words: ordinals, plurals
@pytest.mark.parametrize("k, word", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                     (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st"),
                                     (111, "111th"), (112, "112th"), (1002, "1002nd")])
def test_ordinals(k, word):
    assert K.ordinal(k) == word


@pytest.mark.parametrize("n, fpr, words", [
    (1, 0.5, ["on 1 normal image written", "the 1st smallest of 1 normal", "1 image is the least",
              "(screw, 1 normal image)"]),
    (2, 0.5, ["on 2 normal images written", "the 2nd smallest of 2 normal", "(screw, 2 normal images)"]),
    (3, 0.25, ["the 3rd smallest of 3 normal", "3 images is the least"]),
])
def test_calibrate_speaks_english_for_any_count(tmp_path, n, fpr, words, made, capsys):
    good = tmp_path / "good"
    good.mkdir()
    for p in sorted(made["good"].iterdir())[:n]:
        (good / p.name).write_bytes(p.read_bytes())
    main(["calibrate", str(good), *SMALL, "--class-name", "screw", "--fpr", str(fpr), "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert all(w in out for w in words), out
    for bad in ("1 images", "1 normal images", "1 normal scores", "2th", "3th", "1th"):
        assert bad not in out


# ------------------------------------------------ predict's own maps are not parts
@pytest.mark.parametrize("calibrated", [False, True], ids=["raw maps", "calibrated maps"])
@pytest.mark.parametrize("where", ["maps in the input folder", "maps folder given as input too"])
def test_predict_twice_with_save_maps_scores_the_same_parts(tmp_path, made, capsys, calibrated, where):
    parts = tmp_path / "parts"
    parts.mkdir()
    for p in made["parts"].iterdir():
        (parts / p.name).write_bytes(p.read_bytes())
    maps = parts if where == "maps in the input folder" else tmp_path / "maps"
    inputs = [str(parts)] + ([] if maps == parts else [str(maps)])
    cal = ["--calibration", str(made["cal"])] if calibrated else []
    runs = []
    for i in range(3):  # the maps folder is an input from the second run on (empty before)
        main(["predict", *inputs[:1 if i == 0 else 2], *SMALL, "--class-name", "screw", "--save-maps", str(maps), *cal])
        cap = capsys.readouterr()
        runs.append(sorted(line.split("\t")[0] for line in _lines(cap.out)))
    assert runs[0] == runs[1] == runs[2] == sorted(str(p) for p in parts.glob("[0-9][0-9][0-9].png"))
    assert "skipped 2 anomaly maps written by bagclip predict" in cap.err
    assert sorted(p.name for p in maps.glob("*map*")) == ["100_map.png", "101_map.png"]  # rewritten, not multiplied
    moved = tmp_path / "moved.png"  # a map copied anywhere still says what it is
    moved.write_bytes(next(maps.glob("*_map.png")).read_bytes())
    with pytest.raises(SystemExit) as err:
        main(["predict", str(moved), *SMALL, "--class-name", "screw"])
    assert "every image given is an anomaly map written by bagclip predict" in _one_line(err.value.code)


# ------------------------------------------------ file names that are not UTF-8
@pytest.mark.skipif(os.name != "posix", reason="byte file names: Linux and other POSIX systems")
@pytest.mark.parametrize("name", [b"\xff\xfe.png", b"caf\xe9.png", b"\x80abc\x81.png", b"ok-\xc3(.png"])
@pytest.mark.parametrize("calibrated", [False, True], ids=["raw maps", "calibrated maps"])
def test_non_utf8_file_names_are_predicted_and_mapped(tmp_path, made, capsys, name, calibrated):
    folder = tmp_path / "parts"
    folder.mkdir()
    src = next(made["parts"].iterdir()).read_bytes()
    with open(os.path.join(os.fsencode(folder), name), "wb") as f:
        f.write(src)
    cal = ["--calibration", str(made["cal"])] if calibrated else []
    main(["predict", str(folder), *SMALL, "--class-name", "screw", "--save-maps", str(tmp_path / "maps"), *cal])
    cap = capsys.readouterr()
    shown = os.fsdecode(os.path.join(os.fsencode(folder), name)).encode("utf-8", "surrogateescape") \
        .decode("utf-8", "backslashreplace")
    assert [line.split("\t")[0] for line in _lines(cap.out)] == [shown]
    written = os.listdir(os.fsencode(tmp_path / "maps"))
    assert [w for w in written if w.endswith(b"_map.png")] == [name[:-4] + b"_map.png"]


# ------------------------------------------------ the bit depth of integer images
def _depth16(kind: str) -> np.ndarray:
    rng = np.random.default_rng(len(kind))
    return {"dark": rng.integers(0, 256, (24, 32)), "mid": rng.integers(20000, 40000, (24, 32)),
            "full": rng.integers(0, 65536, (24, 32)), "flat": np.full((24, 32), 255)}[kind].astype(np.uint16)


CONTAINERS = {  # 16-bit data saved in a file that says it is 16-bit (or says its white level)
    "png 16-bit": lambda a, p: Image.fromarray(a).save(p.with_suffix(".png")),
    "tiff 16-bit": lambda a, p: Image.fromarray(a).save(p.with_suffix(".tif")),
    "pgm 16-bit": lambda a, p: Image.fromarray(a).save(p.with_suffix(".pgm")),
    "tiff 32-bit with MaxSampleValue": lambda a, p: Image.fromarray(a.astype(np.int32)).save(
        p.with_suffix(".tiff"), tiffinfo={281: 65535}),
}


@pytest.mark.parametrize("data", ["dark", "mid", "full", "flat"])
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_16_bit_data_reads_the_same_from_any_container(tmp_path, data, container):
    """White is 65535 whatever the pixels hold: a dark 16-bit image stays dark (it read as
    bright when the depth of mode "I" was guessed from its values)."""
    from bagclip.data.io import read_rgb

    a = _depth16(data)
    CONTAINERS[container](a, tmp_path / "im")
    path = next(tmp_path.glob("im.*"))
    want = np.repeat(np.rint(a / 65535.0 * 255.0).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(read_rgb(path), want)


@pytest.mark.parametrize("data", ["dark", "mid", "full"])
@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_a_32_bit_integer_image_without_its_white_level_is_refused_in_one_line(tmp_path, data, dtype):
    from bagclip.data import DataError
    from bagclip.data.io import read_rgb

    path = tmp_path / "im.tif"
    Image.fromarray(_depth16(data).astype(dtype)).save(path)
    with pytest.raises(DataError) as err:
        read_rgb(path)
    assert "declares no maximum value, so its white level is unknown" in _one_line(err.value)


def test_the_same_16_bit_data_scores_the_same_as_png_and_as_tiff(tmp_path, tiny_cfg, tiny_backbone):
    from bagclip.inference import predict
    from bagclip.zeroshot import ZeroShot

    a = _depth16("dark")
    CONTAINERS["png 16-bit"](a, tmp_path / "a")
    CONTAINERS["tiff 32-bit with MaxSampleValue"](a, tmp_path / "b")
    scores = [predict(tmp_path / f, cfg=tiny_cfg, backbone=tiny_backbone, model=ZeroShot(tiny_backbone))[0].image_score
              for f in ("a.png", "b.tiff")]
    assert scores[0] == scores[1]


# ------------------------------------------------ images too small, or too long, to score as a part
@pytest.mark.parametrize("wh", [(1, 1), (1, 300), (300, 1), (15, 15), (40, 15)])
def test_too_small_images_are_refused_in_one_line(tmp_path, wh, made, monkeypatch):
    """By predict (the image named), and by calibrate before any model is loaded."""
    import bagclip.calibrate as lib

    p = tmp_path / "tiny.png"
    Image.new("RGB", wh, (90, 90, 90)).save(p)
    with pytest.raises(SystemExit) as err:
        main(["predict", str(p), *SMALL, "--class-name", "screw"])
    msg = _one_line(err.value.code)
    assert f"cannot score {p}" in msg and f"is {wh[0]} x {wh[1]} pixels: too small to score" in msg
    good = tmp_path / "good"
    good.mkdir()
    for q in made["good"].iterdir():
        (good / q.name).write_bytes(q.read_bytes())
    (good / "zz.png").write_bytes(p.read_bytes())
    monkeypatch.setattr(lib, "_scorer_parts", lambda *a: pytest.fail("model loaded before refusing"))
    with pytest.raises(SystemExit) as err:
        main(["calibrate", str(good), *SMALL, "--class-name", "screw", "--fpr", "0.25", "--out", str(tmp_path / "c")])
    assert "too small to score" in _one_line(err.value.code)


@pytest.mark.parametrize("wh, warned", [((20, 20000), True), ((20000, 20), True), ((100, 401), True),
                                        ((400, 100), False), ((112, 112), False), ((640, 480), False)])
def test_images_far_from_square_are_scored_with_a_warning(tmp_path, wh, warned, caplog):
    from bagclip.data.io import scorable_hw

    p = tmp_path / "long.png"
    Image.new("RGB", wh).save(p)
    with caplog.at_level("WARNING", logger="bagclip"):
        assert scorable_hw(p) == (wh[1], wh[0])
    said = [r.getMessage() for r in caplog.records if "resized to a square" in r.getMessage()]
    assert bool(said) == warned and all(f"{wh[0]} x {wh[1]} pixels" in s for s in said)


# ------------------------------------------------ the rule apart from the driver
def test_the_conformal_rule_imports_without_torch_or_the_driver():
    import subprocess
    import sys

    code = ("import sys, bagclip.conformal as K; K.threshold_at_fpr(range(19), 0.05); "
            "print(sorted(m for m in ('torch', 'open_clip', 'bagclip.calibrate', 'bagclip.backbone') "
            "if m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env,
                         check=True).stdout
    assert out.strip() == "[]"
    assert all(getattr(C, name) is getattr(K, name) for name in K.__all__)  # every name also from calibrate
