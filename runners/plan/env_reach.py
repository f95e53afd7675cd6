"""Will each arm's env reach the serve target, and will the target accept it? Known before the first start.

Two late failures this catches at `validate` (and at `run`, which loads the plan the same way):
- an **external** target is a server the runner does not start, so no arm's env can reach it. Arms whose
  envs differ would be compared while the server runs one and the same thing: the comparison measures
  noise. That is a plan error. Env that is the same for every arm is only compared with what the
  server reports (the env gate gives the arm no verdict when nothing reports it): a warning.
- the **embedded engine** reads one variable, `CUTE_WO_SPLIT`, and refuses to start on a value it cannot
  run, and a config file it cannot read. Checking both here replaces a failure after
  the first arm was measured with an error that names the field. Other keys cannot change what the
  engine runs: a warning (such an arm's env stays unverified and it gets no verdict).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.config import load_engine_config
from engine.config_file import ConfigFileError
from engine.kernel_settings import WO_SPLIT_VAR
from engine.kernels.wo_split_values import WoSplitError, check_wo_split
from runners.plan.model import Plan
from runners.plan.serve_spec import ExternalServe, ProcessServe


def _arms_differ(plan: Plan) -> bool:
    return len({tuple(sorted(arm.env.items())) for arm in plan.arms}) > 1


def _external_error(plan: Plan, serve: ExternalServe) -> list[str]:
    if not _arms_differ(plan):
        return []
    differ = ", ".join(f"{arm.name} ({', '.join(sorted(arm.env)) or 'no env'})" for arm in plan.arms)
    return [
        f"arms[*].env: serve.kind is external ({serve.url}): the runner does not start that server, so no arm's "
        f"env reaches it, and arms that differ only by env ({differ}) would measure one unchanged server twice. "
        "Use a process or docker target (the runner starts each arm with its env), or give every arm the same env"
    ]


def _embedded_errors(plan: Plan, resolve: Callable[[str], Path], serve: ProcessServe) -> list[str]:
    config_path = resolve(serve.engine_config or "")
    try:
        load_engine_config(config_path)  # the engine refuses a config it cannot read
    except ConfigFileError as exc:
        return [f"serve.engine_config: {problem}" for problem in exc.problems]
    errors = []
    for field, env in plan.env_tables():  # every place the plan sets it; the engine refuses a bad one at start
        if isinstance(env.get(WO_SPLIT_VAR), str):  # a from_env value is read only at start
            try:
                check_wo_split(env[WO_SPLIT_VAR], f"{field}.{WO_SPLIT_VAR}")
            except WoSplitError as exc:
                errors.append(f"{exc} (the embedded engine refuses to start with it; engine config {config_path})")
    return errors


def env_errors(plan: Plan, resolve: Callable[[str], Path]) -> list[str]:
    """What stops the plan: env that cannot reach the target, or a value it refuses. Each names the plan field."""
    serve = plan.serve
    if isinstance(serve, ExternalServe):
        return _external_error(plan, serve)
    if isinstance(serve, ProcessServe) and serve.engine_config:
        return _embedded_errors(plan, resolve, serve)
    return []


def env_warnings(plan: Plan) -> list[str]:
    """Env that reaches the target without being able to change or prove what it runs (see the module doc)."""
    serve = plan.serve
    sources = [(field, env) for field, env in plan.env_tables() if env]
    if isinstance(serve, ExternalServe) and sources and not _arms_differ(plan):
        return [
            f"{', '.join(field for field, _ in sources)}: serve.kind is external ({serve.url}): this env is not set "
            "on the server, only compared with what it reports (/debug/config); a server that reports nothing "
            "leaves the env unverified and the arms get no verdict"
        ]
    if not (isinstance(serve, ProcessServe) and serve.engine_config):
        return []
    out = []
    for field, env in sources:
        unread = sorted(k for k in env if k != WO_SPLIT_VAR)
        if unread:
            out.append(
                f"{field}: the embedded engine reads only {WO_SPLIT_VAR}; {', '.join(unread)} cannot change what it "
                "runs (an arm that differs only by these gets no verdict: its env stays unverified)"
            )
    return out
