"""deployments/prefect.yaml and deployments/serve.py against a real Prefect server, work pool and worker.

One module-scoped stack: ``prefect server start`` (SQLite, temp PREFECT_HOME), the ``process`` work pool
``warmstart-pool``, ``prefect deploy --all`` of the project file, and ``prefect worker start``; each a
subprocess in its own process group, killed at the end. No mocks: runs go through the REST API the UI
uses, ``run_deployment``, and an emitted ``checkpoint.created`` event. Failures show the log tails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from warmstart.examples import ExampleSet, write_example_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
POOL = "warmstart-pool"
FLOW = "warm-start"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RUN_TIMEOUT = 180.0  # a run takes ~5-15 s here (process start, TF import); generous for a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"--- {path.name}: (no log) ---"
    return f"--- {path.name} (last {min(lines, len(text))} of {len(text)} lines) ---\n" + "\n".join(text[-lines:])


def _poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5,
          context: Callable[[], str] = lambda: "") -> Any:
    """``check()`` until it returns something truthy; fail after ``timeout`` seconds with ``context()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{context()}", pytrace=False)
        time.sleep(interval)


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    data: Path  # WARMSTART_DATA of the deployments: the example set's root
    results: Path  # PREFECT_LOCAL_STORAGE_PATH of the worker (and of this process)
    logs: Path
    http: httpx.Client
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    examples: ExampleSet | None = None  # written under ``data`` while the server starts

    def tail(self, lines: int = 40) -> str:
        return "\n".join(_tail(p, lines) for p in sorted(self.logs.glob("*.log")))

    def start(self, name: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A long-running child in its own process group (killed with its children in ``stop``)."""
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(args, env=env or self.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def run(self, name: str, args: list[str], timeout: float = 180) -> str:
        started = time.monotonic()
        done = subprocess.run(args, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        (self.logs / f"{name}.log").write_text(done.stdout + done.stderr)
        self.timings[name] = time.monotonic() - started
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited with {done.returncode}\n{self.tail()}", pytrace=False)
        return done.stdout

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
                except ProcessLookupError:
                    pass
        self.procs.clear()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One API call, retried like Prefect's own client (and the UI) do on 503 "retry later" answers
        (SQLite busy while the server's services write) and 429."""
        for delay in (0.2, 0.5, 1, 2, 4, 0):
            response = self.http.request(method, path, json=body)
            if response.status_code not in (429, 503) or not delay:
                return response
            time.sleep(delay)
        return response

    def get(self, path: str) -> Any:
        response = self.call("GET", path)
        assert response.status_code < 300, f"GET {path}: {response.status_code} {response.text}\n{self.tail()}"
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.call("POST", path, body)
        assert response.status_code < 300, f"POST {path}: {response.status_code} {response.text}\n{self.tail()}"
        return response.json()

    def deployment(self, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{FLOW}/{name}")

    def wait_terminal(self, flow_run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        def state() -> dict[str, Any] | None:
            run = self.get(f"/flow_runs/{flow_run_id}")
            return run if run["state_type"] in TERMINAL else None

        return _poll(f"flow run {flow_run_id} to finish", state, timeout,
                     context=lambda: f"last state: {self.get(f'/flow_runs/{flow_run_id}')['state']}\n{self.tail()}")

    def request(self, output: Path, **overrides: Any) -> dict[str, Any]:
        """Every parameter, as the UI's custom-run form sends them."""
        assert self.examples is not None
        return {"source": self.examples.source, "target": self.examples.target, "rules_url": self.examples.rules,
                "output": str(output), "strategy": "auto", "dry_run": False, "overwrite": False, **overrides}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("prefect-deployments")
    logs, results = root / "logs", root / "results"
    logs.mkdir()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    # Only our settings: an outer PREFECT_API_URL/PROFILE must not point the stack elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(root / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",  # the server logs why it answers 503
        PREFECT_UI_API_URL=api,  # the UI, driven in Chromium by test_the_custom_run_form_in_a_browser
        PREFECT_CLI_PROMPT="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_LOCAL_STORAGE_PATH=str(results),
        WARMSTART_CACHE_DIR=str(root / "cache"),
        WARMSTART_DATA=str(root / "data"),
        WARMSTART_RETRY_BASE_SECONDS="0.1",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(api=api, env={**env, "PREFECT_API_URL": api}, data=root / "data", results=results, logs=logs,
                  http=httpx.Client(base_url=api, timeout=30))
    try:
        started = time.monotonic()
        server = stack.start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                        "--port", str(port)], cwd=root, env=env)
        stack.examples = write_example_set(stack.data)  # while the server migrates its database

        def healthy() -> bool:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited with {server.returncode}\n{stack.tail()}", pytrace=False)
            try:
                return stack.http.get("/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _poll("the Prefect server's /api/health", healthy, timeout=90, context=stack.tail)
        stack.timings["server healthy"] = time.monotonic() - started

        prefect = [sys.executable, "-m", "prefect"]
        stack.run("work-pool", prefect + ["work-pool", "create", POOL, "--type", "process"])
        stack.start("worker", prefect + ["worker", "start", "--pool", POOL], cwd=root)
        stack.run("deploy", prefect + ["--no-prompt", "deploy", "--all", "--prefect-file",
                                       str(PREFECT_FILE.relative_to(REPO))])
        _poll("the worker to come online (work pool READY)",
              lambda: stack.get(f"/work_pools/{POOL}")["status"] == "READY", timeout=60, context=stack.tail)
        stack.timings["stack ready"] = time.monotonic() - started
        yield stack
    finally:
        stack.stop()
        stack.http.close()
        print("\nprefect stack timings (s):", {k: round(v, 1) for k, v in stack.timings.items()})


@pytest.fixture(scope="module")
def ui_run(stack: Stack) -> dict[str, Any]:
    """A run created the way the UI's "Custom run" form does it: POST /deployments/{id}/create_flow_run."""
    deployment = stack.deployment("warm-start-on-demand")
    output = stack.data / "out" / "from-ui"
    started = time.monotonic()
    created = stack.post(f"/deployments/{deployment['id']}/create_flow_run",
                         {"parameters": stack.request(output)})
    run = stack.wait_terminal(created["id"])
    stack.timings["ui run"] = time.monotonic() - started
    return {"run": run, "output": output}


def test_deployments_are_registered(stack: Stack):
    on_demand = stack.deployment("warm-start-on-demand")
    nightly = stack.deployment("warm-start-nightly")
    event = stack.deployment("warm-start-on-new-checkpoint")

    for d in (on_demand, nightly, event):
        assert d["work_pool_name"] == POOL
        # the installed package's module: nothing of the deploying checkout (no path, no pull step) is recorded
        assert d["entrypoint"] == "warmstart.flows.warm_start.warm_start"
        assert not d["pull_steps"] and str(REPO) not in json.dumps(d)
        assert d["enforce_parameter_schema"] is True
        assert {"source", "target", "output", "rules"} <= set(d["parameter_openapi_schema"]["properties"])
        assert d["parameters"]["target"] == f"{stack.data}/new-model-init"
        assert str(stack.data) in d["description"] and "{{" not in d["description"]  # the data root, rendered

    assert on_demand["schedules"] == [] and event["schedules"] == []
    [schedule] = nightly["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert nightly["parameters"]["output"] == f"{stack.data}/warm/nightly"
    assert nightly["parameters"]["overwrite"] is True

    automations = stack.post("/automations/filter", {})
    [automation] = [a for a in automations if any(act.get("deployment_id") == event["id"] for act in a["actions"])]
    assert automation["enabled"] is True
    assert automation["trigger"]["expect"] == ["checkpoint.created"]
    assert automation["trigger"]["match"] == {"prefect.resource.id": "warmstart.checkpoint.*"}
    [action] = automation["actions"]
    assert action["type"] == "run-deployment"
    # the event templates survive `prefect deploy`; $WARMSTART_DATA was filled in at deploy time
    assert action["parameters"]["source"] == "{{ (event.payload.get('url') or 'missing:payload.url') }}"
    assert action["parameters"]["output"] == (
        f"{stack.data}/warm/{{{{ event.resource.id.split('.')[-1] }}}}/{{{{ event.id }}}}")


def test_scheduler_creates_the_nightly_runs(stack: Stack):
    nightly = stack.deployment("warm-start-nightly")

    def scheduled() -> list[dict[str, Any]]:
        if "Can't evaluate bulk DML statement" in (stack.logs / "server.log").read_text(errors="replace"):
            pytest.fail("the server's scheduler fails to insert flow runs (SQLAlchemy 2.1)\n" + stack.tail(),
                        pytrace=False)
        return stack.post("/flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}},
                                                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})

    runs = _poll("the scheduler to schedule warm-start-nightly", scheduled, timeout=60, context=stack.tail)
    for run in runs:
        assert run["expected_start_time"].endswith("T02:00:00Z"), run["expected_start_time"]
        assert run["parameters"] == nightly["parameters"]
        assert run["work_pool_name"] == POOL


def test_run_created_like_the_ui_completes(stack: Stack, ui_run: dict[str, Any]):
    run, output = ui_run["run"], ui_run["output"]
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{stack.tail()}"
    assert run["work_pool_name"] == POOL
    assert run["parameters"]["output"] == str(output)
    assert (output / "checkpoint").is_file() and (output / "warmstart.json").is_file(), sorted(os.listdir(output))
    manifest = json.loads((output / "warmstart.json").read_text())
    assert manifest, "empty manifest"


def test_run_deployment_returns_the_report(stack: Stack):
    from prefect.deployments import run_deployment
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    output = stack.data / "out" / "from-run-deployment"
    started = time.monotonic()
    with temporary_settings({PREFECT_API_URL: stack.api, PREFECT_LOCAL_STORAGE_PATH: stack.results}):
        # only the output: the rest are the deployment's defaults
        flow_run = run_deployment(f"{FLOW}/warm-start-on-demand", parameters={"output": str(output)},
                                  flow_run_name="from-run-deployment-1",  # kept, not replaced by ours
                                  timeout=RUN_TIMEOUT, poll_interval=1)
        assert flow_run.state is not None and flow_run.state.is_completed(), f"{flow_run.state}\n{stack.tail()}"
        report = flow_run.state.result()
    stack.timings["run_deployment"] = time.monotonic() - started

    assert isinstance(report, dict), report
    assert report["status"] == "ok", report
    assert report["output"] == output.as_uri(), report
    assert report["manifest"] == f"{output.as_uri()}/warmstart.json", report
    assert report["counts"]["copy"] > 0 and report["counts"]["error"] == 0, report
    # persisted by the worker's flow-run process into the shared result storage
    assert Path(flow_run.state.data.storage_key).parent == stack.results, flow_run.state.data
    assert (output / "checkpoint").is_file()
    assert stack.get(f"/flow_runs/{flow_run.id}")["name"] == "from-run-deployment-1"


def test_the_cli_with_a_server_names_the_run_page_and_draws_the_copy(stack: Stack, tmp_path):
    """`warmstart transfer` with PREFECT_API_URL set runs the flow against that server: the run's page in the UI
    is printed as the run begins and on the summary line, and the progress bar follows the copy."""
    from servers import run_on_terminal

    ex = stack.examples
    out = stack.data / "out" / "from-the-cli"
    code, summary, terminal = run_on_terminal(
        [sys.executable, "-m", "warmstart.cli", "transfer", ex.source, ex.target, str(out), "--rules", ex.rules],
        env={**stack.env, "COLUMNS": "120"})
    assert code == 0, terminal[-3000:]
    page = f"{stack.api.removesuffix('/api')}/runs/flow-run/"
    assert f"warmstart: flow run {page}" in terminal, terminal[-3000:]
    assert f"; flow run {page}" in summary and "copying" in terminal and "KiB" in terminal, summary


_EMIT = textwrap.dedent("""
    import json, sys
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event = emit_event(event="checkpoint.created", resource={"prefect.resource.id": sys.argv[1]},
                       payload={} if sys.argv[2] == "-" else {"url": sys.argv[2]})
    EventsWorker.drain_all()  # send before exiting
    print(json.dumps({"id": str(event.id) if event else None}))
""")


def test_checkpoint_created_event_runs_the_event_deployment(stack: Stack):
    deployment = stack.deployment("warm-start-on-new-checkpoint")
    assert stack.examples is not None
    source = stack.examples.source
    url = Path(source).as_uri()  # differs from the deployment's default source: must come from the payload
    started = time.monotonic()
    # A separate producer process, as in production (the events client is a process-wide singleton).
    emitted = stack.run("emit", [sys.executable, "-c", _EMIT, "warmstart.checkpoint.demo", url], timeout=60)
    event_id = json.loads(emitted.strip().splitlines()[-1])["id"]
    assert event_id, f"emit_event sent nothing (events disabled?): {emitted}"

    def triggered_run() -> dict[str, Any] | None:
        runs = stack.post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
        return runs[0] if runs else None

    run = _poll("the automation to create a run of warm-start-on-new-checkpoint", triggered_run, timeout=60,
                context=lambda: f"automations: {stack.post('/automations/filter', {})}\n{stack.tail()}")
    run = stack.wait_terminal(run["id"])
    stack.timings["event run"] = time.monotonic() - started

    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{stack.tail()}"
    request = run["parameters"]
    assert request["source"] == url
    output = stack.data / "warm" / "demo" / event_id
    assert request["output"] == str(output)
    assert request["target"] == f"{stack.data}/new-model-init"
    assert (output / "checkpoint").is_file() and (output / "warmstart.json").is_file()


def test_artifacts_are_readable_through_the_api(stack: Stack, ui_run: dict[str, Any]):
    run, output = ui_run["run"], ui_run["output"]
    artifacts = {a["key"]: a for a in stack.post("/artifacts/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
                 if a["key"]}
    assert {"warm-start-plan", "warm-start-summary", "warm-start-output", "warm-start-progress"} <= set(artifacts), \
        sorted(artifacts)

    plan = artifacts["warm-start-plan"]
    assert plan["type"] == "table"
    rows = json.loads(plan["data"]) if isinstance(plan["data"], str) else plan["data"]
    assert {row["action"] for row in rows} >= {"copy", "init"}, rows[:3]

    summary = artifacts["warm-start-summary"]
    assert summary["type"] == "markdown" and summary["data"].startswith("# Warm start: ok"), summary["data"][:200]

    link = artifacts["warm-start-output"]
    assert link["type"] in ("link", "markdown")  # Prefect 3.8 stores link artifacts as markdown "[text](url)"
    assert f"({output.as_uri()}/warmstart.json)" in link["data"], link["data"]

    progress = artifacts["warm-start-progress"]
    assert progress["type"] == "progress" and float(progress["data"]) == 100.0, progress

    # the keyed artifacts are also readable by key (what the UI's Artifacts page shows)
    latest = stack.get("/artifacts/warm-start-summary/latest")
    assert latest["type"] == "markdown"


def submit_run_form(page, deployment_id: str, stack: Stack, attempts: int = 4) -> dict[str, Any]:
    """Click the custom-run form's Submit and return the flow run the server created. The UI does not
    retry a 503 "retry later" (SQLite busy while the server's own services write: it shows "Something went
    wrong trying to create a flow run" and keeps the form filled); a user clicks Submit again, and so does
    this. On success the UI leaves the form for the deployment's page."""
    def create_call(response) -> bool:
        return response.request.method == "POST" and response.url.endswith(
            f"/deployments/{deployment_id}/create_flow_run")

    for attempt in range(1, attempts + 1):
        with page.expect_response(create_call) as answer:
            page.get_by_role("button", name="Submit").click()
        response = answer.value
        if response.status != 503 or attempt == attempts:
            break
        time.sleep(attempt)
    assert response.ok, f"the form's create_flow_run: {response.status} {response.text()}\n{stack.tail()}"
    return response.json()


def test_the_custom_run_form_in_a_browser(stack: Stack, tmp_path):
    """The Prefect UI in headless Chromium: open the on-demand deployment's custom-run form, fill its flat
    fields, inline rules typed as text (a template with a back-reference, no JSON escaping), a credentials
    block from the picker; submit; the run completes, its plan artifact is shown, the output is right."""
    import numpy as np
    import tensorflow as tf
    from browser import choose, chromium_page, form_field

    stack.run("save-block", [sys.executable, "-c", textwrap.dedent("""
        from prefect_aws import AwsCredentials
        AwsCredentials(aws_access_key_id="ui-key", aws_secret_access_key="ui-secret").save("ui-picked", overwrite=True)
        """)])
    deployment = stack.deployment("warm-start-on-demand")
    ui = stack.api.removesuffix("/api")
    output = stack.data / "out" / "from-browser"
    started = time.monotonic()
    with chromium_page(str(tmp_path / "chromium-profile")) as page:
        page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run")
        form_field(page, "credentials (Optional)").wait_for()
        form_field(page, "output").locator("textarea, input").first.fill(str(output))
        form_field(page, "rules_url (Optional)").get_by_role("button", name="None", exact=True).click()
        form_field(page, "rules (Optional)").get_by_role("button", name="Rules", exact=True).click()
        rename = form_field(page, "Rename (Optional)")
        for rule in (r"model/(embeddings|encoder|pooler)/(.*) -> bert/\1/\2", "head/.* ->"):
            rename.get_by_role("button", name="Add item").click()
            rename.locator("textarea, input[type=text]").last.fill(rule)
        choose(page, form_field(page, "On Shape Mismatch (Optional)"), "skip")
        coverage = form_field(page, "Min Coverage (Optional)")  # a fraction, or unset (None)
        coverage.get_by_role("button", name="fraction", exact=True).click()
        coverage.locator("input").fill("0.3")
        credentials = form_field(page, "credentials (Optional)")
        credentials.get_by_role("button", name="AwsCredentials", exact=True).click()
        choose(page, credentials, "ui-picked")
        created = submit_run_form(page, deployment["id"], stack)
        page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment['id']}(\?.*)?$"))  # left the form
        run = stack.wait_terminal(created["id"])
        assert run["state_type"] == "COMPLETED", f"{run['state']}\n{stack.tail()}"
        assert run["name"] == f"warm-start pretrained -> {output.name}", run["name"]  # not the form's made-up name
        # what the form sent: flat fields, the rename rules as typed, the block as a reference
        params = run["parameters"]
        assert params["rules_url"] is None and params["rules"]["on_shape_mismatch"] == "skip"
        assert params["rules"]["rename"] == [r"model/(embeddings|encoder|pooler)/(.*) -> bert/\1/\2", "head/.* ->"]
        assert set(params["credentials"]) == {"$ref"} and "ui-secret" not in json.dumps(params)

        page.goto(f"{ui}/runs/flow-run/{run['id']}")
        page.get_by_role("tab", name="Artifacts").or_(page.get_by_text("Artifacts", exact=True)).first.click()
        page.get_by_text("warm-start-plan", exact=True).first.click()  # the plan's table, row by row
        table = page.locator("table").first
        table.wait_for()
        assert "copy" in table.inner_text() and "bert/embeddings/word_embeddings" in table.inner_text()
        stack.timings["browser run"] = time.monotonic() - started

    got = tf.train.load_checkpoint(str(output))
    src = tf.train.load_checkpoint(stack.examples.source)
    name = "encoder/layer_1/output/dense/kernel"
    np.testing.assert_array_equal(got.get_tensor(f"model/{name}"), src.get_tensor(f"bert/{name}"))


def test_serve_script_serves_the_same_deployments(stack: Stack):
    """Last: ``serve.py --replace`` swaps the work-pool deployments for served ones of the same names."""
    started = time.monotonic()
    stack.start("serve", [sys.executable, str(REPO / "deployments" / "serve.py"), "--replace"], cwd=stack.logs)

    def served() -> dict[str, Any] | None:
        if stack.procs["serve"].poll() is not None:
            pytest.fail(f"serve.py exited with {stack.procs['serve'].returncode}\n{stack.tail()}", pytrace=False)
        response = stack.call("GET", f"/deployments/name/{FLOW}/warm-start-on-new-checkpoint")
        return response.json() if response.status_code == 200 and not response.json()["work_pool_name"] else None

    _poll("serve.py to register its deployments", served, timeout=90, context=stack.tail)
    deployment = stack.deployment("warm-start-on-demand")
    assert deployment["work_pool_name"] is None and deployment["entrypoint"] == "warmstart.flows.warm_start.warm_start"
    assert deployment["parameters"]["output"] == f"{stack.data}/warm/on-demand"
    nightly = stack.deployment("warm-start-nightly")
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in nightly["schedules"]] == [("0 2 * * *", "UTC")]
    event = stack.deployment("warm-start-on-new-checkpoint")

    def event_automations() -> list[dict[str, Any]]:
        return [a for a in stack.post("/automations/filter", {})
                if any(act.get("deployment_id") == event["id"] for act in a["actions"])]

    # serve.py registers the deployment first and its trigger's automation just after: wait for it
    automations = _poll("serve.py to create the trigger's automation", event_automations, timeout=30,
                        context=stack.tail)
    assert len(automations) == 1, automations
    assert automations[0]["actions"][0]["parameters"]["source"] == (
        "{{ (event.payload.get('url') or 'missing:payload.url') }}")

    output = stack.data / "out" / "from-serve"
    created = stack.post(f"/deployments/{deployment['id']}/create_flow_run",
                         {"parameters": stack.request(output)})
    run = stack.wait_terminal(created["id"])
    stack.timings["serve run"] = time.monotonic() - started
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{stack.tail()}"
    assert run["work_pool_name"] is None  # run by serve.py's runner, not the pool's worker
    assert (output / "checkpoint").is_file() and (output / "warmstart.json").is_file()


def test_an_event_without_a_url_starts_a_run_that_fails_saying_so(stack: Stack):
    deployment = stack.deployment("warm-start-on-new-checkpoint")
    stack.run("emit-without-url", [sys.executable, "-c", _EMIT, "warmstart.checkpoint.nourl", "-"], timeout=60)

    def triggered_run() -> dict[str, Any] | None:
        runs = stack.post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
        return next((r for r in runs if str(r["parameters"].get("source", "")).startswith("missing:")), None)

    run = _poll("the automation to run warm-start-on-new-checkpoint for the event without a url", triggered_run,
                timeout=60, context=lambda: f"automations: {stack.post('/automations/filter', {})}\n{stack.tail()}")
    run = stack.wait_terminal(run["id"])
    assert run["state_type"] == "FAILED", f"{run['state']}\n{stack.tail()}"
    assert "the triggering event has no payload.url" in run["state"]["message"], run["state"]
