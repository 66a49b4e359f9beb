"""The command line end to end on a tiny synthetic tree: synth, train, eval, predict, sweep,
ablate, bench (reproduce: tests/test_reproduce.py)."""
import json

import pytest

from bagclip.cli import main

SMALL = ["--quick", "--set", "image_size=112", "--set", "epochs=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "synth"
    main(["synth", str(root), "--size", "112", "--seed", "3"])
    return root


def test_train_eval_predict(synth, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    main(["train", *SMALL, "--dataset", f"synth={synth}", "--out", str(tmp_path / "run"), "--cache-dir", cache])
    assert (tmp_path / "run" / "heads.safetensors").is_file()
    main(["eval", "--checkpoint", str(tmp_path / "run"), "--dataset", f"synth={synth}",
          "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["n_images"] > 0 and 0 <= summary["pixel_auroc"] <= 1
    assert list((tmp_path / "ev" / "synth").iterdir())  # per-class and mean files written
    main(["predict", str(synth / "screw" / "test" / "good"), "--checkpoint", str(tmp_path / "run"),
          "--class-name", "screw", "--threshold", "0.5", "--save-maps", str(tmp_path / "maps")])
    lines = [l for l in capsys.readouterr().out.splitlines() if "score=" in l]
    assert lines and all(("ANOMALOUS" in l) != ("normal" in l) for l in lines)
    assert len(list((tmp_path / "maps").glob("*_map.png"))) == len(lines)


@pytest.fixture(scope="module")
def split_synth(tmp_path_factory):
    """Two synthetic trees with disjoint classes: the zero-shot protocol's train and target sets
    (issue 19: the commands refuse a target that shares a class, or a file, with training)."""
    from bagclip.data.synth import AUX_CLASSES, TARGET_CLASSES, generate

    base = tmp_path_factory.mktemp("split")
    kw = dict(seed=3, size=112, n_train=1, n_test_good=2, n_test_bad=2)
    return (generate(base / "aux", categories=list(AUX_CLASSES[:2]), **kw),
            generate(base / "target", categories=list(TARGET_CLASSES[:2]), **kw))


def test_sweep_and_ablate_commands(split_synth, tmp_path, capsys):
    aux, target = split_synth
    spec = ["--train", f"synth={aux}", "--target", f"synth={target}", "--cache-dir", str(tmp_path / "c")]
    main(["sweep", *SMALL, *spec, "--param", "k", "--values", "3", "7", "--out", str(tmp_path / "sw")])
    assert (tmp_path / "sw" / "sensitivity_k.png").is_file()
    assert "k=7" in capsys.readouterr().out
    main(["ablate", *SMALL, *spec, "--out", str(tmp_path / "ab")])
    assert "without SAFR / synth" in (tmp_path / "ab" / "table3.md").read_text()
    with pytest.raises(SystemExit, match="--target"):
        main(["ablate", "--train", f"synth={aux}"])


def test_sweep_refuses_targets_that_are_the_training_set(synth, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["sweep", *SMALL, "--train", f"mvtec={synth}", "--target", f"mvtec={synth}",
              "--out", str(tmp_path / "sw"), "--cache-dir", str(tmp_path / "c")])
    msg = str(e.value.code)
    assert msg.startswith("bagclip sweep:") and "share class" in msg and "\n" not in msg
    assert not (tmp_path / "sw" / "k=5").exists()  # refused before any run


def test_bench_command(tmp_path, capsys):
    main(["bench", *SMALL, "--repeats", "1", "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "table4_sag_cost.csv").is_file()
    assert "measured on:" in capsys.readouterr().out


def test_errors_are_one_line_and_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["train", *SMALL, "--dataset", f"mvtec={tmp_path / 'none'}", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="name=root"):
        main(["train", *SMALL, "--dataset", "mvtec", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="key=value"):
        main(["train", "--quick", "--set", "epochs", "--dataset", "synth=x", "--out", "r"])
    monkeypatch.delenv("BAGCLIP_DATA", raising=False)
    with pytest.raises(SystemExit, match="needs the real datasets"):
        main(["reproduce", "--full"])
    with pytest.raises(SystemExit, match="train first"):
        main(["eval", "--checkpoint", str(tmp_path / "nothing"), "--dataset", "synth=x"])
