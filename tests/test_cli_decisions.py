"""The decision commands end to end on a tiny synthetic tree: predict without a checkpoint
(the training-free scorer, named), calibrate (and its refusal), adapt, predict and eval with a
calibration beside the checkpoint."""
from pathlib import Path

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
    assert "bagclip calibrate GOOD --class-name screw --quick" in cap.err  # how to get a decision


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


# ---------------------------------------------------------------- no default decision (issue 32)
def test_predict_quick_without_a_calibration_does_not_decide_and_says_how_in_one_line(synth, capsys):
    """No shipped generic threshold any more: it flagged 38 of 100 normal parts of classes it
    was not made on. The undecided line gives the exact calibrate command of this scorer."""
    import shlex

    from bagclip.cli.decisions import CALIBRATION_IMAGES

    img = next((synth / "screw" / "test" / "good").glob("*.png"))
    main(["predict", str(img), *SMALL, "--class-name", "screw"])
    cap = capsys.readouterr()
    line = [l for l in cap.out.splitlines() if "score=" in l][0]
    assert line.endswith("undecided (no calibration)") and "ANOMALOUS" not in cap.out
    said = [l for l in cap.err.splitlines() if l.startswith("decision:")]
    assert len(said) == 1 and f"{CALIBRATION_IMAGES} normal images of screw" in said[0]
    cmd = said[0].split("`")[1]  # the command, as one would paste it
    assert shlex.split(cmd) == ["bagclip", "calibrate", "GOOD", "--class-name", "screw", *SMALL,
                                "--out", "calibration"]
    assert said[0].endswith("then add --calibration calibration to this command")


def test_the_undecided_command_makes_a_calibration_that_predict_then_decides_with(synth, tmp_path, capsys,
                                                                                  monkeypatch):
    """The printed command, run as printed (GOOD: the class's normal images), gives the file
    that the suggested `--calibration calibration` finds: the line is exact, not a sketch."""
    import shlex

    good = synth / "screw" / "train" / "good"
    img = next((synth / "screw" / "test" / "good").glob("*.png"))
    monkeypatch.chdir(tmp_path)
    main(["predict", str(img), *SMALL, "--class-name", "screw"])
    cmd = [l for l in capsys.readouterr().err.splitlines() if l.startswith("decision:")][0].split("`")[1]
    argv = [str(good) if w == "GOOD" else w for w in shlex.split(cmd)[1:]]
    main(argv + ["--fpr", "0.25"])  # 4 normal images here: the least for 25 %, not for 5 %
    capsys.readouterr()
    main(["predict", str(img), *SMALL, "--class-name", "screw", "--calibration", "calibration"])
    line = [l for l in capsys.readouterr().out.splitlines() if "score=" in l][0]
    assert line.endswith(("  normal", "  ANOMALOUS")) and "normal_tail=" in line


def test_no_shipped_calibration_is_left_to_read():
    import bagclip
    from bagclip import calibrate as C

    weights = Path(bagclip.__file__).parent / "weights"
    assert not (weights / "quick-calibration.json").exists()
    assert not [n for n in ("SHIPPED_CALIBRATION", "shipped_calibration", "GENERIC") if hasattr(C, n)]
