"""Hub files in the user's Hugging Face cache: what is cached, what a fetch would cost, the fetch, and its check.

Everything goes through the Hugging Face Hub client, with the environment every HF tool reads: HF_HOME or
HF_HUB_CACHE (where the cache is), HF_ENDPOINT (which Hub), HF_TOKEN (gated repositories), HF_HUB_OFFLINE=1
(the cache alone, never the network). A file is addressed at the revision its plan pins, so the cache's
snapshot of that revision is used without asking the Hub again.

The check: the Hub names a large (LFS) file's blob by its sha256, and the client stores it under that name;
a cached blob whose content hashes to anything else is refused as damaged. Every fetch and every run start
hashes the file, so the run records which bytes it read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from runners.plan.data_refs import HubFile

METADATA_TIMEOUT_S = 10.0  # one HEAD request for a file's size and revision
HASH_CHUNK = 1 << 22
_SHA256 = re.compile(r"[0-9a-f]{64}")


class HubError(Exception):
    """A Hub file that cannot be had: the message names the file and says what to do; `unreachable`: the Hub
    did not answer (offline, or no connection), so asking it for other files is pointless."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class CachedFile:
    """A Hub file in the local cache: its path, the commit its snapshot is of, size and sha256."""

    ref: HubFile
    path: Path
    commit: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RemoteFile:
    """What fetching a Hub file that is not cached would cost, or why that cannot be told (`unreachable`: the
    Hub did not answer)."""

    ref: HubFile
    size: int | None
    commit: str | None
    reason: str | None = None
    unreachable: bool = False


def _quiet_client() -> None:
    """The client logs each retry of a refused connection as a warning; what failed is reported here instead."""
    from huggingface_hub.utils import logging

    logging.set_verbosity_error()


def offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) keeps the Hub client to its cache."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    """The Hub the client talks to (HF_ENDPOINT, else huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def cache_dir() -> Path:
    """The Hub cache the client reads and fills (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cache_path(ref: HubFile) -> Path | None:
    """Where the cache holds `ref` at its pinned revision (None: not cached); no check, no network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ref.repo_id, ref.path, revision=ref.revision, repo_type=ref.repo_type)
    return Path(found) if isinstance(found, str) else None


def cached(ref: HubFile) -> CachedFile | None:
    """The cached copy of `ref` at its pinned revision, checked (None: not cached); HubError if it is damaged."""
    path = cache_path(ref)
    return None if path is None else _checked(ref, path)


def remote(ref: HubFile) -> RemoteFile:
    """Ask the Hub what fetching `ref` would bring (its size); offline or unreachable gives the reason instead."""
    if offline():
        return RemoteFile(ref, None, None, "HF_HUB_OFFLINE is set: the Hub is not asked", unreachable=True)
    from huggingface_hub import hf_hub_download

    _quiet_client()
    try:
        info = hf_hub_download(
            ref.repo_id, ref.path, repo_type=ref.repo_type, revision=ref.revision,
            etag_timeout=METADATA_TIMEOUT_S, dry_run=True,
        )  # fmt: skip
    except Exception as exc:  # the client raises its own errors, httpx's, or OSError
        if _unreachable(exc):
            return RemoteFile(ref, None, None, f"the Hub at {endpoint()} did not answer: {_reason(exc)}", True)
        return RemoteFile(ref, None, None, _why(ref, exc))
    return RemoteFile(ref, info.file_size, info.commit_hash)


def fetch(ref: HubFile) -> CachedFile:
    """Download `ref` into the cache with the client's progress bar (a cached copy is used as it is) and check it;
    raises HubError."""
    from huggingface_hub import hf_hub_download

    _quiet_client()
    try:
        path = hf_hub_download(
            ref.repo_id, ref.path, repo_type=ref.repo_type, revision=ref.revision, etag_timeout=METADATA_TIMEOUT_S
        )
    except Exception as exc:  # the client raises its own errors, httpx's, or OSError (a full disk)
        raise HubError(_why(ref, exc), unreachable=_unreachable(exc)) from None
    return _checked(ref, Path(path))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks; raises OSError."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _checked(ref: HubFile, path: Path) -> CachedFile:
    """Hash the cached file; a blob named by a sha256 that its bytes do not have is damaged."""
    try:
        sha256 = file_sha256(path)
        blob = path.resolve()
    except OSError as exc:
        raise HubError(f"{ref.label}: the cached copy {path} cannot be read ({exc.strerror or exc})") from None
    if _SHA256.fullmatch(blob.name) and blob.name != sha256:
        raise HubError(
            f"{ref.label}: the cached copy {blob} is damaged (its sha256 is {sha256}, the Hub's is {blob.name}); "
            f"delete it and run `gb10-console data pull` again"
        )
    return CachedFile(ref, path, _snapshot_commit(path), blob.stat().st_size, sha256)


def _snapshot_commit(path: Path) -> str:
    """The commit a cache path's snapshot is of (`…/snapshots/<commit>/<file>`)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"


def _why(ref: HubFile, exc: BaseException) -> str:
    """What went wrong fetching `ref`, said for a person, with what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{ref.label} on {endpoint()}"
    if isinstance(exc, GatedRepoError):
        return f"{where}: the repository is gated; accept its terms on the Hub and set HF_TOKEN (or `hf auth login`)"
    if isinstance(exc, RepositoryNotFoundError):
        return f"{where}: no such repository (or it is private: set HF_TOKEN)"
    if isinstance(exc, RevisionNotFoundError):
        return f"{where}: the repository has no revision {ref.revision!r}"
    if isinstance(exc, RemoteEntryNotFoundError):
        return f"{where}: no file {ref.path!r} at revision {ref.revision}"
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return (
            f"{ref.label} is not in the Hugging Face cache ({cache_dir()}) and the Hub cannot be reached "
            f"({_reason(exc)}); run `gb10-console data pull PLAN` where the Hub is reachable"
        )
    if isinstance(exc, OSError) and not _is_http(exc):
        return f"{where}: cannot write the cache {cache_dir()}: {exc.strerror or exc}"
    return f"{where}: the Hub cannot be reached ({_reason(exc)}); check HF_ENDPOINT and the network"


def _unreachable(exc: BaseException) -> bool:
    """Whether the Hub did not answer at all (offline mode, no connection, a timeout) rather than refused."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return True
    return not isinstance(exc, HfHubHTTPError) and _is_http(exc)


def _is_http(exc: BaseException) -> bool:
    """Whether an OSError subclass is the Hub client's HTTP or connection error rather than the disk's."""
    return type(exc).__module__.split(".")[0] in {"huggingface_hub", "httpx", "httpx2", "httpcore", "requests"}


def _reason(exc: BaseException) -> str:
    """The first line of the error at the root of `exc` (the client wraps a refused connection in its own
    advice), with its type."""
    for _ in range(8):  # bounded: a cause chain is short
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
