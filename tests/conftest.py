"""Shared fixtures: the tiny offline backbone, small generated images."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_cfg():
    from bagclip import Config

    return Config.tiny(image_size=112)  # grid 8, N = 64


@pytest.fixture(scope="session")
def tiny_backbone(tiny_cfg):
    from bagclip import load_backbone

    return load_backbone(tiny_cfg)


@pytest.fixture()
def image_files(tmp_path):
    """Four small RGB PNGs with distinct content."""
    from fixtures_data import random_pngs

    return random_pngs(tmp_path, [(60 + i, 80) for i in range(4)])


@pytest.fixture()
def ctrl_c_at_loss(monkeypatch):
    """ctrl_c_at_loss(n): from now on the n-th call of bagclip_loss raises KeyboardInterrupt (the
    user pressing Ctrl-C mid-training); ctrl_c_at_loss(None) puts the real loss back."""
    import bagclip.losses as L

    real = L.bagclip_loss

    def arm(n: int | None) -> None:
        calls = {"n": 0}

        def loss(*a, **k):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(L, "bagclip_loss", real if n is None else loss)

    return arm
