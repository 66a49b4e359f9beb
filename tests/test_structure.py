"""The package's shape: imports point one way (down the README's layer order), no module or
function too long to read in one sitting, the config needs no torch, one list of what changes
the backbone's tokens, and every notebook equal to what tools/mknb.py builds from its source."""
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


ROOT = PKG.parent

# The README's layout, bottom first: a module imports only from units above it in this list
# (a unit is a top-level module or subpackage of bagclip; inside a unit, the cycle test rules).
LAYERS = [
    "files", "errors", "budget", "weights", "paper", "metrics", "conformal", "aupro_cflow", "prompts",  # no torch
    "config",  # one Config, no torch
    "data",  # loaders, protocol, synthetic benchmark
    "fingerprint",  # what a run's inputs were; refusals of repeated names and seeds
    "precision", "backbone", "cache",  # image -> tokens
    "safr", "sag", "jff", "losses", "model", "zeroshot", "checkpoint",  # heads and their files
    "train", "inference", "adapt", "pretrain_losses", "pretrain",  # training; maps; adapted heads; the miniature
    "evaluate", "calibrate",  # metrics of a detector; its thresholds from normal images
    "runs",  # one run per (Config, seed), keyed, resumable
    "report", "analysis", "compare", "cost",  # tables, lesson analysis, paired bootstrap, Tables 4-5
    "viz",  # drawing only
    "sweeps", "artefacts", "experiments", "course",  # grids, reproduce, lessons
    "cli",
]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 60


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (packages by their __init__). A
    subpackage that fails to import fails here, never silently skipped."""
    out = {"bagclip": PKG / "__init__.py"}
    failed = []
    for info in pkgutil.walk_packages([str(PKG)], prefix="bagclip.", onerror=failed.append):
        path = PKG.joinpath(*info.name.split(".")[1:])
        out[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    assert not failed, f"subpackages that fail to import: {failed}"
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


def _unit(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """"a -> b" for every import from a unit to a unit at or below it in LAYERS (the same
    unit is fine)."""
    rank = {u: i for i, u in enumerate(LAYERS)}
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if m != "bagclip" for d in deps
                  if _unit(d) != _unit(m) and d != "bagclip" and rank[_unit(d)] > rank[_unit(m)])


def test_layer_finder_finds_upward_imports():
    assert upward_imports({"bagclip.files": {"bagclip.cli"}, "bagclip.cli": {"bagclip.files"}}) == [
        "bagclip.files -> bagclip.cli"]


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _modules() if m != "bagclip"}
    assert units == set(LAYERS), (sorted(units - set(LAYERS)), sorted(set(LAYERS) - units))


def test_imports_go_down_the_layers():
    """The README's layer order, asserted: nothing imports from a layer above it (e.g. nothing
    below training imports train, nothing but the CLI imports the CLI)."""
    up = upward_imports(import_graph())
    assert not up, "\n".join(up)


def test_no_module_or_function_too_long():
    """At most MAX_MODULE_LINES per module and MAX_FUNCTION_LINES per function (methods too):
    each reads in one sitting."""
    long = []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} (line {node.lineno}): {n} lines")
    assert not long, "\n".join(long)


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]


NOTEBOOK_SOURCES = sorted([*(ROOT / "notebooks" / "src").glob("*.py"),
                           *(ROOT / "notebooks" / "solutions" / "src").glob("*.py")])


@pytest.mark.parametrize("src", NOTEBOOK_SOURCES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_notebook_equals_its_source(src):
    """notebooks/X.ipynb is what `python tools/mknb.py notebooks/src/X.py` builds (cell ids
    aside: nbformat draws them at random), committed without outputs; the same for the
    solutions in notebooks/solutions/ and their sources in notebooks/solutions/src/."""
    nbformat = pytest.importorskip("nbformat")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import mknb
    finally:
        sys.path.pop(0)
    built = mknb.build(src.read_text())
    nb_path = src.parent.parent / f"{src.stem}.ipynb"
    committed = nbformat.read(nb_path, as_version=4)
    assert _cells(committed) == _cells(built), f"rebuild: python tools/mknb.py {src} {nb_path}"
    assert committed.metadata.get("kernelspec") == built.metadata["kernelspec"]
    for c in committed.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{src.stem}: committed with outputs"


def test_every_lesson_with_exercises_has_its_solutions():
    """Lessons 00-04, 06, 10 and 11 have an instructor's key in notebooks/solutions/ (same stem),
    and every lesson that has one points to it and tags each exercise with time and difficulty."""
    import re

    keyed = {p.stem for p in (ROOT / "notebooks" / "solutions" / "src").glob("*.py")}
    for stem in ("00_zero_shot_ad", "01_backbone", "02_bsa_safr", "03_sag", "04_propagation_jff",
                 "06_metrics", "10_costs", "11_scores_to_decisions"):
        assert stem in keyed, stem
        text = (ROOT / "notebooks" / "src" / f"{stem}.py").read_text()
        assert f"notebooks/solutions/{stem}.ipynb" in text, stem
        header = text.split("# %%", 2)[1]
        assert re.search(r"About \d+ minutes", header) and "Difficulty:" in header, stem
        exercises = re.findall(r"^# (\d)\. (.*)$", text.split("## Exercises", 1)[1], re.M)
        assert exercises and all(re.match(r"\*\(\d+ min, (easy|medium|hard)", e) for _, e in exercises), stem


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


def test_architecture_lookup_is_cached_and_independent_of_open_clip_imports():
    """Read once per name from the JSON files; importing open_clip changes nothing."""
    code = ("import sys; from bagclip.config import Config, backbone_arch; a = backbone_arch('ViT-B-16'); "
            "[Config() for _ in range(5)]; hits = backbone_arch.cache_info().hits; import open_clip; "
            "backbone_arch.cache_clear(); print(a == backbone_arch('ViT-B-16'), hits > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]


def test_coercion_follows_the_type_not_its_spelling():
    from bagclip.config import ConfigError
    from bagclip.config.coerce import coerce

    assert coerce("x", list[int], "1, 2") == [1, 2]  # a list[int] field would work
    assert coerce("x", tuple[int, ...], [3]) == (3,)
    assert coerce("x", int | None, "none") is None and coerce("x", float | None, "1e-3") == 1e-3
    assert coerce("x", dict[str, str], None) == {}
    with pytest.raises(ConfigError, match="whole number"):
        coerce("x", list[int], [1.5])


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


@pytest.mark.parametrize("page", ["docs/adapt.md", "docs/v3-reproduce/adapt.md"])
def test_docs_adapt_csv_holds_the_numbers_of_the_page_table(page):
    """benchmarks/adapt.py --write-docs writes a page's table and its .csv in one run; lesson 11
    counts verdicts from docs/adapt.csv, so the two must agree cell for cell."""
    import csv
    import re

    page = ROOT / page
    csv_path = page.with_suffix(".csv")
    page = page.read_text(encoding="utf-8")
    table = page.split("<!-- adapt-table:begin -->")[1].split("<!-- adapt-table:end -->")[0]
    cells = re.findall(r"\| ([\w]+) \| [^|]+ \| (-?\d+\.\d) \| (-?\d+\.\d) \| ([+-]\d+\.\d) \[(-?\d+\.\d), "
                       r"(-?\d+\.\d)\] (effect|no evidence) \| (-?\d+\.\d) \| (-?\d+\.\d) \| ([+-]\d+\.\d) "
                       r"\[(-?\d+\.\d), (-?\d+\.\d)\] (effect|no evidence) \|", table)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(cells) > 0
    for row, (cls, *vals) in zip(zip(rows[::2], rows[1::2]), cells):
        for r, (zs, ad, d, lo, hi, verdict) in zip(row, (vals[:6], vals[6:])):
            assert r["class"] == cls and r["verdict"] == verdict
            for key, shown in zip(("zero_shot", "adapted", "difference", "low", "high"), (zs, ad, d, lo, hi)):
                assert abs(float(r[key]) - float(shown)) <= 0.056, (cls, key)  # 2 decimals vs 1
    assert [r["metric"] for r in rows[:2]] == ["image_auroc", "pixel_auroc"]
