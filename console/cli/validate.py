"""`gb10-console validate PLAN [--force]`: check a plan without running it: fields, files, datasets, steps, target."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from console.cli.command import CliError, Subparsers
from console.cli.data import checked_data_lines, dataset_lines
from console.cli.run import preflight
from runners.evidence.mechanism_input import MechanismInput
from runners.gates.mechanism import ACCEPTANCE_RULE, mechanism_gate
from runners.gates.registry import load_registry
from runners.plan.load import load_plan
from runners.plan.preflight import preflight_warnings
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.run.plan_copy import PlanCopyError, redacted_plan_text
from runners.run.redact import env_policy


def register(sub: Subparsers) -> None:
    """Add `validate`."""
    validate = sub.add_parser(
        "validate", help="check a plan without running it: fields, files, datasets, steps, target"
    )
    validate.add_argument("plan", type=Path)
    validate.add_argument("--force", action="store_true", help="a known-OOM match is a warning, not an error")
    validate.set_defaults(handler=validate_plan)


def validate_plan(args: argparse.Namespace, out: Console) -> int:
    """Print what the plan will run and every warning about it; exit 0 when it is valid (errors raise)."""
    path, force = args.plan, args.force
    loaded = load_plan(path)
    host_warnings = preflight(path, loaded, force, starting=False)
    try:
        redacted_plan_text(path)  # the run directory's copy can leave out every hidden value
    except PlanCopyError as exc:
        raise CliError(str(exc)) from None
    data_lines = [*dataset_lines(loaded), *checked_data_lines(path, loaded)]  # raises before "valid" is said
    plan, serve = loaded.plan, loaded.plan.serve
    print(f"plan {plan.name} ({path}): valid")
    if isinstance(serve, DockerServe):
        target = f"docker image {serve.image}, network {serve.network}, gpus {serve.gpus}, ipc {serve.ipc}"
    elif isinstance(serve, ExternalServe):
        target = f"external server at {serve.url} (probed, never started or stopped)"
    else:
        target = "process: " + " ".join(loaded.serve_command())
    print(f"  target: {target}")
    policy = env_policy(plan)
    for arm in plan.arms:
        env = ", ".join(f"{k}={v}" for k, v in (policy.env(arm.env) or {}).items()) or "no env"
        print(f"  arm {arm.name}: {env}")
    for line in data_lines:
        print(f"  {line}")
    steps = plan.steps()
    modes = ", ".join(f"{m}: {sum(s.mode == m for s in steps)}" for m in ("primary", "supplementary"))
    print(f"  steps: {len(steps)} in {len(plan.sessions())} serve sessions ({modes})")
    registry = load_registry(loaded.resolve(plan.gates.registries) if plan.gates.registries else None)
    for arm in plan.arms:
        for criterion in mechanism_gate(MechanismInput.declared_by(arm), registry).failed_criteria:
            if criterion.startswith(ACCEPTANCE_RULE) and arm.acceptance_rate is None:
                print(f"  note: arm {arm.name}: the acceptance rate is taken from the server's vllm:spec_decode_* "
                      "metrics at run time; declare acceptance_rate if it does not export them")  # fmt: skip
            else:
                print(f"  warning: arm {arm.name}: the mechanism gate will fail: {criterion}")
    for finding in preflight_warnings(plan):
        print(f"  warning: {finding.topic}: {finding.message}")
    for warning in host_warnings:
        print(f"  warning: this host: {warning}")
    return 0
