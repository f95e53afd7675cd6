"""The replay transport against real loopback servers: streaming, httpx's errors, no connection cap, closing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import httpcore
import httpx
import pytest

from engine.deadlines import timeout
from runners.replay.transport import HTTPX_ERRORS, ReplayTransport, httpx_error, replay_transport
from runners.testbed.mock_server import MockSettings
from tests.support.mock import StartMock
from tests.support.processes import HOST

WAIT_S = 10.0
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
# more streams than httpx's default pool allows (100), so a cap anywhere below this would hang the test
MANY_STREAMS = 128


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def new_transport() -> ReplayTransport:
    return replay_transport(ssl.create_default_context())


async def wait_for_condition(predicate: Callable[[], bool], deadline_s: float = WAIT_S) -> None:
    """Yield to the loop until `predicate()`; fails after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, f"condition not met within {deadline_s} s"
        await asyncio.sleep(0.01)


Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class ScriptedServer:
    """A tiny keep-alive HTTP/1.1 server on loopback: each request (GET, no body) is answered by `answer`.

    It counts connections opened and closed (seen from the server: EOF, reset, or its own close).
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.opened = 0
        self.closed = 0
        self.requests = 0
        self.heads: list[bytes] = []  # each request's line and headers, as received
        self.handlers: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{HOST}:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.opened += 1
        try:
            while True:
                try:
                    self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                await self.answer(writer)
                if writer.is_closing():
                    return
        finally:
            self.closed += 1
            writer.close()
            self.handlers.discard(task)


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[[Answer], Awaitable[ScriptedServer]]]:
    """Start `ScriptedServer`s on free loopback ports; at teardown they stop and their handlers are cancelled."""
    servers: list[ScriptedServer] = []

    async def start(answer: Answer) -> ScriptedServer:
        scripted = ScriptedServer(answer)
        scripted.server = await asyncio.start_server(scripted.handle, HOST, 0)
        servers.append(scripted)
        return scripted

    yield start
    for scripted in servers:
        assert scripted.server is not None
        scripted.server.close()
        handlers = list(scripted.handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=WAIT_S)
            assert not pending, "a server connection handler did not stop when cancelled"


# --- 1. a streamed response --------------------------------------------------------------------------------------


async def test_a_streamed_response_arrives_chunk_by_chunk_on_a_kept_alive_connection(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=20, itl_ms=40, tokens=5))
    payload = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 5}
    transport = new_transport()
    async with timeout(WAIT_S), httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            arrivals: list[float] = []
            body = b""
            async with client.stream("POST", f"{url}/v1/chat/completions", json=payload) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"] == "text/event-stream"
                async for part in resp.aiter_raw():
                    arrivals.append(time.monotonic())
                    body += part
            # tokens leave the server 40 ms apart: several reads, spread out, not one buffered body
            assert len(arrivals) >= 3, arrivals
            assert arrivals[-1] - arrivals[0] >= 0.1
            assert body.count(b'"content":"tok "') == 5
            assert body.endswith(b"data: [DONE]\n\n")
            assert len(transport.pool.connections) == 1  # the second request reused the first's connection


async def test_a_request_body_reaches_the_server_and_a_plain_response_reads_whole(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(tokens=3))
    payload = {"model": "mock", "prompt": "hi", "max_tokens": 3}
    async with timeout(WAIT_S), httpx.AsyncClient(transport=new_transport()) as client:
        resp = await client.post(f"{url}/v1/completions", json=payload)
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["text"] == "tok " * 3


# --- 2. httpcore's failures as httpx's ---------------------------------------------------------------------------


async def test_the_request_line_keeps_the_path_and_query_and_the_headers_arrive(start_server) -> None:
    async def ok(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    server = await start_server(ok)
    async with timeout(WAIT_S), httpx.AsyncClient(transport=new_transport()) as client:
        resp = await client.get(f"{server.url}/v1/models", params={"a": "1 2", "b": "x"}, headers={"x-run": "r1"})
    assert resp.text == "ok"
    head = server.heads[0].decode()
    assert head.startswith("GET /v1/models?a=1+2&b=x HTTP/1.1\r\n"), head
    assert "x-run: r1" in head.lower() and f"host: {server.url.removeprefix('http://')}" in head.lower()


async def test_a_refused_connection_is_httpx_connect_error() -> None:
    # a bound socket that does not listen: connects to its port are refused and no one else can take it
    with socket.socket() as closed_port:
        closed_port.bind((HOST, 0))
        url = f"http://{HOST}:{closed_port.getsockname()[1]}/v1/models"
        async with timeout(WAIT_S), httpx.AsyncClient(transport=new_transport()) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(url)
    assert isinstance(info.value.__cause__, httpcore.ConnectError)
    assert info.value.request.url == url


@pytest.mark.parametrize(
    ("framing", "ending", "expected", "cause"),
    [
        ("chunked", "fin", httpx.RemoteProtocolError, httpcore.RemoteProtocolError),
        ("length", "fin", httpx.RemoteProtocolError, httpcore.RemoteProtocolError),
        ("chunked", "rst", httpx.ReadError, httpcore.ReadError),
    ],
)
async def test_a_server_that_closes_mid_body_raises_an_httpx_error_while_reading(
    start_server,
    framing: Literal["chunked", "length"],
    ending: Literal["fin", "rst"],
    expected: type[httpx.TransportError],
    cause: type[Exception],
) -> None:
    first_read = asyncio.Event()

    async def half_a_body(writer: asyncio.StreamWriter) -> None:
        if framing == "chunked":
            writer.write(STREAM_HEAD + chunked(b"data: one\n\n"))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\ndata: one\n\n")
        await writer.drain()
        await asyncio.wait_for(first_read.wait(), WAIT_S)
        if ending == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    server = await start_server(half_a_body)
    async with (
        timeout(WAIT_S),
        httpx.AsyncClient(transport=new_transport()) as client,
        client.stream("GET", f"{server.url}/stream") as resp,
    ):
        parts = resp.aiter_raw()
        assert await parts.__anext__() == b"data: one\n\n"
        first_read.set()
        with pytest.raises(expected) as info:
            async for _ in parts:
                pass
    assert isinstance(info.value.__cause__, cause)
    assert info.value.request is resp.request


@pytest.mark.parametrize("core_error", sorted(HTTPX_ERRORS, key=lambda cls: cls.__name__), ids=lambda c: c.__name__)
def test_every_httpcore_error_maps_to_httpx_error_of_the_same_name(core_error: type[Exception]) -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    mapped = httpx_error(core_error("boom"), request)
    assert type(mapped).__name__ == core_error.__name__
    assert isinstance(mapped, httpx.TransportError)
    assert str(mapped) == "boom" and mapped.request is request


def test_errors_that_are_not_httpcore_are_left_alone_and_network_errors_while_closing_are_close_errors() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    assert httpx_error(ValueError("x"), request) is None
    assert httpx_error(TimeoutError(), request) is None
    assert isinstance(httpx_error(httpcore.ReadError("x"), request, closing=True), httpx.CloseError)
    assert isinstance(httpx_error(httpcore.RemoteProtocolError("x"), request, closing=True), httpx.RemoteProtocolError)


# --- 3. no connection cap ----------------------------------------------------------------------------------------


async def test_many_concurrent_streams_all_complete_each_on_its_own_connection(start_server) -> None:
    everyone_asked = asyncio.Event()

    async def held_stream(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + chunked(b"data: first\n\n"))
        await writer.drain()
        if server.requests >= MANY_STREAMS:
            everyone_asked.set()
        await asyncio.wait_for(everyone_asked.wait(), WAIT_S)  # finish only once every stream is in flight
        writer.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    server = await start_server(held_stream)
    transport = new_transport()

    async def one_stream(client: httpx.AsyncClient) -> bytes:
        async with client.stream("GET", f"{server.url}/stream") as resp:
            return await resp.aread()

    async with timeout(WAIT_S * 2), httpx.AsyncClient(transport=transport) as client:
        bodies = await asyncio.gather(*(one_stream(client) for _ in range(MANY_STREAMS)))
        assert bodies == [b"data: first\n\ndata: [DONE]\n\n"] * MANY_STREAMS
        assert server.opened == MANY_STREAMS
        assert len(transport.pool.connections) == MANY_STREAMS  # all kept alive, none dropped by a keep-alive cap


# --- 4. closing --------------------------------------------------------------------------------------------------


async def test_closing_the_transport_closes_its_kept_alive_connections(start_server) -> None:
    streams = 4
    everyone_asked = asyncio.Event()

    async def short_stream(writer: asyncio.StreamWriter) -> None:
        if server.requests >= streams:
            everyone_asked.set()
        await asyncio.wait_for(everyone_asked.wait(), WAIT_S)  # held: the client needs a connection per request
        writer.write(STREAM_HEAD + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    server = await start_server(short_stream)
    transport = new_transport()
    client = httpx.AsyncClient(transport=transport)
    async with timeout(WAIT_S):
        resps = await asyncio.gather(*(client.get(f"{server.url}/stream") for _ in range(streams)))
    assert [r.status_code for r in resps] == [200] * streams
    assert server.opened == streams and len(transport.pool.connections) == streams
    await asyncio.sleep(0.05)
    assert server.closed == 0  # idle in the pool, still open

    await client.aclose()  # closes the transport
    assert transport.pool.connections == []
    await wait_for_condition(lambda: server.closed == streams)


async def test_leaving_a_body_unread_closes_its_connection(start_server) -> None:
    async def endless_stream(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + chunked(b"data: one\n\n"))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            for _ in range(int(WAIT_S / 0.05)):
                await asyncio.sleep(0.05)
                writer.write(chunked(b"data: more\n\n"))
                await writer.drain()

    server = await start_server(endless_stream)
    transport = new_transport()
    async with timeout(WAIT_S), httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", f"{server.url}/stream") as resp:
            async for part in resp.aiter_raw():
                assert part.startswith(b"data: one")
                break
        # the body's aclose closed httpcore's stream: an unfinished HTTP/1.1 body cannot be reused
        assert transport.pool.connections == []
        await wait_for_condition(lambda: server.closed == 1)
