"""Training the BAG-CLIP heads on cached backbone features (section 3.6, 4.1.3).

The backbone is frozen, so every image is encoded once into the feature cache and each epoch
reads tokens from disk. Only the heads (SAFR, SAG, JFF projections, and the global adapter
when `cfg.global_adapter`) train.

Reproducible and resumable: the heads are initialised from `cfg.seed`; the order of epoch e is
`randperm` from a generator seeded with (seed, e); there is no dropout; the CPU kernels sum in a
fixed order (see bagclip/sag.py). So a run that is interrupted and resumed from its last
checkpoint gives the same weights, bit for bit, as an uninterrupted one at the same thread count.
Checkpoints (every `save_every` steps and at each epoch end) live in `out_dir`, each file
written atomically, in this order:
    state.pt            THE resume point: weights, optimiser state, step, loss history and the
                        Config in one file (plain tensors and numbers: torch.load(weights_only=True))
    heads.safetensors   trainable weights + the Config (metadata), all `predict` needs
    history.json        loss per step (for people and plots)
    checkpoint.json     written last: the step and the SHA-256 of the three files above
An interruption anywhere (Ctrl-C, SIGKILL, a full disk) leaves the previous state.pt or the new
one, never a mix, so `--resume` continues exactly. Until the set is complete again,
checkpoint.json disagrees with heads.safetensors and `load_heads` refuses the folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save

from .backbone import Backbone
from .cache import FeatureCache
from .config import Config
from .files import atomic_write_bytes

STATE, HEADS, HISTORY, MANIFEST = "state.pt", "heads.safetensors", "history.json", "checkpoint.json"
RUN_FILES = (STATE, HEADS, HISTORY, MANIFEST)
STATE_FORMAT = 2  # 1: state.pt without weights (before issue 10); not resumable safely


@dataclass
class TrainResult:
    model: torch.nn.Module  # trained BAGCLIP heads
    history: list[float]  # loss per optimisation step
    out_dir: Path | None


def build_heads(cfg: Config, backbone: Backbone) -> torch.nn.Module:
    """BAGCLIP heads sized for this backbone, initialised from cfg.seed (and cfg.heads_init)."""
    from .model import BAGCLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BAGCLIP(cfg, width=backbone.width, embed_dim=backbone.embed_dim, grid=backbone.grid)
    if cfg.heads_init == "clip":  # start as the training-free scorer (docs/decisions.md)
        if model.safr is not None:
            model.safr.neutral_()
        for jff in model.jff:
            if jff.dim_pre:
                jff.init_from_clip(backbone.visual.ln_post.weight.float(), backbone.visual.proj.float())
    return model


def heads_blob(model: torch.nn.Module, cfg: Config) -> bytes:
    """The bytes of a heads.safetensors file: trainable weights + the Config as metadata.
    Non-finite weights are refused here, so none leaves the process (checkpoint or export)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # issue 19
        raise ValueError(f"the heads' weights are NaN or infinite ({', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}): the training diverged and nothing was "
                         f"saved. Lower lr or loss_lambda and train into a new folder")
    return save(tensors, metadata={"bagclip_config": json.dumps(cfg.to_dict())})


def save_heads(model: torch.nn.Module, cfg: Config, path: str | os.PathLike) -> Path:
    """Write the trainable weights and the Config to one safetensors file, atomically."""
    atomic_write_bytes(Path(path), heads_blob(model, cfg))
    return Path(path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_heads(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a heads file, or ValueError naming it and what to do."""
    data = path.read_bytes()
    manifest = path.parent / MANIFEST
    if path.name == HEADS and (manifest.is_file() or (path.parent / STATE).is_file()):
        try:
            want = json.loads(manifest.read_text())["files"][HEADS]
        except (OSError, ValueError, KeyError, TypeError):
            want = None
        if want != _digest(data):
            raise ValueError(f"{path} does not match {manifest} (missing or from another step): a "
                             f"checkpoint write was interrupted. Finish the run with the same "
                             f"`bagclip train ... --resume` command, then evaluate")
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or n > len(data) - 8:
            raise ValueError("header longer than the file")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
        tensors = load_bytes(data)
    except Exception as err:  # SafetensorError, JSON/Unicode errors: a truncated or foreign file
        raise ValueError(f"{path} is not a readable heads checkpoint ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:120]}); it is truncated or not a safetensors "
                         f"file. Point --checkpoint at a complete run folder, or retrain") from None
    return tensors, meta


def load_heads(path: str | os.PathLike, backbone: Backbone | None = None,
               device: str | torch.device | None = None):
    """(model, cfg, backbone) from a heads.safetensors file (or a run folder holding one); the
    backbone is `backbone` if given, else built from the checkpoint's Config.

    Refuses, with a message naming the file, a missing, truncated or foreign file, heads that
    disagree with their run folder's checkpoint.json (an interrupted write), weights that do not
    fit the Config stored with them, and non-finite weights (a diverged training).
    """
    from .backbone import load_backbone

    path = Path(path)
    if path.is_dir():
        path = path / HEADS
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train first: bagclip train ...)")
    tensors, meta = _read_heads(path)
    if "bagclip_config" not in meta:
        raise ValueError(f"{path} is not a bagclip heads checkpoint (no config in its metadata)")
    try:
        cfg = Config.from_dict(json.loads(meta["bagclip_config"]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: the settings stored in it are invalid ({err}); retrain") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}): the training "
                         f"diverged. Retrain with a lower lr")
    backbone = backbone or load_backbone(cfg, device=device)
    model = build_heads(cfg, backbone)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or str(err).splitlines()[:1]
        raise ValueError(f"{path}: its weights do not fit the settings stored in it "
                         f"({' '.join(first).strip()[:160]}); the file was altered or comes from "
                         f"another version. Retrain") from None
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
          *args, **kw) -> TrainResult:
    """Train the heads on `samples` (see `_train`), holding the run folder's lock (issue 19): a
    second process training into the same folder is refused with one line, never interleaved."""
    from .files import FolderLock

    if out_dir is None or (Path(out_dir).exists() and not Path(out_dir).is_dir()):
        return _train(cfg, samples, backbone, out_dir, *args, **kw)  # _train names the file
    with FolderLock(out_dir, what="run folder"):
        return _train(cfg, samples, backbone, out_dir, *args, **kw)


def _train(cfg: Config, samples: Sequence, backbone: Backbone, out_dir: str | os.PathLike | None = None,
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
    from .precision import autocast

    if not samples:
        raise ValueError("train: the training set is empty; check the dataset root and split")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} is a file; give a folder for the run")
        existing = [f for f in RUN_FILES if (out / f).exists()]
        if existing and not resume:
            raise ValueError(f"{out} already holds a training run ({', '.join(existing)}); "
                             f"continue it with --resume (same settings), or train into a new "
                             f"folder (or delete this one)")
        from .files import claim_output  # issue 19: never write into a folder of the user's

        claim_output(out, "run folder", legacy=lambda p: any((p / f).exists() for f in RUN_FILES),
                     setting="out")
        if not resume:
            cfg.save(out / "config.json")  # for people; resume checks the Config in state.pt
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
        if out is None or not (out / STATE).is_file():
            raise FileNotFoundError(f"nothing to resume in {out}: no {STATE} (start without --resume)")
        step, history = _resume(out / STATE, cfg, model, opt, device)

    n = len(samples)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch

    saved = None if resume else 0  # step of the last checkpoint written by this call

    def checkpoint() -> None:
        nonlocal saved
        if out is not None and saved != step:  # after a resume, always once (repairs a torn set)
            write_checkpoint(out, model, opt, cfg, step, history)
            saved = step

    model.train()
    # a context: the bar closes also on Ctrl-C, so nothing redraws it after the CLI's message
    with tqdm(total=total, initial=step, desc="training", unit="step", disable=not progress) as bar:
        while step < total and (max_steps is None or step < max_steps):
            epoch, b = divmod(step, steps_per_epoch)
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g)
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size].tolist()
            tokens = cache.load_batch([entries[i] for i in idx], device)
            text = torch.stack([texts[samples[i].class_name] for i in idx]).to(device)  # (B, 2, E)
            masks = _masks(samples, idx, cfg.image_size).to(device)  # (B, S, S)
            with autocast(cfg.heads_precision, device):
                output = model(tokens, text)
                loss, parts = bagclip_loss(output, masks, labels[idx].to(device), cfg)
            opt.zero_grad(set_to_none=True)
            value = loss.item()
            if not math.isfinite(value):
                raise ValueError(f"the loss is {value} at step {step + 1}: the training diverged "
                                 f"(nothing of this step was saved). Lower lr or loss_lambda and train "
                                 f"into a new folder")
            loss.backward()
            opt.step()
            step += 1
            history.append(value)
            bar.set_postfix(epoch=epoch + 1, loss=f"{sum(history[-20:]) / len(history[-20:]):.4f}")
            bar.update(1)
            if on_step is not None:
                on_step(step, {k: float(v) for k, v in parts.items()})
            if step % steps_per_epoch == 0 or (save_every and step % save_every == 0):
                checkpoint()

    checkpoint()
    model.eval()
    return TrainResult(model, history, out)


def write_checkpoint(out: Path, model, opt, cfg: Config, step: int, history: list[float]) -> None:
    """One checkpoint, file by file (each atomic), state.pt first and checkpoint.json last."""
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "step": step, "history": list(history),
                "config": json.dumps(cfg.to_dict()),
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict()}, buf)
    blobs = {STATE: buf.getvalue(), HEADS: heads_blob(model, cfg), HISTORY: json.dumps(history).encode()}
    for name, data in blobs.items():
        atomic_write_bytes(out / name, data)
    manifest = {"step": step, "files": {name: _digest(data) for name, data in blobs.items()}}
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())


def _resume(path: Path, cfg: Config, model, opt, device) -> tuple[int, list[float]]:
    """Load state.pt into model and opt; (step, history). Refuses, naming the file, anything
    that is not a complete state of this run."""
    restart = "start over with a new --out folder (or delete this one)"
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            TypeError) as err:
        # never suggest weights_only=False: that would run whatever code the file holds
        raise ValueError(f"cannot resume from {path}: the file is truncated, corrupt, or holds "
                         f"objects other than tensors and numbers (bagclip never unpickles those); "
                         f"{restart}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "model" not in state:
        raise ValueError(f"cannot resume from {path}: not a training state of this bagclip version "
                         f"(it lacks the weights); {restart}")
    try:
        saved = Config.from_dict(json.loads(state["config"]))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"cannot resume from {path}: its settings are unreadable ({err}); {restart}") from None
    if saved != cfg:
        diff = [f"{k}: {v!r} -> {cfg.to_dict()[k]!r}" for k, v in saved.to_dict().items()
                if cfg.to_dict()[k] != v]
        raise ValueError(f"--resume: the run in {path.parent} differs from the current settings "
                         f"({'; '.join(diff[:4])}); resume with the same settings or use a new folder")
    step, history = int(state["step"]), [float(x) for x in state["history"]]
    if len(history) != step:
        raise ValueError(f"cannot resume from {path}: {len(history)} losses for {step} steps; {restart}")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"cannot resume from {path}: its weights do not fit the settings "
                         f"({str(err).splitlines()[0][:120]}); {restart}") from None
    return step, history
