"""The engine's profiler endpoints and `--test-fault` switches, against real servers over loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from engine.config import ModelConfig
from engine.engine_loop import EngineLoop, EngineStopped
from engine.faults import ActiveFaults, BalloonSpec, FaultSpecError, parse_faults, release_in_bursts
from engine.model import TinyDecoder
from engine.sampling import SamplingParams
from engine.tokenizer import encode
from engine.units import GIB
from runners.soak.server_latency_probe import StepLatencyProbe
from tests.support.processes import start_engine, stop_process
from tests.support.project import ENGINE_CONFIG, ROOT

pytestmark = pytest.mark.slow


@contextmanager
def engine(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A real engine server started with `args`; always stopped and reaped."""
    proc, url = start_engine({}, tmp_path / "serve.log", args)
    try:
        yield proc, url
    finally:
        stop_process(proc)


def complete(url: str, n: int = 3, max_tokens: int = 8) -> None:
    """`n` plain completions, each must succeed."""
    for i in range(n):
        body = {"prompt": f"p{i}", "max_tokens": max_tokens, "ignore_eos": True}
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@pytest.mark.serial  # a 0.2 s bound
def test_engine_commands_run_on_the_engine_thread_between_steps() -> None:
    steps: list[str] = []
    loop = EngineLoop(
        TinyDecoder(ModelConfig(layers=1, hidden=32, heads=2, kv_heads=1, ffn=64, max_model_len=64)),
        max_num_seqs=2,
        on_step=lambda: steps.append(threading.current_thread().name),
    )
    loop.start()
    try:
        time.sleep(0.1)  # idle: the thread waits on its condition
        t0 = time.perf_counter()
        assert loop.call(lambda: threading.current_thread().name).result(timeout=5) == "engine-loop"
        assert time.perf_counter() - t0 < 0.2  # woken at once, not at the next idle tick
        with pytest.raises(ZeroDivisionError):
            loop.call(lambda: 1 / 0).result(timeout=5)
        done = threading.Event()
        params = SamplingParams(max_tokens=5, ignore_eos=True)
        loop.submit("r", encode("x"), params, lambda d: d.finish_reason and done.set())
        assert done.wait(10) and loop.alive
        assert loop.call(lambda: len(steps)).result(timeout=5) == 4  # prefill + first decode together, then 3 decodes
        assert set(steps) == {"engine-loop"}
    finally:
        loop.stop()
    with pytest.raises(EngineStopped):
        loop.call(lambda: None)


def test_parse_faults_defaults_args_and_errors() -> None:
    assert parse_faults([]) == ActiveFaults() and ActiveFaults().names() == []
    faults = parse_faults(["stream_stall", "stop_profile_trickle=0.25", "balloon_after_stop=0.5:2", "zombie"])
    assert faults.stream_stall_tokens == 3 and faults.stop_profile_trickle_s == 0.25 and faults.zombie
    assert faults.balloon_after_stop == BalloonSpec(0.5, 2.0)
    assert faults.names() == ["stop_profile_trickle=0.25", "stream_stall=3", "zombie", "balloon_after_stop=0.5:2"]
    assert parse_faults(["stop_profile_trickle"]).stop_profile_trickle_s == 1.0
    assert parse_faults(["wo_drop_last_slot"]).names() == ["wo_drop_last_slot"]
    assert parse_faults(["stream_burst"]).stream_burst_ms == 250.0
    assert parse_faults(["stream_burst=80", "zombie"]).names() == ["stream_burst=80", "zombie"]
    assert parse_faults(["zombie=2"]).zombie_after == 2 and parse_faults(["zombie=2"]).names() == ["zombie=2"]
    assert parse_faults(["zombie=0"]).names() == ["zombie"]
    for bad, says in [
        ("wo_drop_last_slot=1", "takes no argument"),
        ("nope", "unknown fault 'nope'"),
        ("zombie=x", "not an integer"),
        ("zombie=-1", "0 or more"),
        ("stream_stall=x", "not an integer"),
        ("balloon_after_stop=1", "RATE_GIB_S:MAX_GIB"),
        ("stop_profile_trickle=0", "above 0"),
        ("stream_burst=0", "above 0"),
    ]:
        with pytest.raises(FaultSpecError, match=says):
            parse_faults([bad])


def test_profile_round_trip_conflicts_and_body_dir(tmp_path: Path) -> None:
    flag_dir = tmp_path / "flag" / "traces"  # does not exist yet: created on start
    with engine(tmp_path, "--profile-dir", str(flag_dir)) as (_, url):
        r = httpx.post(f"{url}/stop_profile", timeout=10)
        assert r.status_code == 409 and "no profile is running" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/start_profile", timeout=40)
        assert r.status_code == 200
        assert r.json() == {"status": "started", "dir": str(flag_dir), "max_steps": 200}
        again = httpx.post(f"{url}/start_profile", timeout=40)
        assert again.status_code == 409 and "already open" in again.json()["error"]["message"]
        complete(url)
        r = httpx.post(f"{url}/stop_profile", timeout=40)
        assert r.status_code == 200, r.text
        stopped = r.json()
        assert stopped["status"] == "stopped" and 0 < stopped["steps"] < 200
        trace = Path(stopped["trace"])
        assert trace.parent == flag_dir and trace.name.startswith("trace-") and trace.suffix == ".json"
        assert json.loads(trace.read_text())["traceEvents"]
        assert httpx.post(f"{url}/stop_profile", timeout=10).status_code == 409

        body_dir = tmp_path / "from-body"
        r = httpx.post(f"{url}/start_profile", json={"dir": str(body_dir)}, timeout=40)
        assert r.status_code == 200 and r.json()["dir"] == str(body_dir)
        complete(url, n=1)
        r = httpx.post(f"{url}/stop_profile", timeout=40)
        assert r.status_code == 200 and Path(r.json()["trace"]).parent == body_dir
        assert Path(r.json()["trace"]).is_file()
        config = httpx.get(f"{url}/debug/config", timeout=10).json()
        assert config["test_faults"] == [] and config["profile_dir"] == str(flag_dir)


def test_profile_needs_a_directory_and_stops_itself_after_max_steps(tmp_path: Path) -> None:
    with engine(tmp_path, "--profile-max-steps", "2") as (_, url):
        r = httpx.post(f"{url}/start_profile", timeout=10)
        assert r.status_code == 400
        error = r.json()["error"]
        assert "--profile-dir" in error["message"] and '"dir"' in error["message"] and error["code"] == 400
        r = httpx.post(f"{url}/start_profile", json={"dir": "relative/path"}, timeout=10)
        assert r.status_code == 400 and "absolute" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/start_profile", json={"dir": str(tmp_path / "t")}, timeout=40)
        assert r.status_code == 200 and r.json()["max_steps"] == 2
        complete(url, n=3, max_tokens=10)  # 30 steps or so
        r = httpx.post(f"{url}/start_profile", json={"dir": str(tmp_path / "t")}, timeout=40)
        assert r.status_code == 409 and "stopped by itself after 2 step(s)" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/stop_profile", timeout=40)
        assert r.status_code == 200 and r.json()["steps"] == 2
        assert "traceEvents" in json.loads(Path(r.json()["trace"]).read_text())


def test_unknown_fault_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.server",
            "--config",
            str(ENGINE_CONFIG),
            "--port",
            "1",
            "--test-fault",
            "melt_down",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "engine: refusing to start: --test-fault 'melt_down': unknown fault 'melt_down' (known: stop_profile_hang, "
        "stop_profile_trickle, stream_stall, stream_burst, zombie, wo_drop_last_slot, balloon_after_stop)"
    ]


def test_stop_profile_hang_never_answers_while_health_does(tmp_path: Path) -> None:
    with engine(tmp_path, "--profile-dir", str(tmp_path / "t"), "--test-fault", "stop_profile_hang") as (_, url):
        assert httpx.post(f"{url}/start_profile", timeout=40).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/stop_profile", timeout=1.0)
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200
        config = httpx.get(f"{url}/debug/config", timeout=2).json()
        assert config["test_faults"] == ["stop_profile_hang"]
    assert "TEST FAULTS ACTIVE: stop_profile_hang" in (tmp_path / "serve.log").read_text()


def test_stop_profile_trickle_sends_the_first_byte_then_crawls(tmp_path: Path) -> None:
    args = ("--profile-dir", str(tmp_path / "t"), "--test-fault", "stop_profile_trickle=0.2")
    with engine(tmp_path, *args) as (_, url):
        assert httpx.post(f"{url}/start_profile", timeout=40).status_code == 200
        received = b""
        with httpx.stream("POST", f"{url}/stop_profile", timeout=httpx.Timeout(5.0, read=3.0)) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_raw()
            received += next(chunks)  # the first byte comes at once
            deadline = time.monotonic() + 2.0
            for chunk in chunks:  # bounded: 600 bytes at most, and the deadline
                received += chunk
                if time.monotonic() > deadline or len(received) >= 600:
                    break
        assert 1 < len(received) < 600, received  # it trickles, and is far from done after 2 s
        assert received.strip() == b""  # the padding comes first; the JSON body would come last


@pytest.mark.serial  # a 1 s bound
async def test_stream_stall_sends_n_tokens_then_nothing(tmp_path: Path) -> None:
    with engine(tmp_path, "--test-fault", "stream_stall") as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10.0, read=2.0)) as client:

            async def stream(path: str, body: dict) -> tuple[list, bool]:
                """The events a stream sent, and whether it then went quiet for 2 s without ending."""
                events: list = []
                buffer = ""
                async with client.stream("POST", path, json=body) as resp:
                    assert resp.status_code == 200
                    try:
                        async for text in resp.aiter_text():
                            buffer += text
                            *blocks, buffer = buffer.split("\n\n")
                            events += [b[6:] if b == "data: [DONE]" else json.loads(b[6:]) for b in blocks]
                            if len(events) > 50:
                                return events, False
                    except httpx.ReadTimeout:
                        return events, True
                return events, False

            body = {"max_tokens": 20, "ignore_eos": True, "stream": True}
            completions = asyncio.create_task(stream("/v1/completions", {**body, "prompt": "abc"}))
            chat = asyncio.create_task(
                stream("/v1/chat/completions", {**body, "messages": [{"role": "user", "content": "hi"}]})
            )
            await asyncio.sleep(0.5)
            t0 = time.perf_counter()
            assert (await client.get("/health", timeout=2)).status_code == 200
            assert time.perf_counter() - t0 < 1.0
            (events, stalled), (chat_events, chat_stalled) = await completions, await chat
        assert stalled and len(events) == 3 and all(e["choices"][0]["finish_reason"] is None for e in events)
        assert chat_stalled and len(chat_events) == 1 + 3  # the role delta, then 3 content tokens
        assert chat_events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all("content" in e["choices"][0]["delta"] for e in chat_events[1:])


@pytest.mark.serial  # a TTFT under 200 ms
async def test_stream_burst_holds_the_stream_back_while_the_servers_histograms_stay_true(tmp_path: Path) -> None:
    with engine(tmp_path, "--test-fault", "stream_burst=400") as (_, url):
        probe = StepLatencyProbe(f"{url}/metrics")
        await probe.start()
        arrivals: list[float] = []
        body = {"prompt": "abc", "max_tokens": 24, "ignore_eos": True, "stream": True}
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            t0 = time.perf_counter()
            async with client.stream("POST", "/v1/completions", json=body) as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_raw():  # bounded: the stream ends with [DONE]
                    arrivals += [time.perf_counter() - t0] * chunk.count(b"data: ")
        server = await probe.finish(client_requests=1)
    assert len(arrivals) == 24 + 1  # every token's chunk, then [DONE]: nothing lost
    assert arrivals[0] >= 0.38  # the first token waits for the first release
    ttft = server.metrics["time_to_first_token"]
    assert ttft is not None and ttft.count == 1 and ttft.mean_ms < 200  # the server saw its own first token early
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(g < 0.05 for g in gaps) >= len(gaps) // 2  # most chunks come together with others


async def test_release_in_bursts_passes_everything_on_and_closes_its_source() -> None:
    closed = asyncio.Event()

    async def source():
        try:
            for i in range(5):
                await asyncio.sleep(0.01)
                yield f"{i}".encode()
        finally:
            closed.set()

    t0 = time.perf_counter()
    bursts = [(b, time.perf_counter() - t0) async for b in release_in_bursts(source(), 0.2)]
    assert b"".join(b for b, _ in bursts) == b"01234"
    assert len(bursts) == 1 and bursts[0][1] >= 0.19 and closed.is_set()

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.01)
                yield b"x"
        finally:
            closed.set()

    closed.clear()
    stream = release_in_bursts(endless(), 0.05)
    assert (await anext(stream)).startswith(b"x")
    await stream.aclose()  # the client went away: the reader stops and the source is closed
    assert closed.is_set()


@pytest.mark.serial  # a 1 s bound
def test_zombie_answers_gets_and_hangs_posts(tmp_path: Path) -> None:
    with engine(tmp_path, "--test-fault", "zombie") as (_, url):
        t0 = time.perf_counter()
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200
        assert time.perf_counter() - t0 < 1.0
        assert httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        assert httpx.get(f"{url}/debug/config", timeout=2).json()["test_faults"] == ["zombie"]
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=1.0)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/start_profile", json={"dir": str(tmp_path)}, timeout=1.0)
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200


def test_zombie_after_n_lets_n_completions_through_then_hangs_every_post(tmp_path: Path) -> None:
    """zombie=2: /tokenize does not count, two completions answer, then completions and profiler calls hang."""
    with engine(tmp_path, "--test-fault", "zombie=2") as (_, url):
        assert httpx.post(f"{url}/tokenize", json={"prompt": "x"}, timeout=10).status_code == 200
        for path, body in (("/v1/completions", {"prompt": "x"}), ("/v1/chat/completions", {"messages": [
                {"role": "user", "content": "x"}]})):  # fmt: skip
            assert httpx.post(f"{url}{path}", json={**body, "max_tokens": 2}, timeout=30).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=1.0)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/tokenize", json={"prompt": "x"}, timeout=1.0)
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200


def test_balloon_after_stop_grows_rss(tmp_path: Path) -> None:
    args = ("--profile-dir", str(tmp_path / "t"), "--test-fault", "balloon_after_stop=0.5:0.5")
    with engine(tmp_path, *args) as (proc, url):
        assert httpx.post(f"{url}/start_profile", timeout=40).status_code == 200
        complete(url, n=1)
        before = rss_bytes(proc.pid)
        assert httpx.post(f"{url}/stop_profile", timeout=40).status_code == 200
        deadline, grown = time.monotonic() + 5.0, 0
        while time.monotonic() < deadline and grown < 0.3 * GIB:
            time.sleep(0.1)
            grown = rss_bytes(proc.pid) - before
        assert grown >= 0.3 * GIB, f"RSS grew by {grown / GIB:.2f} GiB in 5 s"
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200
