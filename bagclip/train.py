"""Training the BAG-CLIP heads on cached backbone features (section 3.6, 4.1.3).

The backbone is frozen, so every image is encoded once into the feature cache and each epoch
reads tokens from disk. Only the heads (SAFR, SAG, JFF projections, and the global adapter
when `cfg.global_adapter`) train.

Reproducible and resumable: the heads are initialised from `cfg.seed`; the order of epoch e is
`randperm` from a generator seeded with (seed, e); there is no dropout. So a run that is
interrupted and resumed from its last checkpoint gives the same weights as an uninterrupted one.
Checkpoints (atomic, every `save_every` steps and at each epoch end) live in `out_dir`:
    heads.safetensors   trainable weights + the Config (metadata), all `predict` needs
    state.pt            optimiser state and progress, read with torch.load(weights_only=True)
    history.json        loss per step
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save

from .backbone import Backbone
from .cache import FeatureCache
from .config import Config
from .files import atomic_write_bytes, atomic_write_text, safetensors_metadata


@dataclass
class TrainResult:
    model: torch.nn.Module  # trained BAGCLIP heads
    history: list[float]  # loss per optimisation step
    out_dir: Path | None


def build_heads(cfg: Config, backbone: Backbone) -> torch.nn.Module:
    """BAGCLIP heads sized for this backbone, initialised from cfg.seed."""
    from .model import BAGCLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return BAGCLIP(cfg, width=backbone.width, embed_dim=backbone.embed_dim, grid=backbone.grid)


def save_heads(model: torch.nn.Module, cfg: Config, path: str | os.PathLike) -> Path:
    """Write the trainable weights and the Config to one safetensors file, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"bagclip_config": json.dumps(cfg.to_dict())})
    atomic_write_bytes(Path(path), blob)
    return Path(path)


def load_heads(path: str | os.PathLike, backbone: Backbone | None = None,
               device: str | torch.device | None = None):
    """(model, cfg, backbone) from a heads.safetensors file (or a run folder holding one); the
    backbone is `backbone` if given, else built from the checkpoint's Config."""
    from .backbone import load_backbone

    path = Path(path)
    if path.is_dir():
        path = path / "heads.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train first: bagclip train ...)")
    meta = safetensors_metadata(path)
    if "bagclip_config" not in meta:
        raise ValueError(f"{path} is not a bagclip heads checkpoint (no config in its metadata)")
    cfg = Config.from_dict(json.loads(meta["bagclip_config"]))
    backbone = backbone or load_backbone(cfg, device=device)
    model = build_heads(cfg, backbone)
    model.load_state_dict(load_file(path))
    return model.to(backbone.device).eval(), cfg, backbone


def class_texts(backbone: Backbone, class_names: Sequence[str], cfg: Config) -> dict[str, torch.Tensor]:
    """Folder class name -> text features (2, E), through the prompt-name map."""
    from .data import prompt_name

    names = sorted(set(class_names))
    feats = backbone.encode_text([prompt_name(c, cfg.class_names) for c in names],
                                 normalize_sentences=cfg.normalize_sentences)
    return {c: feats[i] for i, c in enumerate(names)}


def _masks(samples, idx: Sequence[int], size: int) -> torch.Tensor:
    from .data import load_mask

    return torch.stack([load_mask(samples[i].mask_path, size) for i in idx]).float()


def train(cfg: Config, samples: Sequence, backbone: Backbone, out_dir: str | os.PathLike | None = None,
          cache: FeatureCache | None = None, resume: bool = False, save_every: int | None = None,
          max_steps: int | None = None, progress: bool = True, on_step=None) -> TrainResult:
    """Train the heads on `samples` (bagclip.data.Sample with masks) and return them.

    on_step: optional callable(step, loss parts dict) after every optimisation step (the
    notebooks' live loss curve); the parts are bagclip_loss's detached scalars.

    resume: continue from out_dir's last checkpoint (an error if there is none).
    max_steps: stop after this many steps in total (simulates an interruption in tests).
    """
    from tqdm.auto import tqdm

    from .losses import bagclip_loss

    if not samples:
        raise ValueError("train: the training set is empty; check the dataset root and split")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").exists() or cfg.save(out / "config.json")
    cache = cache or FeatureCache(backbone)
    entries = cache.ensure([s.image_path for s in samples], progress=progress)
    texts = class_texts(backbone, [s.class_name for s in samples], cfg)
    labels = torch.tensor([int(s.label) for s in samples], dtype=torch.float32)
    device = backbone.device

    model = build_heads(cfg, backbone).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    history: list[float] = []
    step = 0
    if resume:
        if out is None or not (out / "state.pt").is_file():
            raise FileNotFoundError(f"nothing to resume in {out}: no state.pt (start without --resume)")
        state = torch.load(out / "state.pt", weights_only=True, map_location=device)
        saved_cfg = Config.load(out / "config.json")
        if saved_cfg != cfg:
            raise ValueError(f"--resume: {out}/config.json differs from the current settings; "
                             f"use a new out_dir or the same settings")
        model.load_state_dict(load_file(out / "heads.safetensors"))
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        history = json.loads((out / "history.json").read_text())

    n = len(samples)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch

    def checkpoint() -> None:
        if out is None:
            return
        save_heads(model, cfg, out / "heads.safetensors")
        buf = io.BytesIO()
        torch.save({"optimizer": opt.state_dict(), "step": step}, buf)
        atomic_write_text(out / "history.json", json.dumps(history))
        atomic_write_bytes(out / "state.pt", buf.getvalue())  # last: marks a complete checkpoint

    bar = tqdm(total=total, initial=step, desc="training", unit="step", disable=not progress)
    model.train()
    while step < total and (max_steps is None or step < max_steps):
        epoch, b = divmod(step, steps_per_epoch)
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size].tolist()
        tokens = cache.load_batch([entries[i] for i in idx], device)
        text = torch.stack([texts[samples[i].class_name] for i in idx]).to(device)  # (B, 2, E)
        masks = _masks(samples, idx, cfg.image_size).to(device)  # (B, S, S)
        output = model(tokens, text)
        loss, parts = bagclip_loss(output, masks, labels[idx].to(device), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history.append(loss.item())
        bar.set_postfix(epoch=epoch + 1, loss=f"{sum(history[-20:]) / len(history[-20:]):.4f}")
        bar.update(1)
        if on_step is not None:
            on_step(step, {k: float(v) for k, v in parts.items()})
        if step % steps_per_epoch == 0 or (save_every and step % save_every == 0):
            checkpoint()
    bar.close()
    checkpoint()
    model.eval()
    return TrainResult(model, history, out)
