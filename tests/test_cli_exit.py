"""How the ``warmstart`` program ends: without Python's teardown when nothing needs it, with it otherwise.

Each run is the program as users start it (a fresh process through :func:`warmstart.cli.console`), with a marker
object whose ``__del__`` prints only when Python tears its modules down, and an exit handler that must run
either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from warmstart.examples import write_example_set

PROGRAM = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
class Marker:
    def __del__(self):
        print("torn down", file=sys.stderr)
marker = Marker()
{extra}
sys.argv = ["warmstart", *{argv!r}]
from warmstart.cli import console
console()
"""


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def program(argv, extra="", tmp_path=None):
    return subprocess.run([sys.executable, "-c", PROGRAM.format(argv=list(argv), extra=extra)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)


def test_a_local_transfer_ends_without_teardown_with_its_output_whole_and_exit_handlers_run(example, tmp_path):
    out = tmp_path / "out"
    done = program(["transfer", example.source, example.target, str(out), "--rules", example.rules, "--no-prefect",
                    "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"  # the whole document, through a pipe
    assert "exit handler ran" in done.stderr and "torn down" not in done.stderr
    assert (out / "checkpoint").is_file() and not list(out.glob(".warmstart-*"))


def test_a_failed_command_keeps_its_exit_code_without_teardown(example, tmp_path):
    done = program(["plan", example.source, example.target])  # no rules: the renamed scopes are missing
    assert done.returncode == 1
    assert "exit handler ran" in done.stderr and "torn down" not in done.stderr


@pytest.mark.parametrize("extra, why", [
    ("sys.path.insert(0, {tmp!r}); import users_own_module", "code of the user's own"),
    ("import threading, time; threading.Thread(target=time.sleep, args=(0.3,)).start()", "a running thread"),
])
def test_the_process_is_torn_down_when_it_holds_more_than_warmstart_s_own_work(example, tmp_path, extra, why):
    (tmp_path / "users_own_module.py").write_text("VALUE = 1\n")
    done = program(["plan", example.source, example.target, "--rules", example.rules, "--json"],
                   extra=extra.format(tmp=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    assert "exit handler ran" in done.stderr and "torn down" in done.stderr, why


def test_the_console_script_is_the_program_that_ends_this_way():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "warmstart"]
    assert script.value == "warmstart.cli:console"
