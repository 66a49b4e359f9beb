import pytest

from bagclip import Config


def test_paper_defaults():
    c = Config()
    assert (c.backbone, c.pretrained, c.image_size, c.taps) == ("ViT-L-14-336", "openai", 518, (6, 12, 18, 24))
    assert (c.k, c.gcn_layers, c.safr_reduction, c.gcn_hidden) == (15, 5, 16, 384)
    assert (c.lr, c.betas, c.batch_size, c.epochs, c.logit_scale) == (1e-3, (0.5, 0.999), 8, 5, 100.0)
    assert c.grid == 37


@pytest.mark.parametrize("kw, words", [
    (dict(taps=(6, 12, 18, 25)), "1..24"),
    (dict(image_size=500), "multiple of the patch size 14"),
    (dict(k=1369), "must be < N=1369"),
    (dict(detail_attention="qq"), "allowed"),
    (dict(image_score="mean"), "allowed"),
    (dict(taps=(12, 6)), "increasing"),
    (dict(k=1), "k >= 2"),
    (dict(seg_loss="fused"), "seg_loss.*allowed"),
    (dict(graph_input="raw"), "graph_input.*allowed"),
    (dict(feature_dtype="bfloat16"), "feature_dtype.*allowed"),
    (dict(kernel_scale=0.0), "kernel_scale"),
])
def test_validation_says_what_is_allowed(kw, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Config(**kw)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_roundtrip(tmp_path, suffix):
    c = Config.tiny(k=7, class_names={"pcb1": "printed circuit board"}, seed=3)
    p = c.save(tmp_path / f"cfg{suffix}")
    assert Config.load(p) == c


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown field.*'kk'"):
        Config.from_dict({"kk": 3})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Config.load(tmp_path / "nope.json")
