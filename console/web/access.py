"""Who may use serve-web: the secret token its printed URL carries and the addresses that are its own.

Pure rules, no server: `Access.refusal` says why a request is refused (None: let it in). The token is never
in a reason, a repr or a log line; it leaves this process only in the URL serve-web prints.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field

TOKEN_BYTES = 32
TOKEN_PARAM = "token"


@dataclass(frozen=True)
class Access:
    """The token and own addresses of one serve-web start on a loopback `host`:`port`; `names` are the host and,
    for a name (`localhost`), the addresses it resolves to: the server listens on each of them."""

    host: str
    port: int
    token: str = field(repr=False)
    names: tuple[str, ...]

    @classmethod
    def fresh(cls, host: str, port: int) -> Access:
        """A new random token (secrets.token_urlsafe) for this start; a restart invalidates old URLs."""
        resolved = {address[4][0] for address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        return cls(host, port, secrets.token_urlsafe(TOKEN_BYTES), (host, *sorted(resolved - {host})))

    @property
    def authorities(self) -> frozenset[str]:
        """The Host values a browser sends for this server: each of its names at this port (127.0.0.1 serves
        only 127.0.0.1: `localhost` may reach ::1, where another program could listen on this port)."""
        return frozenset(f"{_bracketed(name)}:{self.port}" for name in self.names)

    @property
    def origins(self) -> frozenset[str]:
        """This server's own origins (scheme://host:port), the only ones whose pages may open its websocket."""
        return frozenset(f"http://{authority}" for authority in self.authorities)

    @property
    def base_url(self) -> str:
        """http://HOST:PORT, without the token."""
        return f"http://{_bracketed(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to open, token included: printed to the terminal once, written nowhere."""
        return f"{self.base_url}/?{TOKEN_PARAM}={self.token}"

    @property
    def cookie_name(self) -> str:
        """The cookie that carries the token after the first page load (per port: cookies ignore ports)."""
        return f"gb10-console-{self.port}"

    def refusal(self, host: str, origin: str | None, websocket: bool, offered_token: str | None) -> str | None:
        """Why a request is refused, in words without the token; None when it comes from this server's own page
        (Host one of ours, Origin ours if sent and always sent for a websocket) and carries the token."""
        if host not in self.authorities:
            return f"Host {host!r} is not this server's address (open the URL serve-web printed)"
        if origin is not None and origin not in self.origins:
            return f"Origin {origin!r} is not this server's page"
        if websocket and origin is None:
            return "a websocket without an Origin header"
        if offered_token is None or not secrets.compare_digest(offered_token.encode(), self.token.encode()):
            return "no valid token: open the URL serve-web printed (it ends in ?token=...)"
        return None


def _bracketed(host: str) -> str:
    """An IPv6 literal in brackets, as URLs and Host headers write it."""
    return f"[{host}]" if ":" in host else host
