"""DockerRuntime against a real dockerd: lifecycle, labels, logs, stop/kill, OOM, orphans, deadlines.

The engine is started by the `docker_engine` fixture (data under /tmp) and images are imported
from a busybox-static rootfs; busybox httpd stands in for a server that answers GETs only.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.host.docker_api import DockerClient, DockerError
from runners.host.owner import LABEL_OWNER, Owner, process_start_ticks, this_runner
from runners.host.scope import HOST_SCOPE_VAR, own_scope
from runners.plan.serve_spec import DockerServe
from runners.run.files import read_json, read_jsonl
from runners.run.runs import create_run
from runners.run.runtime_dir import RUNTIME_DIR_VAR, open_run_runtime
from runners.serve.docker import DockerDeadlines, DockerRuntime
from runners.serve.orphans import live_run_containers, sweep_orphans
from runners.serve.runtime import ServeError
from tests.docker_env import PODMAN_ULIMITS, DockerEngine, build_image, engine_mounts, remove_labelled
from tests.support.project import ENGINE_CONFIG, ROOT
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow
FAST = DockerDeadlines(watch_interval_s=0.1)


@pytest.fixture
def run_id(docker_engine: DockerEngine) -> Iterator[str]:
    """A fresh run id; every container labelled with it is removed afterwards."""
    rid = f"t{secrets.token_hex(4)}"
    yield rid
    remove_labelled(docker_engine, f"gb10.run-id={rid}")


def runtime(engine: DockerEngine, image: str, tmp_path: Path, run_id: str, command: list[str], **spec) -> DockerRuntime:
    """A DockerRuntime for one busybox container, no GPU, on the test engine."""
    fields = {"gpus": "none", "ipc": "private", "stop_timeout_s": 5, **spec}
    serve = DockerServe(kind="docker", image=image, socket=str(engine.socket), command=command, **fields)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return DockerRuntime(
        serve, {"CUTE_WO_SPLIT": "4"}, run_id=run_id, arm="a", mode="primary", serve_dir=tmp_path / "serve",
        env_dir=open_run_runtime(run_id, tmp_path / "private").session_env_dir("a", "primary"),  # 0700, as in a run
        resolve=Path, owner=this_runner(), deadlines=FAST,
    )  # fmt: skip


def api_inspect(engine: DockerEngine, ident: str) -> dict:
    """`docker inspect` through the test's own client."""
    with engine.client() as c:
        return c.get(f"/containers/{ident}/json").json()


async def eventually(predicate, deadline_s: float) -> bool:
    """Poll `predicate` without blocking the event loop (the runtime's tasks must keep running)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


GRACEFUL = 'trap "echo got-term; exit 0" TERM; echo out-line; echo err-line >&2; cat {env_dir}/ENV; '
# What gb10-vllm-plugin needs of the mounts: reports written beside the sentinel, the sentinel itself untouchable,
# traces written into the runner's directory.
MOUNTS = (
    "mkdir -p {env_dir}/reports && echo 1 > {env_dir}/reports/1.json && echo trace > {profile_dir}/t.json; "
    "echo x >> {env_dir}/ENV 2>/dev/null || echo sentinel-read-only; "
)


@pytest.mark.serial  # a 6 s bound it takes 5 s of
async def test_create_start_logs_stop_with_labels_and_settings(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, run_id: str
) -> None:
    """Labels, OomScoreAdj, no restart/auto-remove, env + sentinel, logs demuxed, graceful stop, inspect kept, then
    the container removed."""
    script = GRACEFUL + MOUNTS + "httpd -p {host}:{port} -h /www; while true; do sleep 0.1; done"
    rt = runtime(docker_engine, busybox_image, tmp_path, run_id, ["sh", "-c", script])
    await rt.start()
    assert rt.id is not None
    data = api_inspect(docker_engine, rt.id)
    labels = data["Config"]["Labels"]
    assert labels["gb10.run-id"] == run_id and labels["gb10.arm"] == "a" and labels["gb10.mode"] == "primary"
    assert Owner.parse(labels[LABEL_OWNER]) == this_runner()
    host = data["HostConfig"]
    assert host["OomScoreAdj"] == 1000 and host["RestartPolicy"]["Name"] == "no" and host["AutoRemove"] is False
    assert host["NetworkMode"] == "host"
    assert "CUTE_WO_SPLIT=4" in data["Config"]["Env"] and "GB10_ENV_DIR=/gb10/env" in data["Config"]["Env"]
    assert host["Binds"][:3] == [
        f"{rt.env_dir}:/gb10/env:rw",
        f"{rt.env_dir}/ENV:/gb10/env/ENV:ro",
        f"{rt.profile_dir}:/gb10/profile:rw",
    ]

    assert await eventually(lambda: "CUTE_WO_SPLIT=4" in rt.log_path.read_text(), 10)
    assert await eventually(lambda: "sentinel-read-only" in rt.log_path.read_text(), 10)
    assert (rt.env_dir / "reports" / "1.json").read_text() == "1\n" and (rt.profile_dir / "t.json").exists()
    for _ in range(50):  # httpd starts after the ENV line is printed
        if (await rt.probe()).healthy:
            break
        await asyncio.sleep(0.1)
    assert (await rt.probe()).healthy
    started = time.monotonic()
    with pytest.raises(ServeError, match="1-token completion answered 501"):
        await rt.wait_ready(3)  # GETs answer, the POST does not: not ready
    assert time.monotonic() - started < 6

    state = await rt.inspect()
    assert state["running"] is True and state["image_id"].startswith("sha256:")
    assert state["oom_kills"] in (0, None)  # None where the daemon's cgroups are not visible from here
    ended = await rt.stop(grace_s=5)
    assert (ended.how, ended.returncode) == ("terminated", 0)
    log = rt.log_path.read_text()
    assert "out-line\n" in log and "err-line\n" in log and "got-term" in log  # two streams: no order between them
    assert read_json(tmp_path / "serve" / "container.json")["State"]["ExitCode"] == 0
    assert "No such container" in api_inspect(docker_engine, rt.id)["message"]  # its log and inspect kept: removed
    assert f"removed container {rt.config.name}" in rt.log_path.read_text()
    assert rt.provenance()["image"]["id"] == state["image_id"]
    assert rt.provenance()["engine"]["api_version"]


async def test_the_same_lifecycle_on_podmans_compatible_socket(podman_engine: DockerEngine, tmp_path: Path) -> None:
    """Podman's Docker API: version negotiation, labels, ulimits, logs, graceful stop, kill, orphan listing."""
    image = build_image(podman_engine)
    assert image is not None
    rid = f"t{secrets.token_hex(4)}"
    script = GRACEFUL + "httpd -p {host}:{port} -h /www; while true; do sleep 0.1; done"
    try:
        rt = runtime(podman_engine, image, tmp_path / "a", rid, ["sh", "-c", script], ulimits=PODMAN_ULIMITS)
        await rt.start()
        data = api_inspect(podman_engine, rt.id)
        assert data["Config"]["Labels"]["gb10.run-id"] == rid
        ulimits = {u["Name"].removeprefix("RLIMIT_").lower(): u["Soft"] for u in data["HostConfig"]["Ulimits"]}
        assert ulimits["nofile"] == 1024 and ulimits["nproc"] == 4096
        assert await eventually(lambda: "CUTE_WO_SPLIT=4" in rt.log_path.read_text(), 10)
        assert await eventually(lambda: "err-line" in rt.log_path.read_text(), 5)
        for _ in range(50):
            if (await rt.probe()).healthy:
                break
            await asyncio.sleep(0.1)
        assert (await rt.probe()).healthy
        async with DockerClient(podman_engine.socket) as client:
            await client.connect()
            listed = await client.containers([f"gb10.run-id={rid}"])
            assert [c["Id"] for c in listed] == [rt.id]
        ended = await rt.stop(grace_s=5)
        assert (ended.how, ended.returncode) == ("terminated", 0)
        assert "got-term" in rt.log_path.read_text()

        rt2 = runtime(podman_engine, image, tmp_path / "b", rid, ["sleep", "300"], network="bridge",
                      ulimits=PODMAN_ULIMITS)  # fmt: skip
        await rt2.start()
        assert (await rt2.kill()).returncode == 137
    finally:
        remove_labelled(podman_engine, f"gb10.run-id={rid}")


@pytest.mark.serial  # a 10 s bound
async def test_kill_and_a_stop_signal_that_is_ignored(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, run_id: str
) -> None:
    """kill() SIGKILLs at once; a PID 1 that ignores SIGTERM is killed when the grace period ends. A plan's
    keep_container keeps the stopped container."""
    rt = runtime(docker_engine, busybox_image, tmp_path / "k", run_id, ["sleep", "300"], network="bridge",
                 keep_container=True)  # fmt: skip
    await rt.start()
    ended = await rt.kill()
    assert (ended.how, ended.returncode) == ("killed", 137)
    assert api_inspect(docker_engine, rt.id)["State"]["Status"] == "exited"

    rt2 = runtime(docker_engine, busybox_image, tmp_path / "s", run_id, ["sleep", "300"], network="bridge")
    await rt2.start()
    started = time.monotonic()
    ended = await rt2.stop(grace_s=1)
    assert ended.returncode == 137 and "grace period" in ended.how
    assert time.monotonic() - started < 10


async def test_bridge_network_publishes_on_loopback_only(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, run_id: str
) -> None:
    """network = bridge publishes container_port on 127.0.0.1 and nowhere else."""
    rt = runtime(
        docker_engine, busybox_image, tmp_path, run_id, ["httpd", "-f", "-p", "{port}", "-h", "/www"],
        network="bridge", container_port=8080,
    )  # fmt: skip
    await rt.start()
    try:
        assert rt.base_url.startswith("http://127.0.0.1:")
        for _ in range(50):
            if (await rt.probe()).healthy:
                break
            await asyncio.sleep(0.1)
        assert (await rt.probe()).healthy
        bindings = api_inspect(docker_engine, rt.id)["HostConfig"]["PortBindings"]
        assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(rt.config.host_port)}]}
        assert rt.config.command == ["httpd", "-f", "-p", "8080", "-h", "/www"]
    finally:
        await rt.kill()


async def test_oom_inside_the_container_is_recorded(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, run_id: str
) -> None:
    """A worker OOM-killed under a memory limit shows in the cgroup count; the server's own OOM in OOMKilled."""
    # one process holding one 64 MiB buffer: the OOM victim is always the allocator, never PID 1
    hog = "dd if=/dev/zero of=/dev/null bs=64M count=1"
    script = f"{hog}; echo worker-died; sleep 2; exec {hog}"
    command = ["sh", "-c", script]
    rt = runtime(docker_engine, busybox_image, tmp_path, run_id, command, memory_limit="24m", network="bridge")
    await rt.start()
    ended = await asyncio.wait_for(rt.wait_exit(), 60)
    assert ended.how == "OOM-killed", ended
    assert "OOMKilled=true" in ended.detail and "cgroup oom_kill" in ended.detail
    assert rt.oom_kills is not None and rt.oom_kills >= 1
    state = await rt.inspect()
    assert state["oom_killed"] is True and state["exit_code"] == 137
    await rt.stop(1)
    assert "worker-died" in rt.log_path.read_text(), rt.last_error


@pytest.mark.serial  # a 5 s bound
async def test_missing_image_and_gpu_request_give_clear_errors(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, run_id: str
) -> None:
    """No pull of a missing image; a GPU request on a host without the NVIDIA toolkit says what to install."""
    rt = runtime(docker_engine, "gb10-test/not-here:1", tmp_path / "m", run_id, ["true"], network="bridge")
    with pytest.raises(ServeError, match="never pulls") as missing:
        await rt.start()
    assert missing.value.lasting  # no retry finds the image: the run stops at its first start
    gpu = runtime(docker_engine, busybox_image, tmp_path / "g", run_id, ["sleep", "30"], gpus="all", network="bridge")
    try:
        await gpu.start()
    except ServeError as exc:
        assert "NVIDIA Container Toolkit" in str(exc) and 'gpus = "none"' in str(exc) and exc.lasting
        t0 = time.monotonic()
        assert (await gpu.stop(1)).how == "never started"  # created, never ran: nothing to wait for
        assert time.monotonic() - t0 < 5
    else:  # this engine has a GPU runtime: the request was honoured
        assert api_inspect(docker_engine, gpu.id)["HostConfig"]["DeviceRequests"][0]["Count"] == -1
        await gpu.kill()


def test_a_start_no_retry_can_change_stops_the_run_at_once_and_resumable(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """A missing image: `run`'s pre-flight (the doctor's image check) refuses before anything starts. A runner on a
    run made without that pre-flight: the first start fails, no other arm's start is tried, no step is marked
    failed, and the run ends failed with the reason and the resume command."""
    out = tmp_path / "run"
    refused = _start_runner(tmp_path, "gb10-test/not-here:1", docker_engine, out)
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2, output
    assert "refused on this host before anything started" in output and "image: gb10-test/not-here:1" in output
    assert not out.exists()
    create_run(_docker_plan(tmp_path, "gb10-test/not-here:1", docker_engine), out, tmp_path)
    runner = subprocess.run([sys.executable, "-m", "runners.execute", str(out)], cwd=ROOT,
                            env=_runner_env(docker_engine), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert runner.returncode == 1, runner.stdout + runner.stderr
    events = read_jsonl(out / "events.jsonl")
    assert [e["arm"] for e in events if e["type"] == "serve_failed"] == ["split1"]
    assert not [e for e in events if e["type"] in ("step_failed", "step_started")]
    finished = [e for e in events if e["type"] == "run_finished"][-1]
    assert finished["status"] == "failed" and "never pulls" in finished["reason"], finished
    assert f"gb10-console run --resume {out}" in finished["reason"]


def _dead_owner() -> Owner:
    proc = subprocess.Popen(["sleep", "0.2"])
    ticks = process_start_ticks(proc.pid)
    proc.wait()
    assert ticks is not None
    return Owner(this_runner().host, proc.pid, ticks)


async def test_orphan_sweep_stops_only_containers_of_dead_runners(
    docker_engine: DockerEngine, busybox_image: str, run_id: str
) -> None:
    """Dead runner's container: stopped. Live runner's, other host's, unlabelled: left alone. Before the sweep,
    the live runner's is the one a new run's pre-flight reports."""
    owners = {
        "dead": _dead_owner().label,
        "alive": this_runner().label,
        "elsewhere": "other-host/1/1",
    }
    async with DockerClient(docker_engine.socket) as client:
        await client.connect()
        ids = {}
        for name, owner in owners.items():
            labels = {"gb10.run-id": run_id, LABEL_OWNER: owner}
            ids[name] = await client.create(f"{run_id}-{name}", {"Image": busybox_image, "Cmd": ["sleep", "300"],
                                                                  "Labels": labels})  # fmt: skip
        ids["unlabelled"] = await client.create(
            f"{run_id}-unlabelled", {"Image": busybox_image, "Cmd": ["sleep", "300"], "Labels": {"gb10.run-id": run_id}}
        )
        for ident in ids.values():
            await client.start(ident)
        try:
            # a new run's pre-flight: only the container of a live runner on this host stands in its way
            live = await live_run_containers(explicit_socket=str(docker_engine.socket))
            assert [(c.name, c.run_id) for c in live] == [(f"{run_id}-alive", run_id)]
            assert await live_run_containers(run_id, str(docker_engine.socket)) == []  # a resumed run's own
            reports = {r.id: r for r in await sweep_orphans(client)}
            assert reports[ids["dead"]].action == "stopped"
            assert reports[ids["alive"]].action.startswith("left: its runner")
            assert reports[ids["elsewhere"]].action.startswith("left: started by a runner on host other-host")
            assert ids["unlabelled"] not in reports
            running = {n: (await client.inspect(i))["State"]["Running"] for n, i in ids.items()}
            assert running == {"dead": False, "alive": True, "elsewhere": True, "unlabelled": True}
        finally:
            for ident in ids.values():
                await client.kill(ident)


@pytest.mark.serial  # 2-8 s bounds
async def test_a_socket_that_never_answers_is_bounded(tmp_path: Path) -> None:
    """Every call times out; start fails; kill escalates API → `docker kill` → a clear report, all bounded."""
    sock = tmp_path / "hung.sock"
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_unix_server(accept, path=str(sock))
    try:
        async with DockerClient(sock, call_deadline_s=0.5) as client:
            t0 = time.monotonic()
            with pytest.raises(DockerError, match=r"did not answer within 0\.5 s"):
                await client.connect()
            assert time.monotonic() - t0 < 2

        deadlines = DockerDeadlines(call_s=0.5, kill_s=0.5, cli_kill_s=2.0, confirm_exit_s=1.0)
        serve = DockerServe(kind="docker", image="x", socket=str(sock), gpus="none", command=["s", "{host}", "{port}"])
        rt = DockerRuntime(
            serve, {}, run_id="r", arm="a", mode="primary", serve_dir=tmp_path / "serve",
            env_dir=tmp_path / "env", resolve=Path, owner=this_runner(), deadlines=deadlines,
        )  # fmt: skip
        t0 = time.monotonic()
        with pytest.raises(ServeError, match="did not answer"):
            await rt.start()
        assert time.monotonic() - t0 < 3

        rt.id = "0123456789abcdef"  # as if the daemon hung after creating the container
        rt._client = DockerClient(sock, call_deadline_s=0.5)
        rt._client.api_version = "1.41"  # connected earlier: the kill itself must meet the hung socket
        t0 = time.monotonic()
        with pytest.raises(ServeError) as failure:
            await rt.kill()
        assert time.monotonic() - t0 < 8
        message = str(failure.value)
        assert "could not kill container" in message and "API:" in message and "CLI:" in message
        assert "docker kill 0123456789ab" in message
    finally:
        server.close()
        for writer in held:
            writer.close()


def _docker_plan(tmp_path: Path, image: str, engine: DockerEngine) -> Path:
    """Two arms of the engine server inside busybox containers; the EngineCore-like `env -u` drops the env."""
    mounts = ", ".join(json.dumps(m) for m in engine_mounts(ROOT))
    command = [
        "env", "-u", "CUTE_WO_SPLIT", "HOME=/tmp", sys.executable, "-m", "engine.server",
        "--config", str(ENGINE_CONFIG), "--host", "{host}", "--port", "{port}", "--env-dir", "{env_dir}",
    ]  # fmt: skip
    text = f"""
name = "dockersoak"

[serve]
kind = "docker"
image = "{image}"
socket = "{engine.socket}"
gpus = "none"
ipc = "private"
shm_size = "64m"
mounts = [{mounts}]
command = {json.dumps(command)}
ready_timeout_s = 90
stop_timeout_s = 5

[[arms]]
name = "split1"
env = {{ CUTE_WO_SPLIT = "1" }}

[[arms]]
name = "split8"
env = {{ CUTE_WO_SPLIT = "8" }}

[[phases]]
name = "replay"
kind = "sharegpt"
requests = 24
concurrency = 2
max_tokens = 48
ignore_eos = true
http_timeout_s = 30
"""
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def _said(runner: subprocess.Popen) -> str:
    """What a runner printed (it is killed first if it still runs): the reason a test waited in vain."""
    if runner.poll() is None:
        runner.kill()
    return (runner.communicate(timeout=10)[0] or "")[-3000:]


def _runner_env(engine: DockerEngine) -> dict[str, str]:
    """A runner's environment that talks to the test engine, in this session's host scope."""
    return {"DOCKER_HOST": f"unix://{engine.socket}", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            HOST_SCOPE_VAR: own_scope(), RUNTIME_DIR_VAR: os.environ[RUNTIME_DIR_VAR]}  # fmt: skip


def _start_runner(tmp_path: Path, image: str, engine: DockerEngine, out: Path) -> subprocess.Popen:
    """`gb10-console run PLAN --headless` on the engine-in-containers plan, talking to the test engine."""
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", str(_docker_plan(tmp_path, image, engine)),
         "--headless", "--out", str(out)],
        cwd=ROOT, env=_runner_env(engine), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_a_soak_against_engine_containers_survives_a_container_killed_from_outside(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    """split1's container is killed mid-step (classified, step failed); split8 runs, env verified via ENV."""
    out = tmp_path / "run"
    runner = _start_runner(tmp_path, busybox_image, docker_engine, out)
    try:

        def step_started(arm: str) -> bool:
            path = out / "events.jsonl"
            return path.exists() and any(
                e["type"] == "step_started" and e["step"]["arm"] == arm for e in read_jsonl(path)
            )

        assert wait_until(lambda: step_started("split1") or runner.poll() is not None, 120), _said(runner)
        with docker_engine.client() as c:
            found = c.get("/containers/json", params={"filters": json.dumps({"label": ["gb10.arm=split1"]})}).json()
            assert len(found) == 1
            assert c.post(f"/containers/{found[0]['Id']}/kill").status_code == 204
        output, _ = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, output
    evs = read_jsonl(out / "events.jsonl")
    failed = [e for e in evs if e["type"] == "step_failed"]
    assert [e["step"]["arm"] for e in failed] == ["split1"]
    assert "killed by SIGKILL from outside the runner" in failed[0]["reason"]
    finished = [e for e in evs if e["type"] == "step_finished"]
    assert [e["step"]["arm"] for e in finished] == ["split8"]
    assert any(e["type"] == "orphans_checked" for e in evs)

    effective = read_json(out / "arms" / "split8" / "effective.json")
    assert effective["verified"] is True and effective["reported"]["CUTE_WO_SPLIT"] == "8"
    log = (out / "arms" / "split8" / "primary" / "serve.log").read_text()
    assert "CUTE_WO_SPLIT=8 from sentinel" in log  # `env -u` dropped the variable; the ENV file carried it
    prov = read_json(out / "provenance.json")
    assert prov["targets"]["split8/primary"]["image"]["id"].startswith("sha256:")
    container = read_json(out / "arms" / "split8" / "primary" / "container.json")
    assert container["Config"]["Labels"]["gb10.arm"] == "split8"
    label = f"gb10.run-id={read_json(out / 'run.json')['run_id']}"
    with docker_engine.client() as c:  # both arms' containers, the one killed from outside too: evidence kept, removed
        left = c.get("/containers/json", params={"all": "1", "filters": json.dumps({"label": [label]})}).json()
    assert left == [], [item["Names"] for item in left]
    remove_labelled(docker_engine, label)


@pytest.mark.serial  # the guard's reaction, within 10 s
def test_a_sigkilled_runners_container_is_stopped_by_its_guard(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    """The orphaned-container incident: runner SIGKILLed mid-step; the guard stops the container within 10 s."""
    out = tmp_path / "run"
    runner = _start_runner(tmp_path, busybox_image, docker_engine, out)
    try:
        assert wait_until(lambda: (out / "events.jsonl").exists() and any(
            e["type"] == "step_started" for e in read_jsonl(out / "events.jsonl")), 120), _said(runner)  # fmt: skip
        runner.kill()
        runner.wait(10)
        killed_at = time.monotonic()
        with docker_engine.client() as c:

            def running() -> list:
                flt = json.dumps({"label": ["gb10.arm=split1"]})
                return c.get("/containers/json", params={"filters": flt}).json()

            assert wait_until(lambda: not running(), 10), "the guard left the container running"
        assert time.monotonic() - killed_at <= 10

        def ended() -> list[dict]:
            return [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "guard_ended_target"]

        # the guard records the stop once the engine has confirmed it, a moment after the container is gone
        assert wait_until(lambda: bool(ended()), 5), "the guard stopped the container but recorded nothing"
        event = ended()[0]
        assert "is gone" in event["cause"] and "container" in event["outcome"]
    finally:
        if runner.poll() is None:
            runner.kill()
        remove_labelled(docker_engine, f"gb10.run-id={read_json(out / 'run.json')['run_id']}")
