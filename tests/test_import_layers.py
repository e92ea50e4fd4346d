"""The one-way layering config -> data/sampling -> model -> hpo -> benchmark, read off the
source: every ``admet`` import of every module (top-level and inside functions) must point
to a layer its own layer may use, and the import graph of modules has no cycle: neither
at module level nor counting the imports inside functions (and under ``TYPE_CHECKING``),
which only hide a cycle from Python, not from the next reader."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import admet

SRC = Path(admet.__file__).parent
# Foundation modules every layer may use; they import nothing from admet but each other.
BASE = {"errors", "interrupt", "paths", "redact", "_lazy", "_compat"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_lazy": set(),
    # adapters for private APIs of torch, Lightning, Chemprop and MLflow
    "_compat": set(),
    "paths": set(),
    "redact": set(),
    "interrupt": set(),
    "tracking_server": set(),
    "tracking": BASE | {"tracking_server"},
    "config": {"errors", "_lazy", "paths"},
    "data": BASE | {"config"},
    "sampling": BASE | {"config"},
    "model": BASE | {"config", "data", "sampling", "tracking", "tracking_server"},
    "hpo": BASE | {"config", "data", "sampling", "model", "tracking", "tracking_server"},
    "benchmark": BASE | {"config", "data", "model", "hpo"},
    # the console script dispatches to every area's __main__
    "cli": {"config", "data", "model", "hpo", "benchmark"},
    "__init__": set(),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        yield module_name(path), path


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def admet_imports(path: Path, module: str, top_level_only: bool = False) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "admet":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "admet":
                continue
            # ``from admet.x import y`` may import submodule ``admet.x.y``
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (
                    node.lineno,
                    sub
                    if (SRC.parent / sub.replace(".", "/")).exists()
                    or (SRC.parent / (sub.replace(".", "/") + ".py")).exists()
                    else target,
                )


def test_every_import_follows_the_layer_rules():
    problems = []
    for module, path in modules():
        own = layer(module)
        assert own in ALLOWED, f"{module}: module outside the known layers; add it to ALLOWED"
        for line, target in admet_imports(path, module):
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                problems.append(f"{path.relative_to(SRC.parent)}:{line}: {own} -> {other} ({target})")
    assert not problems, "imports against the layer rules:\n" + "\n".join(problems)


def test_the_rule_checker_sees_a_violation(tmp_path):
    """The checker is not vacuous: an upward import is reported."""
    bad = tmp_path / "admet" / "config" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from admet.model import ChempropModel\n")
    found = [t for _, t in admet_imports(bad, "admet.config.bad")]
    assert found == ["admet.model"] and layer(found[0]) not in ALLOWED["config"]


def private_imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Imports by ``module`` of a package's private module (``admet.x._y``, ``admet.x.y._z``)
    from outside that package. ``admet._compat`` and ``admet._lazy`` are foundations every
    layer uses, and dunder modules (``__main__``) are not private."""
    for line, target in admet_imports(path, module):
        parts = target.split(".")
        for i in range(2, len(parts)):
            if parts[i].startswith("_") and not parts[i].startswith("__"):
                owner = ".".join(parts[:i])
                if module != owner and not module.startswith(owner + "."):
                    yield line, target
                break


def test_private_modules_are_imported_only_inside_their_package():
    """A package laid out as ``optuna.storages`` (``admet.hpo.storage``,
    ``admet.config.legacy``) is used through its ``__init__``; only its own modules import
    its private ones."""
    problems = [
        f"{path.relative_to(SRC.parent)}:{line}: {target}"
        for module, path in modules()
        for line, target in private_imports(path, module)
    ]
    assert not problems, "private modules imported from outside their package:\n" + "\n".join(problems)


def test_the_private_import_checker_sees_one(tmp_path):
    bad = tmp_path / "admet" / "hpo" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from admet.config.legacy._keys import apply_legacy\nfrom admet._compat import x\n")
    assert [t for _, t in private_imports(bad, "admet.hpo.bad")] == ["admet.config.legacy._keys"]
    inside = [t for _, t in private_imports(bad, "admet.config.legacy._migrate")]
    assert inside == []


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    """Module -> the ``admet`` modules it imports (a name imported from a package counts
    as the package)."""
    graph = {}
    names = {m for m, _ in modules()}
    for module, path in modules():
        deps = set()
        for _, target in admet_imports(path, module, top_level_only=top_level_only):
            while target not in names and "." in target:
                target = target.rpartition(".")[0]
            if target != module:
                deps.add(target)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path (first node repeated at the end), or [].
    A package's ``__init__`` importing its own
    submodules (re-exports from its private modules) is not a cycle."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str]:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                path = [*stack, node]
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep, [*stack, node])):
                return cycle
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return []


def test_module_level_imports_have_no_cycle():
    cycle = find_cycle(import_graph(top_level_only=True))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_imports_inside_functions_make_no_cycle_either():
    """Counting imports inside functions and under ``TYPE_CHECKING`` too, there is no cycle."""
    cycle = find_cycle(import_graph(top_level_only=False))
    assert not cycle, "import cycle (imports inside functions included): " + " -> ".join(cycle)


def test_the_cycle_checker_sees_a_cycle_through_a_function_local_import(tmp_path):
    """The checker is not vacuous: an import inside a function that closes a loop is
    reported, and a package re-exporting its own private modules is not."""
    pkg = tmp_path / "admet" / "hpo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from admet.hpo.pkg._a import f\n")
    (pkg / "_a.py").write_text("from admet.hpo.pkg._b import g\n\ndef f():\n    return g()\n")
    (pkg / "_b.py").write_text("def g():\n    from admet.hpo.pkg._a import f\n    return f\n")
    files = {
        "admet.hpo.pkg": pkg / "__init__.py",
        "admet.hpo.pkg._a": pkg / "_a.py",
        "admet.hpo.pkg._b": pkg / "_b.py",
    }
    graph = {m: {t for _, t in admet_imports(p, m)} for m, p in files.items()}
    top = {m: {t for _, t in admet_imports(p, m, top_level_only=True)} for m, p in files.items()}
    assert not find_cycle(top)
    assert find_cycle(graph) == ["admet.hpo.pkg._a", "admet.hpo.pkg._b", "admet.hpo.pkg._a"]


def test_config_and_sampling_do_not_import_lightning(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "joint_sampling:\n  enabled: true\n  curriculum:\n    enabled: true\nensemble:\n  n_members: 2\n"
    )
    code = (
        "import sys, admet.config\n"
        f"cfg = admet.config.load_config({str(cfg)!r})\n"
        "assert cfg.joint_sampling.curriculum.enabled\n"
        "heavy = sorted(m for m in ('lightning', 'torch', 'chemprop') if m in sys.modules)\n"
        "import admet.sampling\n"
        "light = 'lightning' in sys.modules or 'lightning.pytorch' in sys.modules\n"
        "print(heavy, light)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "False"], out.stdout


@pytest.mark.slow
def test_names_of_the_removed_chemprop_package_live_at_their_new_homes():
    """``admet.model.chemprop`` (the pre-0.1.0 home of model, samplers and schema) is gone;
    each of its names is imported from where the README says it lives now."""
    code = (
        "import importlib.util\n"
        "assert importlib.util.find_spec('admet.model.chemprop') is None\n"
        "from admet.sampling import JointSampler\n"
        "from admet.model import ChempropModel, ChempropEnsemble, CurriculumCallback\n"
        "from admet.errors import TrainingDivergedError\n"
        "from admet.config import CurriculumPhaseConfig, phases_for\n"
        "from admet.redact import mask_url\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("package", ["config", "data", "sampling", "model", "hpo", "benchmark"])
def test_public_names_are_declared_and_resolve(package):
    import importlib

    mod = importlib.import_module(f"admet.{package}")
    names = getattr(mod, "__all__", None)
    assert names, f"admet.{package} declares no __all__"
    for name in names:
        assert getattr(mod, name) is not None, f"admet.{package}.{name}"
