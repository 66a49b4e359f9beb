"""The full-mode protocol path on fixture trees laid out like the real datasets."""
import math

import pytest

from bagclip.cache import FeatureCache
from bagclip.data import DataError
from bagclip.data import protocol_data
from bagclip.runs import run_settings
from fixtures_data import make_folder, make_mvtec, make_visa


@pytest.fixture()
def data_root(tmp_path):
    make_mvtec(tmp_path / "mvtec_ad", classes=("bottle",), defects=("broken",))
    make_visa(tmp_path / "visa")
    make_mvtec(tmp_path / "mpdd", classes=("bracket_black",), defects=("hole",), mask_fmt="{stem}.png")
    make_mvtec(tmp_path / "insplad", classes=("glass-insulator",), defects=("missing-cap",), mask_fmt="")
    make_folder(tmp_path / "eped")
    return tmp_path


def test_full_protocol_reads_the_paper_layout(data_root, monkeypatch):
    monkeypatch.setenv("BAGCLIP_DATA", str(data_root))
    aux, targets = protocol_data(full=True)
    assert {s.class_name for s in aux} == {"bottle", "pcb1", "candle"}
    assert all(s.image_path.parts[-4] != "train" for s in aux)  # test splits: the convention
    assert set(targets) == {"MPDD", "INSPLAD", "EPED"}
    assert all(s.mask_path is None for s in targets["INSPLAD"])


def test_full_protocol_runs_end_to_end(data_root, tiny_cfg, tiny_backbone, tmp_path):
    aux, targets = protocol_data(full=True, data_root=data_root)
    df = run_settings(tiny_cfg.replace(epochs=1, batch_size=4), {"full": {}}, aux, targets,
                  backbone=tiny_backbone, cache=FeatureCache(tiny_backbone, tmp_path / "c"), progress=False)
    by = df.set_index("dataset")
    assert set(by.index) == {"MPDD", "INSPLAD", "EPED"}
    assert 0 <= by.loc["MPDD", "pixel_auroc"] <= 1 and 0 <= by.loc["EPED", "image_auroc"] <= 1
    assert math.isnan(by.loc["INSPLAD", "pixel_auroc"])  # image-level set: NaN, never 0
    assert not math.isnan(by.loc["INSPLAD", "image_auroc"])


def test_missing_data_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("BAGCLIP_DATA", raising=False)
    with pytest.raises(DataError, match="BAGCLIP_DATA"):
        protocol_data(full=True)
    (tmp_path / "mvtec_ad").mkdir()
    with pytest.raises(DataError, match="visa"):
        protocol_data(full=True, data_root=tmp_path)
