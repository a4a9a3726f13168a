"""A wheel built from the repository is the product: it installs into a fresh virtual environment, claims no
bare top-level ``flows`` or ``tasks`` package, runs ``warmstart transfer --prefect`` and serves the deployments'
entrypoints from its own files (not from this checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from warmstart.examples import write_example_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the repository's files (a build leaves build/ and *.egg-info/ where it runs)."""
    import shutil

    src, out = tmp_path_factory.mktemp("src") / "warmstart", tmp_path_factory.mktemp("dist")
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                              "warmstart-demo", "work"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    return next(out.glob("warmstart-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (the machine's packages visible for TensorFlow, Prefect and the rest: nothing downloaded)
    with the wheel installed."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True)
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True)
    return root


def test_the_wheel_holds_the_prefect_layer_inside_the_warmstart_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"warmstart"}, top
    assert "warmstart/flows/warm_start.py" in names and "warmstart/tasks/validate.py" in names
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["warmstart"]


def _in_venv(venv: Path, cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect"), "PREFECT_API_URL": "",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def test_the_installed_flow_and_tasks_come_from_the_venv_and_no_bare_names_exist(venv, tmp_path):
    code = ("import importlib.util, warmstart.flows.warm_start as f, warmstart.tasks as t; "
            "print(f.__file__); print(t.__file__); "
            "print(importlib.util.find_spec('flows'), importlib.util.find_spec('tasks'))")
    run = _in_venv(venv, tmp_path, str(venv / "bin" / "python"), "-c", code, check=True)
    flow_file, tasks_file, bare = run.stdout.splitlines()
    assert flow_file.startswith(str(venv)) and tasks_file.startswith(str(venv)), run.stdout
    assert bare == "None None"


def test_the_installed_cli_runs_the_flow_and_the_deployments_entrypoints_load(venv, tmp_path):
    example = write_example_set(tmp_path / "data")
    run = _in_venv(venv, tmp_path, str(venv / "bin" / "warmstart"), "transfer", example.source, example.target,
                   str(tmp_path / "out"), "--rules", example.rules, "--prefect", "--json", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)
    assert doc["status"] == "ok" and doc["flow_run"] and len(doc["digest"]) == 64
    assert (tmp_path / "out" / "checkpoint").is_file()
    entrypoints = sorted({d["entrypoint"] for d in yaml.safe_load(
        (REPO / "deployments" / "prefect.yaml").read_text())["deployments"]})
    assert entrypoints == ["warmstart.flows.warm_start.warm_start"]
    code = ("import sys; from prefect.utilities.importtools import import_object; "
            "f = import_object(sys.argv[1]); import inspect; print(f.name, inspect.getfile(f.fn))")
    run = _in_venv(venv, tmp_path, str(venv / "bin" / "python"), "-c", code, entrypoints[0], check=True)
    name, path = run.stdout.split()
    assert name == "warm-start" and path.startswith(str(venv))
