"""DockerRuntime: the serve target as a container the runner creates, watches, stops and inspects.

The container carries the run's labels (gb10.run-id, gb10.arm, gb10.mode, gb10.owner), the arm's
env as container env *and* as an `ENV` sentinel file (bound read-only, in a writable env directory where
gb10-vllm-plugin writes what each vLLM process runs), a runner-owned trace directory, a copy of
gb10-vllm-plugin on its PYTHONPATH (plugin_inject.py; `inject_plugin = false` leaves it out), OomScoreAdj=1000
(a global OOM takes the server, not udev or snapd) and no restart policy. Once it has stopped, its
log is in serve.log and its final inspect in container.json; then it is removed (`keep_container`
keeps it): a real vLLM writes caches into the container layer, gigabytes a start on a Spark. A
watcher polls its state, and reads its cgroup's OOM-kill count while it runs; a follower decodes its
multiplexed logs into serve.log.

The container's configuration is built in container_config.py; stopping escalates as
container_stop.py says (API stop, API kill, `docker kill`, then a ServeError that says what is left
running and what to do). No call can hang the runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.env_sentinel import SENTINEL_NAME, format_sentinel
from runners.host.cgroup import MemoryCgroup, memory_cgroup
from runners.host.docker_api import DockerClient, DockerError, LogFrames, find_socket
from runners.host.owner import Owner
from runners.plan.serve_spec import DockerServe
from runners.plan.steps import CONTAINER_RECORD, PLUGIN_DIR, PROFILE_DIR_NAME, SERVE_LOG
from runners.run.files import tail_lines, write_atomic, write_json_atomic
from runners.run.redact import NO_PLAN, EnvPolicy, redact_argv, redact_inspect
from runners.run.targets import TargetRef
from runners.serve.container_config import ContainerConfig
from runners.serve.container_stop import StopEscalation, classify_exit
from runners.serve.env_reports import clear_reports
from runners.serve.plugin_inject import write_injected_plugin
from runners.serve.process import free_port
from runners.serve.readiness import probe, wait_ready_explained
from runners.serve.runtime import ExitInfo, ProbeResult, ReadyInfo, ServeError


@dataclass(frozen=True)
class DockerDeadlines:
    """How long each kind of Docker call may take (tests shrink them)."""

    call_s: float = 10.0  # any single API call
    kill_s: float = 20.0  # the API's kill (the daemon waits for the exit before answering)
    cli_kill_s: float = 10.0  # `docker kill` as a subprocess
    confirm_exit_s: float = 15.0  # from a kill to seeing the container not running
    log_drain_s: float = 2.0  # for the log follower to finish once the container ended
    log_retry_s: float = 1.0  # before following the logs again after the stream broke
    watch_interval_s: float = 0.5  # state polls while the container runs


def container_state(data: dict) -> dict:
    """The fields of `docker inspect` an operator reads: status, exit code, OOMKilled, health, times."""
    state = data.get("State") or {}
    health = state.get("Health") or {}
    return {
        "status": state.get("Status"),
        "running": bool(state.get("Running")),
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled"),
        "error": state.get("Error") or None,
        "health": health.get("Status"),
        "pid": state.get("Pid") or None,
        "started_at": state.get("StartedAt"),
        "finished_at": state.get("FinishedAt"),
        "restart_count": data.get("RestartCount"),
    }


class DockerRuntime:
    """A serve container owned by this runner; everything about it lands in the session's serve dir."""

    kind = "docker"

    def __init__(
        self,
        spec: DockerServe,
        env: dict[str, str],
        *,
        run_id: str,
        arm: str,
        mode: str,
        serve_dir: Path,
        env_dir: Path,
        resolve: Callable[[str], Path],
        owner: Owner,
        deadlines: DockerDeadlines | None = None,
        policy: EnvPolicy = NO_PLAN,
    ) -> None:
        self.spec = spec
        self.policy = policy  # what container.json may show of the container's env: the plan's
        self.serve_dir = serve_dir.resolve()
        self.log_path = self.serve_dir / SERVE_LOG
        self.env_dir = env_dir.resolve()  # the ENV sentinel's real values: the run's private runtime directory
        self.profile_dir = self.serve_dir / PROFILE_DIR_NAME
        self.profile_dir_in_target = spec.profile_mount
        self.resolve = resolve
        self.deadlines = deadlines or DockerDeadlines()
        self.config = ContainerConfig.for_session(
            spec, env, run_id=run_id, arm=arm, mode=mode, owner=owner,
            host_port=free_port(spec.host if spec.network == "host" else "127.0.0.1"),
            env_dir=self.env_dir, profile_dir=self.profile_dir, plugin_dir=self.serve_dir / PLUGIN_DIR,
        )  # fmt: skip
        self.base_url = self.config.base_url
        self.arm_env = self.config.env
        self.id: str | None = None
        self.image_info: dict = {}
        self.engine_info: dict = {}
        self._client: DockerClient | None = None
        self._stopping: str | None = None
        self._exit: ExitInfo | None = None
        self._exited = asyncio.Event()
        self._last_state: dict = {}
        self._cgroup: MemoryCgroup | None = None
        self.oom_kills: int | None = None
        self._watcher: asyncio.Task | None = None
        self._follower: asyncio.Task | None = None
        self.last_error: str | None = None
        self._final: dict | None = None

    # ---- start ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the engine and image, write the ENV sentinel, create and start the container."""
        try:
            socket = find_socket(self.spec.socket)
        except DockerError as exc:
            raise ServeError(str(exc)) from None
        self._client = DockerClient(socket, self.deadlines.call_s)
        try:
            await self._create_and_start()
        except (DockerError, OSError) as exc:
            if self.id is None:
                await self._client.aclose()
            else:
                await self._abandon_start()
            raise ServeError(str(exc), lasting=isinstance(exc, DockerError) and exc.lasting) from None
        self._follower = asyncio.create_task(self._follow_logs())
        self._watcher = asyncio.create_task(self._watch())

    async def _create_and_start(self) -> None:
        assert self._client is not None
        self.engine_info = await self._client.connect()
        image = await self._client.image(self.spec.image)
        self.image_info = {
            "ref": self.spec.image,
            "id": image.get("Id"),
            "repo_digests": image.get("RepoDigests") or [],
            "created": image.get("Created"),
        }
        write_atomic(self.env_dir / SENTINEL_NAME, format_sentinel(self.arm_env))
        clear_reports(self.env_dir)  # the plugin's reports of an earlier start must not verify this one
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        if self.config.plugin_dir is not None:
            write_injected_plugin(self.config.plugin_dir)
        binds = self.config.binds(self.resolve, self._log_line)
        self._log_line(f"creating container {self.config.name} from {self.spec.image} ({image.get('Id')})")
        image_env = (image.get("Config") or {}).get("Env") or []
        body = self.config.create_body(binds, self._client.is_podman, image_env)
        self.id = await self._client.create(self.config.name, body)
        await self._client.start(self.id)

    async def _abandon_start(self) -> None:
        """After a failure between create and a confirmed start: make sure nothing runs, keep the record.

        The daemon may have started the container although the call failed (a deadline passed).
        """
        assert self._client is not None and self.id is not None
        self._stopping = "killed"
        try:
            await self.kill()  # a container that never ran answers 409 "not running": fine
        except ServeError as exc:  # stop() raises it again: the soak must not go on beside it
            self.last_error = str(exc)
            self._log_line(f"could not make sure the container is stopped: {exc}")
            return
        finally:
            await self._close(wait_for_logs=False)
        final = (self._final or {}).get("State") or {}
        if final.get("Status") == "created":  # the daemon never ran it
            self._exit = ExitInfo(None, "never started", final.get("Error") or "")

    def _log_line(self, text: str) -> None:
        """A marker line in serve.log (best effort: a full disk must not stop the runtime)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as fh:
                fh.write(f"\n=== gb10-console {stamp}: {text}\n".encode())
        except OSError as exc:
            self.last_error = f"cannot write {self.log_path}: {exc}"

    # ---- watching -------------------------------------------------------------------------

    async def _follow_logs(self) -> None:
        """Append the container's decoded stdout and stderr to serve.log until it ends.

        A stream that breaks while the container runs (a daemon restart) is followed again from
        the time of the last bytes received, with a marker line: lines near it may repeat.
        """
        assert self._client is not None and self.id is not None
        since = 0.0
        while True:
            frames = LogFrames()
            try:
                with open(self.log_path, "ab") as fh:  # noqa: ASYNC230 - local appends of small chunks
                    async for chunk in self._client.follow_logs(self.id, since):
                        since = time.time()
                        for _, payload in frames.feed(chunk):
                            fh.write(payload)
                        fh.flush()
                    fh.write(frames.rest())
                return  # the stream ended: so did the container
            except OSError as exc:  # the run dir's disk: stop writing, never stop the runtime
                self.last_error = f"serve.log: {exc}"
                return
            except Exception as exc:  # DockerError, httpx errors, anything else from the stream
                self.last_error = f"log stream: {type(exc).__name__}: {exc}"
            if self._exit is not None:
                return
            self._log_line(f"log stream lost ({self.last_error}); following again, lines near here may repeat")
            await asyncio.sleep(self.deadlines.log_retry_s)

    async def _watch(self) -> None:
        """Poll the container's state until it is no longer running; keep its cgroup OOM count."""
        assert self._client is not None and self.id is not None
        while True:
            try:
                data = await self._client.inspect(self.id)
            except DockerError as exc:
                if exc.status == 404:
                    self._set_exit(ExitInfo(None, "removed from outside the runner", str(exc)))
                    return
                self.last_error = str(exc)
                await asyncio.sleep(self.deadlines.watch_interval_s)
                continue
            except Exception as exc:  # httpx or anything unexpected: report it, keep watching
                self.last_error = f"inspect: {type(exc).__name__}: {exc}"
                await asyncio.sleep(self.deadlines.watch_interval_s)
                continue
            state = data.get("State") if isinstance(data.get("State"), dict) else {}
            self._last_state = state
            if state.get("Running"):
                self._count_ooms(state.get("Pid"))
            elif state.get("Status") in ("exited", "dead"):
                self._set_exit(classify_exit(state, self._stopping, self.oom_kills))
                return
            await asyncio.sleep(self.deadlines.watch_interval_s)

    def _count_ooms(self, pid: int | None) -> None:
        if self._cgroup is None and pid:
            self._cgroup = memory_cgroup(pid)
        if self._cgroup is not None:
            count = self._cgroup.oom_kills()
            if count is not None:
                self.oom_kills = count

    def _set_exit(self, info: ExitInfo) -> None:
        if self._exit is None:
            self._exit = info
            self._exited.set()

    def _gone(self) -> str | None:
        if self._exit is None:
            return None
        return self._exit.describe()

    # ---- the ServeRuntime protocol --------------------------------------------------------

    async def wait_ready(self, deadline_s: float) -> ReadyInfo:
        """Ready = /health 200 and a 1-token completion; fails fast when the container ends."""
        hint = f"see {self.log_path} (or `docker logs {self.config.name}`)"
        return await wait_ready_explained(self.base_url, deadline_s, self._gone, hint, lambda: self.logs(8))

    async def probe(self) -> ProbeResult:
        """One bounded GET /health."""
        return await probe(self.base_url)

    async def wait_exit(self) -> ExitInfo:
        """Return when the container ends (on its own, from outside, or by stop/kill)."""
        if self.id is None:
            return ExitInfo(None, "not started")
        await self._exited.wait()
        assert self._exit is not None
        return self._exit

    async def stop(self, grace_s: float) -> ExitInfo:
        """The container's stop signal, SIGKILL after `grace_s`; escalates to kill() if the API fails."""
        if self.id is None or self._client is None:
            return ExitInfo(None, "not started")
        if self._final is not None:  # closed by an earlier stop, kill or failed start
            return self._closed_exit()
        if self._exit is None:
            self._stopping = "terminated"
            refused = await self._escalation().stop(grace_s)
            if refused is not None:
                self.last_error = refused
                return await self.kill()
        return await self._finish()

    async def kill(self) -> ExitInfo:
        """SIGKILL through the API, then through the CLI; ServeError if the container may still run."""
        if self.id is None or self._client is None:
            return ExitInfo(None, "not started")
        if self._final is not None:
            return self._closed_exit()
        if self._exit is None:
            self._stopping = "killed"
            failed = await self._escalation().kill()
            if failed is not None and not await self._confirmed_gone():
                await self._close(wait_for_logs=False)
                raise ServeError(failed)
        return await self._finish()

    def _escalation(self) -> StopEscalation:
        """The stop escalation of the container this runtime created."""
        assert self._client is not None and self.id is not None
        return StopEscalation(self._client, self.id, self.config.name, self.deadlines.kill_s, self.deadlines.cli_kill_s)

    def _closed_exit(self) -> ExitInfo:
        """How the container ended, once the runtime is closed; ServeError if that was never confirmed."""
        if self._exit is None:
            raise ServeError(
                f"container {self.config.name} ({self.id}) may still be running: "
                f"{self.last_error or 'its end was never seen'}"
            )
        return self._exit

    async def _confirmed_gone(self) -> bool:
        """True when the daemon says the container is not running (or no longer exists); its end is recorded."""
        ended = await self._escalation().ended(self._stopping, self.oom_kills)
        if ended is None:
            return False
        self._set_exit(ended)
        return True

    async def _finish(self) -> ExitInfo:
        """Confirm the container ended, drain its logs, save its final inspect, close the client."""
        if self._exit is None and (self._watcher is None or self._watcher.done()):
            await self._confirmed_gone()  # nobody is watching: ask once
        try:
            await asyncio.wait_for(self._exited.wait(), self.deadlines.confirm_exit_s)
        except asyncio.TimeoutError:
            if not await self._confirmed_gone():
                await self._close(wait_for_logs=False)
                raise ServeError(
                    f"container {self.config.name} ({self.id}) still runs {self.deadlines.confirm_exit_s:g} s after it "
                    f"was {self._stopping}; kill it by hand (`docker kill {self.id}`) and check the daemon"
                ) from None
        await self._close(wait_for_logs=True)
        assert self._exit is not None
        return self._exit

    async def _close(self, wait_for_logs: bool) -> None:
        """End the follower and the watcher, keep the final inspect in container.json, remove the container (see
        _remove_stopped), close the client."""
        if self._follower is not None and wait_for_logs:
            await asyncio.wait({self._follower}, timeout=self.deadlines.log_drain_s)
        drained = self._follower is None or self._follower.done()  # serve.log has all the container said
        for task in (self._follower, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        if self._client is None or self._final is not None:
            return
        if self.id is not None:
            try:
                self._final = redact_inspect(await self._client.inspect(self.id), self.policy)
            except DockerError as exc:
                self.last_error = str(exc)
            if self._final is not None:
                try:
                    write_json_atomic(self.serve_dir / CONTAINER_RECORD, self._final)
                except OSError as exc:
                    self.last_error = f"container.json: {exc}"
                else:
                    await self._remove_stopped(drained)
        self._final = self._final or {"State": self._last_state}
        await self._client.aclose()

    async def _remove_stopped(self, drained: bool) -> None:
        """Remove the container, its inspect kept and its log `drained` (or it never ran): unless the plan keeps it
        or it still runs (a kill that failed)."""
        assert self._client is not None and self.id is not None and self._final is not None
        state = self._final.get("State") or {}
        if self.spec.keep_container or state.get("Running") or not (drained or state.get("Status") == "created"):
            return
        try:
            await self._client.remove(self.id)
        except DockerError as exc:
            self._log_line(f"could not remove container {self.config.name}: {exc} (`docker rm {self.id}` removes it)")
            return
        self._log_line(f"removed container {self.config.name}; its inspect is container.json (keep_container keeps it)")

    def logs(self, lines: int = 20) -> list[str]:
        """The last lines of serve.log."""
        return tail_lines(self.log_path, lines)

    async def inspect(self) -> dict:
        """Container id, name, image, url and its state now (from the daemon, under a deadline)."""
        info: dict = {
            "kind": self.kind,
            "name": self.config.name,
            "id": self.id,
            "image": self.spec.image,
            "image_id": self.image_info.get("id"),
            "base_url": self.base_url,
            "network": self.spec.network,
            "labels": self.config.labels,
            "log": str(self.log_path),
            "oom_kills": self.oom_kills,
            "last_error": self.last_error,
        }
        if self.id is None or self._client is None:
            return {**info, "status": "not created"}
        if self._exit is not None:
            info["ended"] = self._exit.describe()
        if self._final is not None:  # stopped and closed: the last inspect is the truth
            return {**info, **container_state(self._final)}
        try:
            data = await self._client.inspect(self.id)
        except DockerError as exc:
            return {**info, **container_state({"State": self._last_state}), "inspect_error": str(exc)}
        except RuntimeError:  # the client closed meanwhile (stopped): the final inspect is the truth
            return {**info, **container_state(self._final or {"State": self._last_state})}
        return {**info, **container_state(data)}

    @property
    def socket(self) -> str | None:
        """The engine socket this runtime talks to (once started)."""
        return str(self._client.socket) if self._client else None

    def target_ref(self, arm: str, mode: str) -> TargetRef | None:
        """The container id and the engine socket it lives on; None before the container was created."""
        if self.id is None:
            return None
        return TargetRef("docker", arm, mode, container=self.id, socket=self.socket)

    def provenance(self) -> dict:
        """The image (id and registry digests) and the engine that ran it."""
        return {
            "kind": self.kind,
            "image": self.image_info,
            "container": self.config.name,
            "command": redact_argv(self.config.command),
            "engine": {
                "socket": str(self._client.socket) if self._client else None,
                "version": self.engine_info.get("Version"),
                "api_version": self._client.api_version if self._client else None,
                "components": [c.get("Name") for c in self.engine_info.get("Components") or []],
            },
        }
