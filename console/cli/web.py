"""`gb10-console serve-web [RUN_DIR]`: the same console in a browser, through textual-serve, on loopback only.

Every browser tab gets its own console process (`gb10-console attach RUN_DIR`), so closing a tab never
touches the soak. Without RUN_DIR it shows the newest live run under ./runs, else the newest run. Each start
makes a new token, printed in the URL and nowhere else; only this server's own page with it gets in
(console/web).
"""

from __future__ import annotations

import argparse
import errno
import shlex
import socket
import sys
from pathlib import Path

from rich.console import Console

from console.cli.command import CliError, Subparsers
from console.web.access import Access
from runners.run.paths import default_runs_dir
from runners.run.run_index import list_runs, newest_live
from runners.run.rundir import RunDir
from runners.run.runs import open_run

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BIND_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


class WebError(CliError):
    """serve-web cannot start; the message says why and what to do (exit 2)."""


def register(sub: Subparsers) -> None:
    """Add `serve-web`."""
    web = sub.add_parser("serve-web", help="serve the console to a browser on 127.0.0.1 (textual-serve)")
    web.add_argument("run_dir", nargs="?", type=Path, help="the run to show (default: newest live run in ./runs)")
    web.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    web.add_argument("--host", default="127.0.0.1", choices=LOOPBACK, help="loopback only (default 127.0.0.1)")
    web.add_argument("--readonly", action="store_true", help="browser consoles cannot abort, resume or pause")
    web.set_defaults(handler=serve_web)


def pick_run(run_dir: Path | None, runs_dir: Path) -> RunDir:
    """The run to serve: RUN_DIR, else the newest live run under `runs_dir`, else its newest run."""
    if run_dir is not None:
        return open_run(run_dir)
    entries = list_runs(runs_dir)
    chosen = newest_live(entries) or (entries[0] if entries else None)
    if chosen is None:
        raise WebError(f"no run under {runs_dir} to show; give RUN_DIR or start one with `gb10-console run PLAN`")
    return chosen.run


def console_command(run: RunDir, readonly: bool) -> str:
    """The shell command each browser session runs: this Python's `gb10-console attach RUN_DIR`."""
    argv = [sys.executable, "-m", "console.cli", "attach", str(run.root.resolve())]
    return shlex.join(argv + (["--readonly"] if readonly else []))


def check_port_free(host: str, port: int) -> None:
    """Bind every address `host` resolves to at `port` (as the server will, with SO_REUSEADDR) and let go; WebError
    naming the address when one is taken, so the banner is printed only for a server that can listen."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise WebError(f"cannot resolve {host}: {exc}") from None
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise WebError(_bind_problem(host, port, exc)) from None


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port} is already in use (another serve-web?); pick a free port with --port N, "
            f"or stop what listens there (`ss -ltnp 'sport = :{port}'` shows it)"
        )
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def serve_web(args: argparse.Namespace, out: Console) -> int:
    """Serve until Ctrl-C; WebError (exit 2, one line) when it cannot."""
    try:
        from console.web.server import GuardedServer
    except ImportError:
        raise WebError("serve-web needs textual-serve: `pip install textual-serve` (make venv installs it)") from None
    chosen = pick_run(args.run_dir, default_runs_dir())
    check_port_free(args.host, args.port)
    info = chosen.info()
    access = Access.fresh(args.host, args.port)
    print(f"serving the console for {info.get('run_id')} at {access.url} (Ctrl-C stops it)", flush=True)
    server = GuardedServer(console_command(chosen, args.readonly), access, title=f"gb10-console {info.get('run_id')}")
    try:
        server.serve()
    except OSError as exc:
        if exc.errno not in BIND_ERRNOS:
            raise
        raise WebError(_bind_problem(args.host, args.port, exc)) from None  # taken between the check and its bind
    return 0
