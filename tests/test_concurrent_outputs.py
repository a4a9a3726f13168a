"""Two and three transfers into one output at the same time, as real CLI processes: exactly one
publishes; the others exit 4 at once naming the run that holds the output (or, when the winner has
already finished, finding its output "not empty"); the published output is complete and loads with TF.
Locally (``flock`` on the marker) and on moto S3 (a create-if-absent marker with a lease). A dead run's
marker is still cleared by the next run (``test_crash_safety.py``); a live run's never is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_crash_safety import RULES, S3Outputs, _build_pair, assert_published

pytestmark = pytest.mark.slow

# Each child imports the CLI, says "ready", waits for "go" on stdin, then runs `warmstart transfer`.
CLI_CHILD = r"""
import json, sys
from warmstart.cli import main
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(json.loads(sys.argv[1])))
"""
BUSY = "is being written by another warmstart run"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrent")
    built = _build_pair(root, 11)
    (root / "rules.json").write_text(json.dumps(RULES))
    built["rules"] = root / "rules.json"
    return built


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CLI_CHILD, json.dumps(argv)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def race(n: int, argv: list[str], env: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    """``n`` CLI processes, started (imports done), then all told to go at once."""
    procs = [start(argv, env) for _ in range(n)]
    for p in procs:
        p.stdin.write("go\n")
    for p in procs:
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))
    return results


def check_one_winner(results: list[tuple[int, str, str]]) -> list[str]:
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [4] * (len(results) - 1), [(c, e[-2000:]) for c, _, e in results]
    messages = []
    for code, _, err in results:
        if code == 4:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in err, err
            assert BUSY in lines[0] or "is not empty" in lines[0], lines[0]
            messages.append(lines[0])
    return messages


@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_local_transfers_into_one_output_one_publishes_the_others_exit_4(pair, tmp_path, n):
    out = tmp_path / "out"
    argv = ["transfer", str(pair["src"]), str(pair["tpl"]), str(out), "--rules", str(pair["rules"]), "--no-prefect"]
    messages = check_one_winner(race(n, argv))
    print(messages)
    assert_published(out, pair["expected"])
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint", "model.ckpt.data-00000-of-00001", "model.ckpt.index", "warmstart.json"]


@pytest.mark.integration
@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_s3_transfers_into_one_output_one_publishes_the_others_exit_4(pair, tmp_path, s3_server,
                                                                                 s3_bucket, n):
    storage = S3Outputs(pair, tmp_path, s3_server, s3_bucket, inputs_on_s3=True)
    out = storage.output("out")
    argv = ["transfer", storage.source, storage.target, out, "--rules", str(pair["rules"]), "--no-prefect"]
    messages = check_one_winner(race(n, argv, storage.env))
    print(messages)
    storage.check_published(out)
    assert ".warmstart-incomplete" not in storage.names(out)
    storage.check_inputs_unchanged(thorough=True)


def test_a_live_runs_output_is_refused_at_once_and_left_alone(pair, tmp_path):
    """A run stopped (SIGSTOP) while it holds the output: another run fails at once naming it, and removes
    nothing; once the first is killed, its leftovers are cleared by the next run."""
    out = tmp_path / "out"
    code = f"""
import os, signal, sys
import warmstart.storage.publish as publish
real = publish.OutputDir._withdraw
def withdraw(self, names):
    real(self, names)
    os.kill(os.getpid(), signal.SIGSTOP)  # holds the output, marker and all
publish.OutputDir._withdraw = withdraw
from warmstart.cli import main
sys.exit(main(["transfer", {str(pair["src"])!r}, {str(pair["tpl"])!r}, {str(out)!r}, "--rules",
               {str(pair["rules"])!r}, "--no-prefect"]))
"""
    holder = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _stopped(holder.pid):
            assert holder.poll() is None and time.monotonic() < deadline, holder.stderr.read()
            time.sleep(0.05)
        before = sorted(p.name for p in out.iterdir())
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(pair["src"]),
                                 str(pair["tpl"]), str(out), "--rules", str(pair["rules"]), "--no-prefect"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 4 and BUSY in second.stderr and f"process {holder.pid}" in second.stderr, \
            second.stderr
        assert time.monotonic() - started < 60
        assert sorted(p.name for p in out.iterdir()) == before == [".warmstart-incomplete"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    third = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(pair["src"]), str(pair["tpl"]),
                            str(out), "--rules", str(pair["rules"]), "--no-prefect"],
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert_published(out, pair["expected"])


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
