"""An httpx transport whose sockets are plain asyncio protocols (httpcore's network-backend hook).

httpcore's default backend reads through anyio streams and opens a cancel scope per read; at a
hundred SSE streams on 2 cores that per-chunk cost decides how far the client falls behind the
server. This backend reads straight from a protocol buffer. It does not enforce httpcore's
per-read timeouts: every replay request runs under its own total deadline (`asyncio.timeout`),
which is the bound that matters for a body that trickles. Connects keep their timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
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
            async with deadline(timeout):
                await self._protocol.writable

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
        except TimeoutError:
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
        except TimeoutError:
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
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def replay_transport(ssl_context: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """An httpx transport with no connection cap, on the asyncio backend."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=httpx.Limits(max_connections=None))
    transport._pool = httpcore.AsyncConnectionPool(  # the documented backend hook; httpx does not expose it
        ssl_context=ssl_context,
        max_connections=None,
        max_keepalive_connections=None,
        network_backend=AsyncioBackend(),
    )
    return transport
