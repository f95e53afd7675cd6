"""The data a plan reads: where each phase's files are, what is still to fetch, and what a run read.

`validate` lists the plan's Hub files as cached or to fetch (with their size) and passes either way;
`data pull` fetches them; `run` fetches what is missing before anything starts and refuses, saying to run
`data pull` where the Hub is reachable, when it cannot; the runner reads only the cache and records, per
file, the revision and sha256 it read (provenance.json `datasets`, summary.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runners.datasets.hub import CachedFile, HubError, RemoteFile, cache_path, cached, fetch, file_sha256, remote
from runners.plan.data_refs import DataRef, HubFile, LocalFile, parse_data_ref
from runners.plan.load import LoadedPlan
from runners.plan.phases import phase_data

PULL_HINT = "run `gb10-console data pull PLAN` where the Hub is reachable"


class DataUnavailable(Exception):
    """A phase's data file that the runner cannot read; the message says what to do."""


@dataclass(frozen=True)
class PhaseFile:
    """One data field of one phase: `phases[index].field` and what it refers to."""

    phase: str
    index: int
    field: str
    ref: DataRef

    @property
    def where(self) -> str:
        """`phases[1].dataset`: the plan field, as errors name it."""
        return f"phases[{self.index}].{self.field}"


@dataclass(frozen=True)
class HubStatus:
    """A Hub file a plan reads, cached (with its checked copy) or still to fetch (with what that costs)."""

    ref: HubFile
    fields: tuple[str, ...]
    copy: CachedFile | None
    to_fetch: RemoteFile | None


def phase_files(loaded: LoadedPlan) -> list[PhaseFile]:
    """Every data field of the plan's phases that names a file, in plan order."""
    return [
        PhaseFile(phase.name, i, field, ref)
        for i, phase in enumerate(loaded.plan.phases)
        for field, ref in phase_data(phase).items()
    ]


def hub_files(loaded: LoadedPlan) -> dict[HubFile, tuple[str, ...]]:
    """The distinct Hub files the plan reads, each with the fields that name it."""
    out: dict[HubFile, tuple[str, ...]] = {}
    for item in phase_files(loaded):
        if isinstance(item.ref, HubFile):
            out[item.ref] = (*out.get(item.ref, ()), item.where)
    return out


def hub_status(loaded: LoadedPlan) -> list[HubStatus]:
    """Each Hub file of the plan: its checked cached copy, else what a fetch would bring (the Hub is asked
    only for files not cached, and never when HF_HUB_OFFLINE is set). A damaged copy raises HubError."""
    out: list[HubStatus] = []
    gone: RemoteFile | None = None  # the Hub did not answer: not asked again for the other files
    for ref, fields in hub_files(loaded).items():
        copy = cached(ref)
        to_fetch = None
        if copy is None:
            to_fetch = remote(ref) if gone is None else RemoteFile(ref, None, None, "the Hub did not answer", True)
            gone = to_fetch if to_fetch.unreachable else gone
        out.append(HubStatus(ref, fields, copy, to_fetch))
    return out


def pull(loaded: LoadedPlan, say: Callable[[str], None]) -> list[str]:
    """Fetch every Hub file of the plan not yet cached (with the client's progress bar); returns the errors."""
    errors: list[str] = []
    unreachable = False  # once the Hub did not answer, the other files come from the cache or not at all
    for ref, fields in hub_files(loaded).items():
        try:
            copy = cached(ref)
            if copy is None and unreachable:
                errors.append(f"{ref.label} is not in the Hugging Face cache either; {PULL_HINT}")
                continue
            if copy is None:
                say(f"fetching {ref.label} for {', '.join(fields)}")
                copy = fetch(ref)
        except HubError as exc:
            errors.append(str(exc))
            unreachable = unreachable or exc.unreachable
            continue
        say(f"cached {ref.label}: {copy.size:,} bytes, commit {copy.commit}, sha256 {copy.sha256}")
    return errors


def data_path(loaded: LoadedPlan, value: str, field: str) -> Path:
    """The local file a phase's data field reads: the plan-relative path, or the Hub file's cached copy
    (never fetched here); raises DataUnavailable when a Hub file is not cached."""
    ref = parse_data_ref(value, field)
    if isinstance(ref, LocalFile):
        return loaded.resolve(ref.path)
    found = cache_path(ref)
    if found is None:
        raise DataUnavailable(f"{field} {ref.label} is not in the Hugging Face cache; {PULL_HINT}, then `--resume`")
    return found


def data_records(loaded: LoadedPlan) -> tuple[list[dict], list[str]]:
    """What the run reads, per phase field: the file, its sha256 and size, and for a Hub file the repository,
    the pinned revision and the commit of the cached snapshot. Returns (records, errors): a Hub file not
    cached or damaged, or an unreadable local file, is an error saying what to do."""
    records, errors = [], []
    copies: dict[HubFile, CachedFile | None] = {}
    for item in phase_files(loaded):
        ref = item.ref
        record: dict = {"phase": item.phase, "field": item.field}
        if isinstance(ref, HubFile):
            try:
                copy = copies[ref] if ref in copies else cached(ref)
            except HubError as exc:
                copy = None
                errors.append(f"{item.where}: {exc}")
            else:
                if copy is None:
                    errors.append(f"{item.where}: {ref.label} is not in the Hugging Face cache; {PULL_HINT}")
            copies[ref] = copy
            if copy is None:
                continue
            record |= {
                "source": ref.uri, "name": ref.name, "repo": ref.repo_id, "revision": ref.revision,
                "commit": copy.commit, "path": ref.path, "file": str(copy.path), "bytes": copy.size,
                "sha256": copy.sha256,
            }  # fmt: skip
        else:
            file = loaded.resolve(ref.path)
            try:
                record |= {"source": ref.path, "file": str(file), "bytes": file.stat().st_size,
                           "sha256": file_sha256(file)}  # fmt: skip
            except OSError as exc:
                errors.append(f"{item.where}: {file} cannot be read ({exc.strerror or exc})")
                continue
        records.append(record)
    return records, errors
