"""``warmstart transfer`` as a user runs it: the engine in process by default, the Prefect flow when an
API is configured or ``--prefect`` is given (the same ``--json`` document), quiet, a progress bar only
on a terminal, exit codes in ``--help``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from servers import run_on_terminal

from warmstart.examples import write_example_set


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def cli_env(tmp_path, **extra):
    """No Prefect API: neither in the environment nor in a profile (a Prefect home of its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect-home"), **extra}


def transfer(example, out, *flags, env):
    return subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", example.source, example.target, str(out),
                           "--rules", example.rules, *flags], capture_output=True, text=True, env=env, timeout=300)


def test_without_a_prefect_api_the_engine_runs_quietly_in_process(example, tmp_path):
    done = transfer(example, tmp_path / "out", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: wrote") and done.stderr == ""  # no server start-up, no progress when piped
    doc = json.loads(transfer(example, tmp_path / "out2", "--json", env=cli_env(tmp_path)).stdout)
    assert doc["flow_run"] is None and doc["status"] == "ok"


def test_the_flow_gives_the_same_json_document(example, tmp_path):
    engine = json.loads(transfer(example, tmp_path / "engine", "--json", env=cli_env(tmp_path)).stdout)
    done = transfer(example, tmp_path / "flow", "--json", "--prefect", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    flow = json.loads(done.stdout)
    assert sorted(flow) == sorted(engine)
    assert flow["flow_run"] and engine["flow_run"] is None
    for key in ("status", "counts", "coverage", "variables", "strategy", "keras_weights", "transferred_bytes"):
        assert flow[key] == engine[key], key
    assert flow["checkpoint"].endswith("/flow/model.ckpt") and engine["checkpoint"].endswith("/engine/model.ckpt")
    assert "Starting temporary server" not in done.stderr  # Prefect's console chatter stays off


def test_a_configured_prefect_profile_selects_the_flow(tmp_path, monkeypatch):
    from warmstart.cli_flow import prefect_api_configured as _prefect_api_configured

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    assert not _prefect_api_configured()
    (home / "profiles.toml").write_text('active = "prod"\n[profiles.prod]\n'
                                        'PREFECT_API_URL = "http://prefect:4200/api"\n'
                                        '[profiles.local]\n')
    assert _prefect_api_configured()
    monkeypatch.setenv("PREFECT_PROFILE", "local")
    assert not _prefect_api_configured()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert _prefect_api_configured()


def test_tensorflow_start_up_lines_are_not_printed(tmp_path):
    """A target TF must build (a .keras model, the assign strategy): TF's absl/oneDNN lines stay off."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(tmp_path / "m.weights.h5"),
                           str(tmp_path / "m.keras"), str(tmp_path / "out"), "--strategy", "assign"],
                          capture_output=True, text=True, env=cli_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    verbose = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(tmp_path / "m.weights.h5"),
                              str(tmp_path / "m.keras"), str(tmp_path / "out-v"), "--strategy", "assign", "-v"],
                             capture_output=True, text=True, env=cli_env(tmp_path), timeout=300)
    assert "running the engine directly" in verbose.stderr


def test_a_progress_bar_on_a_terminal(example, tmp_path):
    """stderr a terminal (a pseudo-terminal here): bytes (binary units), rate and ETA are drawn; piped (above):
    nothing. The same bar follows the flow's transfer task when the flow runs (--prefect)."""
    for mode in ((), ("--prefect",)):
        code, out, text = run_on_terminal([sys.executable, "-m", "warmstart.cli", "transfer", example.source,
                                         example.target, str(tmp_path / f"out{len(mode)}"), "--rules", example.rules,
                                         *mode], env=cli_env(tmp_path, COLUMNS="120"))
        assert code == 0, text[-2000:]
        assert "copying" in text and "/s" in text and "KiB" in text, (mode, text[-2000:])
    assert "; flow run " in out and "Prefect's temporary server" in out  # where the run was, on the summary line


def test_help_lists_the_exit_codes():
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", "--help"], capture_output=True, text=True)
    assert "exit codes:" in done.stdout and "4  a storage or output error" in done.stdout
    assert "--prefect" in done.stdout and "--verbose" in done.stdout
