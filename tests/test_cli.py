"""The command line end to end on a tiny synthetic tree: synth, train, eval, predict, reproduce."""
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


def test_reproduce_quick_writes_labelled_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAGCLIP_CACHE", str(tmp_path / "cache"))
    main(["reproduce", *SMALL, "--out", str(tmp_path / "rq"), "--seeds", "0", "1"])
    res = json.loads((tmp_path / "rq" / "results.json").read_text())
    assert "NOT the paper's numbers" in res["label"]
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    assert res["runs"][0]["trained"] != res["runs"][1]["trained"]
    table = (tmp_path / "rq" / "tables.md").read_text()
    assert "NOT the paper's numbers" in table and "±" in table
    assert "NOT" in capsys.readouterr().out
    assert (tmp_path / "rq" / "figure.png").stat().st_size > 10_000
    t3 = (tmp_path / "rq" / "ablation" / "table3.md").read_text()
    assert "without SAG / synth-target" in t3 and "the paper's Table 3" in t3
    for param, n in (("k", 5), ("gcn_layers", 6)):
        assert (tmp_path / "rq" / "sensitivity" / f"sensitivity_{param}.png").is_file()
        sweep = (tmp_path / "rq" / "sensitivity" / f"sweep_{param}.csv").read_text().splitlines()
        assert len(sweep) == 1 + n
    t5 = (tmp_path / "rq" / "cost" / "table5_inference.csv").read_text()
    assert "BAG-CLIP (ours, measured)" in t5 and "A6000" in t5


def test_sweep_and_ablate_commands(synth, tmp_path, capsys):
    spec = ["--train", f"synth={synth}", "--target", f"synth={synth}", "--cache-dir", str(tmp_path / "c")]
    main(["sweep", *SMALL, *spec, "--param", "k", "--values", "3", "7", "--out", str(tmp_path / "sw")])
    assert (tmp_path / "sw" / "sensitivity_k.png").is_file()
    assert "k=7" in capsys.readouterr().out
    main(["ablate", *SMALL, *spec, "--out", str(tmp_path / "ab")])
    assert "without SAFR / synth" in (tmp_path / "ab" / "table3.md").read_text()
    with pytest.raises(SystemExit, match="--target"):
        main(["ablate", "--train", f"synth={synth}"])


def test_bench_command(tmp_path, capsys):
    main(["bench", *SMALL, "--repeats", "1", "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "table4_sag_cost.csv").is_file()
    assert "measured on:" in capsys.readouterr().out


def test_errors_are_one_line_and_say_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["train", *SMALL, "--dataset", f"mvtec={tmp_path / 'none'}", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="name=root"):
        main(["train", *SMALL, "--dataset", "mvtec", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="key=value"):
        main(["train", "--quick", "--set", "epochs", "--dataset", "synth=x", "--out", "r"])
    with pytest.raises(SystemExit, match="needs the real datasets"):
        main(["reproduce"])
    with pytest.raises(SystemExit, match="train first"):
        main(["eval", "--checkpoint", str(tmp_path / "nothing"), "--dataset", "synth=x"])
