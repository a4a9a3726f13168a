"""What a person reads: tables that wrap names between their parts, a pointer to the full list of problems only
where the list was not shown, and no TensorFlow start-up lines from the Python API."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

import warmstart
from warmstart.examples import write_example_set
from warmstart.planning.render import render_plan, render_table

START_UP_LINES = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                  "This TensorFlow binary is optimized")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def _cells(text: str) -> list[str]:
    """Every cell's text on every line of a rich table (box characters and padding removed)."""
    return [cell.strip() for line in text.splitlines() for cell in re.split(r"[│┃]", line)[1:-1] if cell.strip()]


def _rendered(render, *args, width: int) -> str:
    out = io.StringIO()
    render(*args, Console(file=out, width=width, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("width", [100, 120])
def test_plan_and_inspect_tables_wrap_names_after_a_slash_never_inside_a_part(example, width):
    plan = warmstart.plan(example.source, example.target, rules=example.rules)
    parts = {part for e in plan.entries for name in (e.target, *e.sources) for part in name.split("/")}
    shown = _rendered(render_plan, plan, width=width)
    fragments = [c for c in _cells(shown) if "/" in c or c in parts]
    cut = [f for f in fragments if any(p and p not in parts for p in f.split("/")) and " " not in f]
    assert not cut, cut  # "LayerNorm/gamm" then "a" on the next line would be here
    assert any(c.endswith("/") for c in fragments)  # names were long enough to wrap: wrapped after a '/'
    table = warmstart.read_table(example.source)
    shown = _rendered(render_table, table, width=60)
    names = {part for v in table.variables for part in v.name.split("/")}
    assert not [c for c in _cells(shown) if "/" in c and any(p and p not in names for p in c.split("/"))]


def _cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "warmstart.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def test_a_failed_plan_points_at_the_full_list_only_where_the_list_was_not_shown(example, tmp_path):
    shown = _cli("plan", example.source, example.target)  # the table lists every problem
    assert shown.returncode == 1 and "(and 35 more)" in shown.stderr and "lists all" not in shown.stderr
    assert len(re.findall(r"│ error +│", shown.stdout)) == 36
    not_shown = _cli("transfer", example.source, example.target, str(tmp_path / "out"), "--no-prefect")
    assert not_shown.returncode == 1 and "(and 35 more; --json or Plan.problems() lists all)" in not_shown.stderr
    as_json = _cli("transfer", example.source, example.target, str(tmp_path / "out"), "--no-prefect", "--json")
    assert as_json.returncode == 1 and "(and 35 more)" in as_json.stderr and "lists all" not in as_json.stderr


def _python(code: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=cwd, timeout=600)


def test_the_python_api_prints_no_tensorflow_start_up_lines(example):
    """A MetaGraph target makes the library import TensorFlow: its C++ start-up lines are held back, what else
    reaches stderr meanwhile (another thread's line) is not."""
    meta = next(p for p in os.listdir(example.target) if p.endswith(".meta"))
    code = f"""
        import sys, threading, warmstart
        threading.Timer(0.5, lambda: print("a line of the caller's", file=sys.stderr, flush=True)).start()
        plan = warmstart.plan({example.source!r}, {os.path.join(example.target, meta)!r}, rules={example.rules!r})
        assert plan.ok and "tensorflow" in sys.modules
        """
    quiet = _python(code)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "a line of the caller's\n"
    asked = _python(code, env={"TF_CPP_MIN_LOG_LEVEL": "0"})  # the user asked for TensorFlow's logs
    assert asked.returncode == 0 and all(line in asked.stderr for line in START_UP_LINES[:2]), asked.stderr


def test_a_line_another_thread_wrote_into_the_middle_of_tensorflows_is_kept_whole():
    """Another thread's text can land between TensorFlow's lines, even before its own newline: what is held back is
    exactly TensorFlow's lines, wherever they start."""
    code = """
        import os
        from warmstart._quiet import start_up_lines_dropped
        with start_up_lines_dropped():
            os.write(2, b"a line of the caller's")
            os.write(2, b"I0000 00:00:1796487438.184699   16719 cpu_feature_guard.cc:227] This TensorFlow binary "
                        b"is optimized to use available CPU instructions.\\n")
            os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild.\\n")
            os.write(2, b"\\nand its next line\\n")
        """
    done = _python(code)
    assert done.returncode == 0 and done.stderr == "a line of the caller's\nand its next line\n", done.stderr


def test_tensorflow_imported_by_the_user_first_is_left_alone(example):
    code = f"""
        import tensorflow, warmstart
        warmstart.plan({example.source!r}, {example.target!r}, rules={example.rules!r})
        """
    done = _python(code)
    assert done.returncode == 0 and START_UP_LINES[1] in done.stderr  # their import, their lines


def test_writing_the_examples_prints_no_tensorflow_start_up_lines(tmp_path):
    done = _python(f"from warmstart.examples import write_example_set; write_example_set({str(tmp_path)!r})")
    assert done.returncode == 0, done.stderr
    assert not any(line in done.stderr for line in START_UP_LINES), done.stderr
