"""The package's shape: imports point one way, the config needs no torch, one list of what
changes the backbone's tokens."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bagclip
from bagclip import Config

PKG = Path(bagclip.__file__).parent


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (packages by their __init__)."""
    out = {"bagclip": PKG / "__init__.py"}
    for info in pkgutil.walk_packages([str(PKG)], prefix="bagclip."):
        path = PKG.joinpath(*info.name.split(".")[1:])
        out[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the bagclip modules it imports anywhere (top level or inside functions).
    `from X import name` counts as importing X.name when that is a module, else X."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "bagclip"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                if base.split(".")[0] != "bagclip":
                    continue
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_lazy_imports():
    g = import_graph()
    assert "bagclip.inference" in g["bagclip.evaluate"]  # inside evaluate_cached
    assert "bagclip.data.io" in g["bagclip.data.datasets"]  # relative, one level up


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_config_imports_and_builds_without_torch():
    code = ("import sys; import bagclip.config as c; cfg = c.Config(); q = c.Config.quick(); "
            "cfg.save(sys.argv[1]); assert c.Config.load(sys.argv[1]) == cfg; "
            "print(cfg.grid, q.grid, 'torch' in sys.modules)")
    tmp = Path(__file__).parent / ".no_torch_cfg.json"
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True,
                             check=True).stdout.split()
    finally:
        tmp.unlink(missing_ok=True)
    assert out == ["37", "14", "False"]  # ViT-L-14-336 at 518, bagclip-mini at 224


def test_architecture_lookup_equals_open_clip():
    import open_clip

    from bagclip.config import backbone_arch, register_model_configs

    register_model_configs()
    for name in ("ViT-L-14-336", "ViT-B-16", "bagclip-tiny"):
        v = open_clip.get_model_config(name)
        arch = backbone_arch(name)
        assert (arch.patch_size, arch.depth, arch.width, arch.embed_dim) == (
            v["vision_cfg"]["patch_size"], v["vision_cfg"]["layers"], v["vision_cfg"]["width"], v["embed_dim"])
    assert backbone_arch("no-such-model") is None


def test_submodules_reachable_from_the_package():
    for name in _modules():
        if name.count(".") == 1:
            assert getattr(bagclip, name.split(".")[1]).__name__ == name
    with pytest.raises(AttributeError):
        bagclip.no_such_thing


def test_backbone_fields_are_the_ones_that_change_tokens(tiny_backbone, tmp_path):
    """The cache key, the identity written beside the features and the settings the sweeps
    refuse all come from Config.backbone_fields()."""
    from bagclip.cache import FeatureCache
    from bagclip.runs import run_settings

    fields = Config.backbone_fields()
    assert {"backbone", "pretrained", "image_size", "taps", "feature_dtype", "tap_ln_post"} <= set(fields)
    assert not {"k", "seed", "gcn_layers", "global_adapter", "seg_loss"} & set(fields)
    cache = FeatureCache(tiny_backbone, tmp_path)
    ident = json.loads((cache.dir / "identity.json").read_text())
    assert set(fields) <= set(ident)
    assert tiny_backbone.cfg.replace(k=5).backbone_identity() == tiny_backbone.cfg.backbone_identity()
    for name in fields:
        with pytest.raises(ValueError, match="changes the backbone"):
            run_settings(tiny_backbone.cfg, {"x": {name: getattr(tiny_backbone.cfg, name)}}, ["a"],
                         {"t": ["b"]}, backbone=tiny_backbone)
