"""The engine's layout, as ARCHITECTURE.md states it: wings that import only downwards.

storage <- formats <- tables <- planning <- strategies <- verification <- pipeline <- the top (cache, CLI, demo);
``errors``, ``_version``, ``_lazy`` (a package's names imported when first used) and ``_quiet`` (TensorFlow imported
without its start-up lines) sit below everything. Inside the pipeline, modules by idea import downwards too:
strategy, inputs, manifest <- planner <- sharded, certify <- run. Every import counts, including the ones inside
functions (the engine imports TensorFlow and Prefect lazily, so most cross-module imports are there).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "warmstart"
RANK = {"errors": 0, "_version": 0, "_lazy": 0, "_quiet": 0, "storage": 1, "formats": 2, "tables": 3, "planning": 4, "strategies": 5,
        "verification": 6, "pipeline": 7}
TOP = 8  # cache, cli (and cli_args, cli_exit, cli_flow, cli_verify), demo, examples and the package itself
WINGS = ("storage", "formats", "tables", "planning", "strategies", "verification", "pipeline")
PIPELINE_RANK = {"strategy": 0, "inputs": 0, "manifest": 0, "planner": 1, "sharded": 2, "certify": 2, "run": 3}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, relative ones resolved."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # "from . import storage" imports a module; "from .storage import resolve" a name
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names] if not node.module \
                else [(node.lineno, base)]
    return found


def _rank(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "warmstart" or len(parts) == 1:
        return TOP
    return RANK.get(parts[1], TOP)


def _engine_modules() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_the_engine_has_its_wings_and_no_loose_modules_beyond_the_top():
    loose = sorted(p.name for p in ENGINE.glob("*.py"))
    assert loose == ["__init__.py", "_lazy.py", "_quiet.py", "_version.py", "cache.py", "cli.py", "cli_args.py", "cli_exit.py", "cli_flow.py", "cli_verify.py", "demo.py", "errors.py",
                     "examples.py"], loose
    for wing in WINGS:
        assert (ENGINE / wing / "__init__.py").is_file(), wing


@pytest.mark.parametrize("path", _engine_modules(), ids=lambda p: str(p.relative_to(ENGINE)))
def test_every_engine_module_imports_only_its_own_wing_or_wings_below(path: Path):
    own = _rank(_module_name(path))
    upward = [f"line {line}: {module}" for line, module in _imports(path)
              if module.startswith("warmstart") and _rank(module) > own]
    assert not upward, f"{path.relative_to(ENGINE)} (rank {own}) imports upwards: {upward}"


@pytest.mark.parametrize("path", sorted((ENGINE / "pipeline").glob("*.py")), ids=lambda p: p.name)
def test_the_pipeline_modules_import_downwards_by_idea(path: Path):
    own = PIPELINE_RANK.get(path.stem, len(PIPELINE_RANK))  # __init__ re-exports them all
    upward = [f"line {line}: {module}" for line, module in _imports(path)
              if module.startswith("warmstart.pipeline.") and PIPELINE_RANK[module.split(".")[2]] > own]
    assert not upward, f"pipeline/{path.name} imports upwards: {upward}"


def test_no_module_is_over_450_lines():
    long = [f"{p.relative_to(ENGINE)}: {n}" for p in _engine_modules()
            if (n := len(p.read_text().splitlines())) > 450]
    assert not long, long


@pytest.mark.parametrize("path", _engine_modules(), ids=lambda p: str(p.relative_to(ENGINE)))
def test_no_wing_imports_prefect_or_the_pipeline_packages(path: Path):
    if _rank(_module_name(path)) == TOP:
        return  # the CLI's --prefect mode and the demo run the flow (lazily)
    bad = [f"line {line}: {m}" for line, m in _imports(path)
           if m.split(".")[0] == "prefect" or m.startswith(("warmstart.flows", "warmstart.tasks"))]
    assert not bad, f"{path.relative_to(ENGINE)}: {bad}"


def test_importing_every_wing_imports_neither_tensorflow_nor_prefect():
    code = ("import sys, warmstart, warmstart.pipeline, warmstart.cache, warmstart.cli, "
            + ", ".join(f"warmstart.{w}" for w in WINGS)
            + "; print(sorted(m for m in ('tensorflow', 'keras', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_tasks_use_only_public_engine_modules():
    tasks = Path(__file__).resolve().parent.parent / "tasks"
    private = [f"{p.name}: {m}" for p in tasks.glob("*.py") for _, m in _imports(p)
               if m.startswith("warmstart") and any(part.startswith("_") for part in m.split(".")[1:])]
    assert not private, private
