"""What the artefacts of one `reproduce` share: the data, the backbone and its cache, where the
runs live, and the results several artefacts need (computed once, on first use).

Rows come from runs on one feature cache and one set of metrics:
    BAG-CLIP (ours)                          the heads, trained per seed
    APRIL-GAN-style (our re-implementation)  the same heads with SAFR and SAG off: a linear
                                             projection of each tap's patch tokens
    WinCLIP-style (our re-implementation)    `bagclip.zeroshot.ZeroShot`: nothing trained
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..metrics import METRIC_KEYS

log = logging.getLogger("bagclip.artefacts")

OURS = "BAG-CLIP (ours)"
APRIL = "APRIL-GAN-style linear projection (our re-implementation)"
WINCLIP = "WinCLIP-style zero-shot (our re-implementation, training-free)"
METHODS = {OURS: {}, APRIL: {"use_safr": False, "use_sag": False}}  # trained, per seed
PAPER_VALUES = {"k": 15, "gcn_layers": 5}  # the paper's defaults, marked on Figures 5-6


def _winclip(backbone):
    from ..zeroshot import ZeroShot

    return ZeroShot(backbone)


# The training-free baselines, one row each in Tables 1-3 and a column in Figure 3: name ->
# factory(backbone) of a scorer with the heads' contract (forward(tokens, text) -> Output).
# A new baseline scorer is one line here (and its module).
TRAINING_FREE = {WINCLIP: _winclip}


@dataclass
class Context:
    """One reproduce's setting. `summary` collects what results.json records."""
    cfg: Any  # Config; seeds replace cfg.seed per run
    aux: list  # auxiliary (training) samples
    targets: dict  # target set -> samples
    backbone: Any
    cache: Any  # FeatureCache
    out: Path  # runs folder (runs/, cost/, protocol.csv, ...)
    figs: Path  # artefacts folder
    label: str  # what the numbers are, on every table and figure
    seeds: list[int]
    grid_seeds: list[int]
    sweeps: Mapping[str, Sequence]  # param -> values (Figures 5-6)
    run_kw: dict = field(default_factory=dict)  # progress, executor, slurm
    summary: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)  # results shared by two artefacts (the cost tables)

    @property
    def target(self) -> list:
        """Every target sample, the sets in order."""
        return [s for samples in self.targets.values() for s in samples]

    def run_settings(self, settings: Mapping[str, dict], seeds: Sequence[int]) -> pd.DataFrame:
        """runs.run_settings on this context's data, runs shared under out/runs/<run_key>."""
        from ..runs import run_settings

        return run_settings(self.cfg, settings, self.aux, self.targets, seeds, backbone=self.backbone,
                            cache=self.cache, runs_root=self.out / "runs", **self.run_kw)

    @cached_property
    def _zero_shot(self) -> tuple[pd.DataFrame, dict]:
        """The training-free scorers on every target set: run_settings' long form (seed -1) and
        their per-image records {name: {dataset: record}}."""
        from ..evaluate import evaluate_recorded

        rows, records = [], {}
        for name, make in TRAINING_FREE.items():
            zs = make(self.backbone)
            for ds, samples in self.targets.items():
                m, records.setdefault(name, {})[ds] = evaluate_recorded(zs, self.cfg, self.backbone, self.cache,
                                                                         samples)
                rows.append({"setting": name, "seed": -1, "dataset": ds, **{k: float(m[k]) for k in METRIC_KEYS}})
        return pd.DataFrame(rows, columns=["setting", "seed", "dataset", *METRIC_KEYS]), records

    @property
    def zero_shot(self) -> pd.DataFrame:
        return self._zero_shot[0]

    def results(self, settings: Mapping[str, dict], seeds: Sequence[int]) -> dict:
        """{setting: {dataset: compare.Results}} of finished runs (run_settings first) over
        seeds, and of the training-free scorers named in settings (one "seed"); built once per
        run (its Config changes and seeds, whatever the setting's name) and kept: each run's
        bootstrap values are then computed once per metric, for every table and figure."""
        from ..compare import Results
        from ..runs import plan_runs, run_records

        out, todo = {}, {}
        for name, changes in settings.items():
            key = ("free", name) if name in TRAINING_FREE else ("runs", tuple(sorted(changes.items())), tuple(seeds))
            if key in self.memo:
                out[name] = self.memo[key]
            elif name in TRAINING_FREE:
                out[name] = self.memo[key] = {ds: Results.from_records([r]) for ds, r in self._zero_shot[1][name].items()}
            else:
                todo[name] = (key, changes)
        if todo:
            jobs = plan_runs(self.cfg, {n: c for n, (_, c) in todo.items()}, self.aux, self.targets, seeds,
                             runs_root=self.out / "runs")
            recs = run_records(jobs, self.aux, self.targets, self.backbone, self.cache)
            for name, (key, _) in todo.items():
                out[name] = self.memo[key] = {ds: Results.from_records(r) for ds, r in recs[name].items()}
        return {name: out[name] for name in settings}

    @cached_property
    def protocol(self) -> pd.DataFrame:
        """Tables 1-2's runs: our methods x seeds, and the training-free scorer."""
        from ..report import save_frame

        log.info(f"\nTables 1-2: {list(METHODS)} x seeds {list(self.seeds)}, and {WINCLIP}")
        both = pd.concat([self.zero_shot, self.run_settings(METHODS, self.seeds)], ignore_index=True)
        save_frame(both, self.out / "protocol.csv")
        self.summary["protocol"] = both.to_dict(orient="records")
        return both

    def sweep(self, param: str) -> pd.DataFrame:
        """Figure 5 / 6's runs: param over its values x grid seeds."""
        from ..sweeps import sweep

        values = self.sweeps[param]
        log.info(f"\nsensitivity: {param} in {list(values)} x seeds {list(self.grid_seeds)}")
        d = sweep(self.cfg, param, values, self.aux, self.targets, self.grid_seeds,
                  backbone=self.backbone, cache=self.cache, runs_root=self.out / "runs", **self.run_kw)
        self.summary.setdefault("sensitivity", {})[param] = d.to_dict(orient="records")
        return d

    def heads(self, **changes):
        """The trained heads of cfg (first seed) with changes, from its run (trained if needed)."""
        from ..runs import run_key, train_or_resume

        c = self.cfg.replace(seed=self.seeds[0], **changes)
        return train_or_resume(c, self.aux, self.backbone, self.out / "runs" / run_key(c, self.aux, self.targets),
                               self.cache).model.eval()

    @cached_property
    def models(self) -> dict:
        """The figures' detectors (first seed): ours, the baselines, ours without SAG / SAFR."""
        return {OURS: self.heads(), APRIL: self.heads(**METHODS[APRIL]),
                "without SAG": self.heads(use_sag=False), "without SAFR": self.heads(use_safr=False),
                **{name: make(self.backbone) for name, make in TRAINING_FREE.items()}}

    @cached_property
    def predictions(self) -> dict:
        """method -> (maps (n, S, S), scores (n,)) on every target image (the figures' maps)."""
        from ..inference import predict_all

        c = self.cfg.replace(seed=self.seeds[0])
        return {name: predict_all(m, c, self.backbone, self.cache, self.target)
                for name, m in self.models.items()}
