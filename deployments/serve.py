"""Serve the three warm-start deployments from this process: no work pool, no worker.

Usage (from anywhere, with warmstart installed: the flow is imported as ``warmstart.flows.warm_start``)::

    export PREFECT_API_URL=http://127.0.0.1:4200/api     # a running `prefect server start`
    export WARMSTART_DATA=s3://ml-models/classifier        # or a local dir made by `warmstart demo --dir`
    python deployments/serve.py                            # Ctrl-C to stop
    python deployments/serve.py --check                    # print what would be served, then exit

The deployments are read from ``deployments/prefect.yaml`` (one source of truth): same names,
parameters, nightly cron schedule and ``checkpoint.created`` event trigger, validated and converted by
the functions of Prefect's own ``prefect deploy`` (private to Prefect's CLI, hence the ``<3.9`` pin being
tested by tests/test_deployments.py). ``{{ $VAR }}`` placeholders are filled from this process's
environment exactly as ``prefect deploy`` does; ``{{ event.* }}`` templates stay for the server to render
when the trigger fires.

Deployment names are shared with the work-pool deployments of ``prefect deploy``. Serving over a
work-pool deployment of the same name would leave it half-converted (still assigned to the pool, with
no pull step), so this script refuses to start while one exists; ``--replace`` deletes those first
(with their automations and scheduled runs). Run ``prefect deploy`` again to go back.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PREFECT_FILE = HERE / "prefect.yaml"

__all__ = ["load_specs", "build_deployments", "pool_deployments", "main"]


def load_specs(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of the project file, validated by Prefect's own model of ``prefect.yaml``
    (what ``prefect deploy`` uses), with ``{{ $VAR }}`` filled from the environment."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.utilities.templating import apply_values

    if not os.environ.get("WARMSTART_DATA"):
        raise SystemExit("WARMSTART_DATA is not set: export the storage root of the retraining pipeline "
                         "(it holds pretrained/, new-model-init/, rules.yaml; see deployments/README.md)")
    model = PrefectYamlModel.model_validate(yaml.safe_load(prefect_file.read_text()))
    specs = [d.model_dump(exclude_unset=True, mode="json") for d in model.deployments]
    # Env-var placeholders are replaced; any other placeholder ({{ event.id }}...) is kept as is.
    return apply_values(specs, {}, remove_notset=False)


def build_deployments(specs: list[dict[str, Any]]) -> list[Any]:
    """``RunnerDeployment`` objects for ``prefect.serve``, one per project-file deployment; schedules and
    triggers are turned into Prefect's objects by the same functions ``prefect deploy`` calls."""
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.deployments.runner import EntrypointType

    from warmstart.flows.warm_start import warm_start

    deployments = []
    for spec in specs:
        schedules = [DeploymentScheduleCreate(**_schedule_config_to_deployment_schedule(entry))
                     for entry in spec.get("schedules") or []]
        deployments.append(warm_start.to_deployment(
            name=spec["name"],
            description=spec.get("description"),
            tags=spec.get("tags"),
            parameters=spec.get("parameters"),
            schedules=schedules,
            triggers=_initialize_deployment_triggers(spec["name"], spec.get("triggers") or []) or None,
            entrypoint_type=EntrypointType.MODULE_PATH,  # warmstart.flows.warm_start.warm_start, as in prefect.yaml
        ))
    return deployments


def pool_deployments(names: list[str], delete: bool = False) -> list[str]:
    """The deployments ``warm-start/<name>`` that exist on a work pool; deleted when ``delete``."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(f"warm-start/{name}")
            except ObjectNotFound:
                continue
            if deployment.work_pool_name:
                found.append(f"warm-start/{name} (work pool {deployment.work_pool_name!r})")
                if delete:
                    client.delete_deployment(deployment.id)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="print the deployments that would be served and exit (needs no server)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many concurrent flow runs")
    parser.add_argument("--replace", action="store_true",
                        help="delete work-pool deployments of the same names first (see above)")
    args = parser.parse_args(argv)

    deployments = build_deployments(load_specs())
    if args.check:
        for d in deployments:
            schedules = [getattr(s.schedule, "cron", None) or str(s.schedule) for s in d.schedules or []]
            print(f"warm-start/{d.name}: entrypoint={d.entrypoint} schedules={schedules} "
                  f"triggers={[sorted(t.expect) for t in d.triggers]} parameters={d.parameters}")
        return 0

    clashes = pool_deployments([d.name for d in deployments], delete=args.replace)
    if clashes and not args.replace:
        print("not serving: these deployments run on a work pool:\n  " + "\n  ".join(clashes) +
              "\nstop their worker and rerun with --replace to serve them from here instead", file=sys.stderr)
        return 2
    for clash in clashes:
        print(f"deleted {clash}")

    from prefect import serve

    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
