"""A loopback Hugging Face Hub for the tests: `../shared`'s datasets served as the Hub serves dataset files.

The real Hub client (`HF_ENDPOINT=http://127.0.0.1:PORT`) resolves `/datasets/{repo}/resolve/{revision}/{path}`
with a HEAD, then GETs it: the answer carries `X-Repo-Commit`, an `ETag` (a large file's sha256, as for LFS
files) and `Content-Length`; a missing repository, revision or file is a 404 with the Hub's `X-Error-Code`.
Served: ShareGPT's file of the pinned revision (the 500-conversation slice in ../shared, same format), and
GSM8K's `main` parquet files, written here from ../shared's JSONL with the Hub's columns (question, answer).
Every request is counted per path, so a test can tell the cache was used and the Hub not asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from runners.plan.data_refs import GSM8K_REPO, GSM8K_REVISION, NAMED, SHAREGPT_REPO, SHAREGPT_REVISION
from tests.support.plans import Plan, engine_serve
from tests.support.project import ROOT, SHARED

GSM8K_JSONL = SHARED / "data" / "gsm8k"
SHAREGPT_JSON = SHARED / "data" / "sharegpt" / "sharegpt_v3_filtered_500.json"
NO_SHARED = f"no shared data at {SHARED}/data (the loopback Hub serves its GSM8K and ShareGPT files)"


@dataclass
class Repo:
    """A dataset repository at one commit; `aliases` are other revisions (branches, tags) naming it."""

    commit: str
    files: dict[str, bytes]
    aliases: tuple[str, ...] = ("main",)


@dataclass
class LoopbackHub:
    """The served repositories (by repo id) and what was asked for (`requests["GET main/test…"]`)."""

    repos: dict[str, Repo]
    requests: Counter = field(default_factory=Counter)
    url: str = ""

    def asked(self, path: str) -> int:
        """How many requests named this file, HEAD and GET together."""
        return sum(n for key, n in self.requests.items() if key.split(" ", 1)[1] == path)


def gsm8k_parquet(jsonl: Path) -> bytes:
    """A GSM8K JSONL split as the Hub's parquet: string columns `question` and `answer`, one row per line."""
    import io

    import pyarrow
    import pyarrow.parquet

    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    table = pyarrow.table(
        {"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]},
        schema=pyarrow.schema([("question", pyarrow.string()), ("answer", pyarrow.string())]),
    )
    out = io.BytesIO()
    pyarrow.parquet.write_table(table, out)
    return out.getvalue()


def shared_repos() -> dict[str, Repo]:
    """The repositories of the named datasets, with ../shared's files at the paths and revisions pinned."""
    gsm8k, sharegpt = NAMED["gsm8k"], NAMED["sharegpt"]["dataset"]
    return {
        GSM8K_REPO: Repo(
            GSM8K_REVISION,
            {
                gsm8k["test_file"].path: gsm8k_parquet(GSM8K_JSONL / "test.jsonl"),
                gsm8k["train_file"].path: gsm8k_parquet(GSM8K_JSONL / "train.jsonl"),
            },
        ),
        SHAREGPT_REPO: Repo(SHAREGPT_REVISION, {sharegpt.path: SHAREGPT_JSON.read_bytes()}),
    }


@contextmanager
def loopback_hub(repos: dict[str, Repo]) -> Iterator[LoopbackHub]:
    """Serve `repos` on a free loopback port until the block ends; the server thread is joined on exit."""
    hub = LoopbackHub(repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub")
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _handler(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read `hub.requests`
            pass

        def do_HEAD(self) -> None:
            self._resolve(body=False)

        def do_GET(self) -> None:
            self._resolve(body=True)

        def _resolve(self, body: bool) -> None:
            prefix = "/datasets/"
            path = unquote(self.path.split("?", 1)[0])
            if not path.startswith(prefix) or "/resolve/" not in path:
                return self._error(404, "RepoNotFound")
            repo_id, _, rest = path[len(prefix) :].partition("/resolve/")
            revision, _, file = rest.partition("/")
            hub.requests[f"{self.command} {file}"] += 1
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound")
            if revision != repo.commit and revision not in repo.aliases:
                return self._error(404, "RevisionNotFound")
            data = repo.files.get(file)
            if data is None:
                return self._error(404, "EntryNotFound", repo.commit)
            self.send_response(200)
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _error(self, status: int, code: str, commit: str | None = None) -> None:
            message = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(message)

    return Handler


# A plan that reads every named dataset: what `loopback_hf_session` pulls, and what the dataset tests run.
NAMED_PLAN = Plan(
    "named-data",
    {"kind": "process", "ready_timeout_s": 60, **engine_serve()},
    [{"name": "split8", "env": {"CUTE_WO_SPLIT": "8"}}],
    [
        {"name": "chat", "kind": "sharegpt", "dataset": "sharegpt", "requests": 4, "concurrency": 2,
         "max_tokens": 8, "ignore_eos": True, "http_timeout_s": 30},
        {"name": "gsm8k", "kind": "gsm8k", "test_file": "gsm8k", "train_file": "gsm8k", "questions": 3,
         "fewshot": 1, "max_tokens": 8, "max_prompt_chars": 2000, "http_timeout_s": 30},
    ],
)  # fmt: skip


@dataclass
class LoopbackHf:
    """A loopback Hub and an HF cache (`home`, an HF_HOME) that NAMED_PLAN's files were pulled into."""

    hub: LoopbackHub
    home: Path

    def env(self, home: Path | None = None, online: bool = True) -> dict[str, str]:
        """The environment of a process that uses this Hub (online) or only the cache at `home` (default: the
        filled one)."""
        return {**os.environ, "HF_HOME": str(home or self.home), "HF_ENDPOINT": self.hub.url,
                "HF_HUB_OFFLINE": "0" if online else "1"}  # fmt: skip


def cli(*args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    """`gb10-console ARGS` as a subprocess with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
        env=env,
    )  # fmt: skip


@contextmanager
def loopback_hf_session(directory: Path) -> Iterator[LoopbackHf | None]:
    """A loopback Hub of ../shared's files and a cache filled from it by `data pull` (None: no ../shared)."""
    if not (GSM8K_JSONL / "test.jsonl").is_file() or not SHAREGPT_JSON.is_file():
        yield None
        return
    with loopback_hub(shared_repos()) as hub:
        hf = LoopbackHf(hub, directory / "hf-home")
        plan = NAMED_PLAN.write(directory)
        pulled = cli("data", "pull", str(plan), env=hf.env())
        assert pulled.returncode == 0, pulled.stderr
        yield hf
