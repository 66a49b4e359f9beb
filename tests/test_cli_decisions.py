"""The decision commands end to end on a tiny synthetic tree: predict without a checkpoint
(the training-free scorer, named), calibrate (and its refusal), adapt, predict and eval with a
calibration beside the checkpoint."""
import numpy as np
import pytest
from PIL import Image

from bagclip.cli import main

SMALL = ["--quick", "--set", "image_size=112"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec") / "synth"
    main(["synth", str(root), "--size", "112", "--seed", "4"])
    return root


def test_predict_without_checkpoint_names_the_training_free_scorer(synth, capsys):
    img = next((synth / "screw" / "test" / "good").glob("*.png"))
    main(["predict", str(img), *SMALL, "--class-name", "screw"])
    cap = capsys.readouterr()
    assert "meaningless" not in cap.out + cap.err
    assert "scorer: training-free ZeroShot (frozen bagclip-mini" in cap.out
    line = [l for l in cap.out.splitlines() if "score=" in l][0]
    assert line.endswith("undecided (no calibration)")  # no invented threshold
    assert "bagclip calibrate NORMALS --class-name screw --quick" in cap.err  # how to get a decision


def test_calibrate_refuses_three_images_at_one_percent_in_one_line(synth, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["calibrate", str(synth / "screw" / "train" / "good" / "000.png"),
              str(synth / "screw" / "train" / "good" / "001.png"),
              str(synth / "screw" / "train" / "good" / "002.png"), *SMALL, "--class-name", "screw",
              "--fpr", "0.01", "--out", str(tmp_path)])
    msg = str(err.value)
    assert msg.startswith("bagclip calibrate: 3 normal images cannot give FPR 0.01") and "\n" not in msg
    assert "at least 99" in msg


def test_calibrate_then_predict_with_a_colour_bar_map(synth, tmp_path, capsys):
    good = synth / "screw" / "train" / "good"  # 4 normal images: enough for FPR 25 %
    main(["calibrate", str(good), *SMALL, "--class-name", "screw", "--fpr", "0.25",
          "--out", str(tmp_path / "cal")])
    out = capsys.readouterr().out
    assert (tmp_path / "cal" / "calibration.screw.json").is_file()
    assert "expected FPR 20.0% (<= 25.0%" in out  # k = ceil(0.75 * 5) = 4 of 4: 1/5
    main(["predict", str(synth / "screw" / "test" / "good"), str(synth / "screw" / "test" / "scratch"), *SMALL, "--class-name", "screw",
          "--calibration", str(tmp_path / "cal"), "--save-maps", str(tmp_path / "maps")])
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if "score=" in l]
    assert "calibration:" in out and "1.0 = top 1 % of normal pixels" in out
    assert lines and all("normal_tail=" in l and (l.endswith("ANOMALOUS") != l.endswith("normal")) for l in lines)
    png = np.asarray(Image.open(next((tmp_path / "maps").glob("*_map.png"))).convert("RGB"))
    assert png.shape[1] > 112 and len(np.unique(png.reshape(-1, 3), axis=0)) > 50  # a figure, not the raw map


def test_adapt_calibrate_predict_and_eval(synth, tmp_path, capsys):
    good = synth / "screw" / "train" / "good"
    run = tmp_path / "run"
    main(["adapt", str(good), *SMALL, "--set", "epochs=1", "--class-name", "screw", "--copies", "1",
          "--exclude-kinds", "scratch", "stain", "subtle", "--out", str(run), "--cache-dir", str(tmp_path / "c")])
    assert (run / "heads.safetensors").is_file() and (run / "adapt.json").is_file()
    main(["calibrate", str(good), "--checkpoint", str(run), "--class-name", "screw", "--fpr", "0.25"])
    capsys.readouterr()
    main(["predict", str(synth / "screw" / "test" / "good"), "--checkpoint", str(run), "--class-name", "screw"])
    out = capsys.readouterr().out
    assert f"scorer: trained heads {run}" in out and "calibration:" in out
    main(["eval", "--checkpoint", str(run), "--dataset", f"synth={synth}", "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert "(F1-max: threshold picked on the test labels)" in out
    screw = [l for l in out.splitlines() if l.strip().startswith("screw:")][0]
    assert "at the normal-only threshold (FPR 25% on 4 normals): precision" in screw
    assert "carpet: no calibration" in out


def test_adapt_that_cannot_draw_a_defect_says_so_in_one_line(synth, tmp_path, monkeypatch):
    from bagclip.data import world

    monkeypatch.setattr(world, "try_defect", lambda *a, **k: None)  # no drawing ever fits
    good = synth / "screw" / "train" / "good"
    with pytest.raises(SystemExit) as err:
        main(["adapt", str(good), *SMALL, "--class-name", "screw", "--copies", "1", "--out", str(tmp_path / "run"),
              "--cache-dir", str(tmp_path / "c")])
    msg = err.value.code
    assert isinstance(msg, str) and "\n" not in msg and "Traceback" not in msg  # a str code: exit status 1
    assert msg.startswith("bagclip adapt: could not draw a visible defect of kinds crack, ")
    assert f"{good / '000.png'} at 112x112 pixels" in msg  # names the image and its size
    assert "--set image_size=" in msg and "fewer --exclude-kinds" in msg  # what to do


# ---------------------------------------------------------------- the shipped generic calibration
def test_shipped_calibration_records_the_shipped_weights_and_its_images():
    """Re-checked after every change of the shipped weights: python tools/calibrate_quick.py."""
    import hashlib

    from bagclip import calibrate as C
    from bagclip.data import synth as S
    from bagclip.weights import _DIR, record

    cal = C.load_calibration(C.SHIPPED_CALIBRATION)  # consistent: the rule applied to its scores
    weights = hashlib.sha256((_DIR / "bagclip-mini.safetensors").read_bytes()).hexdigest()
    assert cal.weights_sha256 == weights == record("bagclip-mini")["sha256"], \
        "shipped weights changed: regenerate the calibration with `python tools/calibrate_quick.py`"
    assert cal.class_name == C.GENERIC and cal.fpr == 0.05 and cal.n_images >= 19
    assert {i["name"].split("/")[0] for i in cal.images} == set(S.AUX_CLASSES)  # never a target class
    assert len({i["sha256"] for i in cal.images}) == cal.n_images
    assert cal.scorer == C.scorer_identity(__import__("bagclip").Config.quick(), None)


def test_predict_quick_decides_with_the_generic_threshold_and_names_the_scorer(synth, capsys):
    img = next((synth / "screw" / "test" / "good").glob("*.png"))
    main(["predict", str(img), "--quick", "--class-name", "screw"])
    cap = capsys.readouterr()
    assert "scorer: training-free ZeroShot (frozen bagclip-mini" in cap.out
    assert "GENERIC threshold" in cap.out and "not of your class 'screw'" in cap.out
    assert "bagclip calibrate NORMALS --class-name screw --quick --out DIR" in cap.out
    line = [l for l in cap.out.splitlines() if "score=" in l][0]
    assert line.endswith(("  normal (generic threshold, training-free scorer)",
                          "  ANOMALOUS (generic threshold, training-free scorer)"))
    assert "undecided" not in cap.out and "warning" not in cap.err


def test_predict_quick_refuses_a_calibration_of_other_weights(synth, tmp_path, capsys, monkeypatch):
    import json

    from bagclip import calibrate as C

    data = json.loads(C.SHIPPED_CALIBRATION.read_text())
    data["weights_sha256"] = "0" * 64  # made on weights since replaced
    stale = tmp_path / "quick-calibration.json"
    stale.write_text(json.dumps(data))
    monkeypatch.setattr(C, "SHIPPED_CALIBRATION", stale)
    img = next((synth / "screw" / "test" / "good").glob("*.png"))
    main(["predict", str(img), "--quick", "--class-name", "screw"])
    cap = capsys.readouterr()
    warning = [l for l in cap.err.splitlines() if l.startswith("warning:")]
    assert len(warning) == 1 and "sha256 000000000000..." in warning[0]
    assert warning[0].endswith("regenerate it with `python tools/calibrate_quick.py`")
    assert [l for l in cap.out.splitlines() if "score=" in l][0].endswith("undecided (no calibration)")
