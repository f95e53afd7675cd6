"""The replay client's httpx transport: httpcore's connection pool over plain asyncio protocols.

`ReplayTransport` is an `httpx.AsyncBaseTransport` built on public API only: it owns an
`httpcore.AsyncConnectionPool` (no connection cap) whose network backend is `AsyncioBackend`,
turns each `httpx.Request` into an `httpcore.Request` and the answer back into an
`httpx.Response`, and raises httpx's exception for every httpcore one (at send and while the
body streams), since the client sorts failures by httpx exception type.

The backend exists because httpcore's default one reads through anyio streams and opens a cancel
scope per read; at a hundred SSE streams on 2 cores that per-chunk cost decides how far the client
falls behind the server. This backend reads straight from a protocol buffer. It does not enforce
httpcore's per-read timeouts: every replay request runs under its own total deadline
(`asyncio.timeout`), which is the bound that matters for a body that trickles. Connects, TLS
handshakes and writes blocked on a full socket buffer keep their timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from engine.deadlines import timeout as deadline

HIGH_WATER = 1 << 20


class _SocketProtocol(asyncio.Protocol):
    """Buffers what arrives; `read` waits for data or the end of the connection."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: Exception | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.error = True, exc
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    async def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of what has arrived, waiting for some; b"" once the peer has closed."""
        while not self.buffer and not self.closed:
            self.reader = self.loop.create_future()
            await self.reader
        if not self.buffer:
            if self.error is not None:
                raise httpcore.ReadError(f"connection lost: {self.error}")
            return b""
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self.paused and len(self.buffer) < HIGH_WATER // 4 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's view of one connection."""

    def __init__(self, transport: asyncio.Transport, protocol: _SocketProtocol) -> None:
        self._transport, self._protocol = transport, protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._protocol.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._protocol.closed:
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if self._protocol.writable is not None:
            try:
                async with deadline(timeout):
                    await self._protocol.writable
            except (TimeoutError, asyncio.TimeoutError):  # the latter is not TimeoutError on Python 3.10
                raise httpcore.WriteTimeout(f"the socket buffer stayed full for {timeout:g} s") from None

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        """Upgrade to TLS (https targets)."""
        loop = asyncio.get_running_loop()
        try:
            async with deadline(timeout):
                tls = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except (TimeoutError, asyncio.TimeoutError):  # the latter is not TimeoutError on Python 3.10
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        assert tls is not None
        self._protocol.transport = tls  # type: ignore[assignment]
        return _Stream(tls, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks of a stream: the socket, TLS details, and whether an idle one is readable."""
        if info == "is_readable":
            return bool(self._protocol.buffer) or self._protocol.closed
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info in ("client_addr", "server_addr"):
            return self._transport.get_extra_info("sockname" if info == "client_addr" else "peername")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections as asyncio protocols."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Open a TCP connection under `timeout`."""
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with deadline(timeout):
                transport, protocol = await loop.create_connection(_SocketProtocol, host, port, local_addr=local)
        except (TimeoutError, asyncio.TimeoutError):  # the latter is not TimeoutError on Python 3.10
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        """Open a unix-socket connection under `timeout`."""
        loop = asyncio.get_running_loop()
        try:
            async with deadline(timeout):
                transport, protocol = await loop.create_unix_connection(_SocketProtocol, path)
        except (TimeoutError, asyncio.TimeoutError):  # the latter is not TimeoutError on Python 3.10
            raise httpcore.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# httpcore's exception -> httpx's of the same meaning. httpcore 1.x has no close error of its own:
# a network error while closing a body or the pool is httpx.CloseError (`httpx_error(closing=True)`).
HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
}


def httpx_error(exc: Exception, request: httpx.Request | None, closing: bool = False) -> httpx.TransportError | None:
    """httpx's exception for httpcore's `exc`, tied to `request`; None when `exc` is not httpcore's.

    The most specific match wins (httpcore.ReadTimeout -> httpx.ReadTimeout, not TimeoutException).
    """
    if closing and isinstance(exc, httpcore.NetworkError):
        return httpx.CloseError(str(exc), request=request)
    for cls in type(exc).__mro__:
        mapped = HTTPX_ERRORS.get(cls)
        if mapped is not None:
            return mapped(str(exc), request=request)
    return None


@contextlib.contextmanager
def httpx_errors(request: httpx.Request | None, closing: bool = False) -> Iterator[None]:
    """Raise httpcore's exceptions from inside as httpx's (`httpx_error`), the original as `__cause__`."""
    try:
        yield
    except Exception as exc:
        mapped = httpx_error(exc, request, closing)
        if mapped is None:
            raise
        raise mapped from exc


class ReplayTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 through an uncapped httpcore pool on `AsyncioBackend`; it raises httpx's exceptions."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=None,
            network_backend=AsyncioBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on a pooled connection; the response body streams as it arrives."""
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with httpx_errors(request):
            response = await self.pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=ResponseBody(response.stream, request),  # type: ignore[arg-type]  # an async pool's body is async
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        with httpx_errors(None, closing=True):
            await self.pool.aclose()


class ResponseBody(httpx.AsyncByteStream):
    """httpcore's response stream as httpx's, raising httpx's exceptions while it is read and closed."""

    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self.stream = stream
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors(self.request):
            async for part in self.stream:
                yield part

    async def aclose(self) -> None:
        """Release the connection: back to the pool after a complete body, closed otherwise."""
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            with httpx_errors(self.request, closing=True):
                await aclose()


def replay_transport(ssl_context: ssl.SSLContext) -> ReplayTransport:
    """The replay client's transport: no connection cap, sockets on the asyncio backend."""
    return ReplayTransport(ssl_context)
