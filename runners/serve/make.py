"""One place that turns a plan's `[serve]` table into the runtime for one serve session."""

from __future__ import annotations

from pathlib import Path

from runners.host.owner import this_runner
from runners.plan.load import LoadedPlan
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.plan.steps import SERVE_LOG
from runners.run.redact import env_policy
from runners.serve.docker import DockerRuntime
from runners.serve.external import ExternalRuntime
from runners.serve.process import ProcessRuntime
from runners.serve.runtime import ServeRuntime


def make_runtime(loaded: LoadedPlan, env: dict[str, str], serve_dir: Path, env_dir: Path, *, run_id: str, arm: str,
                 mode: str) -> ServeRuntime:  # fmt: skip
    """The runtime of `loaded`'s serve kind for one arm in one mode, logging under `serve_dir`, its ENV sentinel
    (real values) in `env_dir` (the run's private runtime directory, never the run directory)."""
    serve = loaded.plan.serve
    if isinstance(serve, ExternalServe):
        return ExternalRuntime(serve.url)
    if isinstance(serve, DockerServe):
        return DockerRuntime(serve, env, run_id=run_id, arm=arm, mode=mode, serve_dir=serve_dir, env_dir=env_dir,
                             resolve=loaded.resolve, owner=this_runner(), policy=env_policy(loaded.plan))  # fmt: skip
    return ProcessRuntime(loaded.serve_command(), env, serve_dir / SERVE_LOG, env_dir, serve.host,
                          run_id=run_id)  # fmt: skip
