"""Where a phase's data comes from: a local file, a dataset named here, or a file on the Hugging Face Hub.

A phase's `dataset`, `test_file`, `train_file` or `trace` field takes
- a name from `NAMED` (`dataset = "sharegpt"`, `test_file = "gsm8k"`): a pinned file on the Hub; the field
  picks the file where a name has several (GSM8K's test and train splits);
- `hf://owner/repo@revision/path` (or `hf://datasets/owner/repo@revision/path`): a file of a dataset
  repository on the Hub, at a revision the plan pins (a commit sha, a tag or a branch);
- anything else: a local file, relative to the plan (`./gsm8k` is the local file named like a dataset).

Hub files are fetched with the Hugging Face Hub client into the user's HF cache (`runners/datasets/`).
Pure: parsing only, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HUB_SCHEME = "hf://"
DATA_FIELDS = ("dataset", "test_file", "train_file", "trace")

# GSM8K as lm-evaluation-harness reads it (`dataset_path: gsm8k`, `dataset_name: main`): the parquet files of
# the `main` config of openai/gsm8k, at the commit that carries them today.
GSM8K_REPO = "openai/gsm8k"
GSM8K_REVISION = "740312add88f781978c0658806c59bc2815b9866"
# ShareGPT as vLLM's `bench serve --dataset-name sharegpt` and aiperf's ShareGPT loader read it.
SHAREGPT_REPO = "anon8231489123/ShareGPT_Vicuna_unfiltered"
SHAREGPT_REVISION = "192ab2185289094fc556ec8ce5ce1e8e587154ca"

_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub repository at a revision; `name` is the catalogue name it was written as, if any."""

    repo_id: str
    revision: str
    path: str
    repo_type: str = "dataset"
    name: str | None = None

    @property
    def uri(self) -> str:
        """The `hf://` spelling (a dataset repository's, which needs no `datasets/` prefix)."""
        return f"{HUB_SCHEME}{self.repo_id}@{self.revision}/{self.path}"

    @property
    def label(self) -> str:
        """How a person reads it: `gsm8k (openai/gsm8k@740312add88f main/test-….parquet)` for a named dataset (a
        commit sha shortened to 12 digits), the URI otherwise."""
        if not self.name:
            return self.uri
        revision = self.revision[:12] if _COMMIT.fullmatch(self.revision) else self.revision
        return f"{self.name} ({self.repo_id}@{revision} {self.path})"


@dataclass(frozen=True)
class LocalFile:
    """A local file as the plan wrote it (relative to the plan's directory, `~` expanded)."""

    path: str


DataRef = HubFile | LocalFile

NAMED: dict[str, dict[str, HubFile]] = {
    "sharegpt": {
        "dataset": HubFile(
            SHAREGPT_REPO, SHAREGPT_REVISION, "ShareGPT_V3_unfiltered_cleaned_split.json", name="sharegpt"
        )
    },
    "gsm8k": {
        "test_file": HubFile(GSM8K_REPO, GSM8K_REVISION, "main/test-00000-of-00001.parquet", name="gsm8k"),
        "train_file": HubFile(GSM8K_REPO, GSM8K_REVISION, "main/train-00000-of-00001.parquet", name="gsm8k"),
    },
}


class DataRefError(ValueError):
    """A data field's value that names nothing this tool can read; the message says what to write."""


def names_for(field: str) -> list[str]:
    """The dataset names a field takes (`dataset`: sharegpt; `test_file`/`train_file`: gsm8k)."""
    return [name for name, files in NAMED.items() if field in files]


def parse_data_ref(value: str, field: str) -> DataRef:
    """What `value` in a phase's `field` refers to; raises DataRefError for a malformed `hf://` or a name
    given to a field that does not take it."""
    if value in NAMED:
        files = NAMED[value]
        if field not in files:
            takes = ", ".join(names_for(field)) or "no name"
            raise DataRefError(
                f'"{value}" is a dataset for {" or ".join(files)}, not {field} ({field} takes {takes}, '
                f'hf://owner/repo@revision/path or a file; "./{value}" is a local file)'
            )
        return files[field]
    if value.startswith(HUB_SCHEME):
        return _parse_hub(value)
    return LocalFile(value)


def _parse_hub(value: str) -> HubFile:
    """`hf://[datasets/]owner/repo@revision/path/in/repo` as a HubFile."""
    rest = value[len(HUB_SCHEME) :]
    if rest.startswith("datasets/"):
        rest = rest[len("datasets/") :]
    elif rest.startswith(("models/", "spaces/")):
        raise DataRefError(f"{value}: only dataset repositories are read (hf://owner/repo@revision/path)")
    repo_and_rev, slash, path = rest.partition("/")
    if "@" not in repo_and_rev:  # the owner is before the first slash: the repo and revision come after it
        owner = repo_and_rev
        repo_and_rev, slash, path = path.partition("/")
        repo_and_rev = f"{owner}/{repo_and_rev}"
    repo_id, at, revision = repo_and_rev.partition("@")
    if not at or not revision:
        raise DataRefError(
            f"{value}: pin a revision (hf://owner/repo@revision/path: a commit sha, a tag or a branch) so every "
            "run reads the same file"
        )
    if not _REPO_ID.fullmatch(repo_id):
        raise DataRefError(f"{value}: {repo_id!r} is not a repository id (owner/name)")
    if not slash or not path or path.endswith("/") or ".." in path.split("/"):
        raise DataRefError(f"{value}: name a file inside the repository after the revision (…@{revision}/path)")
    return HubFile(repo_id, revision, path)
