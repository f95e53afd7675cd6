"""vLLM's profiler settings as a plan's serve command gives them, read the way vLLM 0.32 reads its command line.

vLLM 0.32 takes its profiler only from `--profiler-config` (vllm/config/profiler.py `ProfilerConfig`), in two
forms (vllm/utils/argparse_utils.py `FlexibleArgumentParser.parse_args`):

- JSON: `--profiler-config '{"profiler": "torch", ...}'` or `--profiler-config={...}`; bare numbers may carry
  `k`/`K` suffixes (`2k` is 2000). Given twice, the last one wins.
- dotted: `--profiler-config.KEY VALUE` or `--profiler-config.KEY=VALUE`; VALUE is JSON when it parses
  (`false`, `200`), else a `k`/`K` number, else the string. vLLM merges every dotted flag into one object and
  appends it as one more `--profiler-config JSON`, so any dotted flag makes vLLM drop every JSON form.
The option's name may be spelled with underscores (`--profiler_config`). Values are validated as pydantic
does in JSON mode (`"no"`, `0` and `false` are all false). vLLM 0.32 reads no `VLLM_TORCH_PROFILER_*`
variable (vllm/envs.py has none): env set that way is named in `ignored_env`, never applied.
Checked against vLLM 0.32's own parser on the forms in tests/plan/test_vllm_profiler.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runners.plan.serve_spec import DockerServe, ExternalServe, ProcessServe

T = TypeVar("T")
OPTION = "--profiler-config"
VLLM_DEFAULT = "vLLM 0.32 default"
LEGACY_ENV_PREFIXES = ("VLLM_TORCH_PROFILER_", "VLLM_TORCH_CUDA_PROFILE", "VLLM_PROFILER_")
_HUMAN_NUMBER = re.compile(r"\b(\d+(?:\.\d+)?)([kKmMgGtT])\b")
_MULTIPLIER = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One ProfilerConfig field as vLLM would see it, and where the value came from (an argument, or the default)."""

    value: T
    source: str


@dataclass(frozen=True)
class VllmProfilerSettings:
    """What vLLM 0.32 would make of the command's profiler options (defaults where it gives none).

    `form`: "json" or "dotted", the form vLLM takes the settings from (None: no option given).
    `configured`: some `--profiler-config` argument is present. `recognised`: the command is vLLM's
    (`vllm serve`, `python -m vllm.…`). `dropped`: JSON forms vLLM discards because dotted flags are present.
    `config_file`: where a `--config FILE` is given (its contents are not read here). `ignored_env`: where a
    `VLLM_TORCH_PROFILER_*`-style variable is set, which vLLM 0.32 ignores. `dump_cuda_time_total` is the
    option as given: vLLM builds its key_averages table after a trace when it is on and a device is traced
    (its CPU platform turns it off, and a CPU-only trace always gets a CPU-time table).
    """

    profiler: Setting[str | None]
    torch_profiler_dir: Setting[str]
    with_stack: Setting[bool]
    max_iterations: Setting[int]
    dump_cuda_time_total: Setting[bool]
    ignore_frontend: Setting[bool]
    form: Literal["json", "dotted"] | None
    configured: bool
    recognised: bool
    dropped: tuple[str, ...] = ()
    config_file: str | None = None
    ignored_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfilerConfigProblem:
    """A profiler option vLLM would refuse at start: where it is, the argument as written, and what is wrong."""

    where: str
    argument: str
    message: str

    def __str__(self) -> str:
        shown = self.argument if len(self.argument) <= 120 else self.argument[:117] + "..."
        return f"{self.where} {shown!r}: {self.message}; vLLM will refuse to start"


class _Fields(BaseModel):
    """The ProfilerConfig fields read here, with vLLM 0.32's types and defaults (the others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    profiler: Literal["torch", "cuda", "proton"] | None = None
    torch_profiler_dir: str = ""
    torch_profiler_with_stack: bool = True
    max_iterations: int = Field(0, ge=0)
    torch_profiler_dump_cuda_time_total: bool = True
    ignore_frontend: bool = False


def human_readable_int(text: str) -> int | None:
    """`1k` → 1000, `1K` → 1024, `2.5k` → 2500 (vLLM's `human_readable_int`); None when `text` is not one."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", text.strip())
    if match is None:
        return None
    number, suffix = match.groups()
    if suffix.isupper() and "." in number:
        return None  # vLLM refuses decimals with binary suffixes
    return int(float(number) * _MULTIPLIER[suffix])


def _expand_human_numbers(text: str) -> str:
    """Bare `2k`-style numbers outside JSON strings replaced by their value, as vLLM does before validating."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', text)
    for i in range(0, len(parts), 2):
        parts[i] = _HUMAN_NUMBER.sub(lambda m: str(human_readable_int(m.group())), parts[i])
    return "".join(parts)


def _option_name(arg: str) -> str:
    """`--profiler_config.max_iterations=3` → `--profiler-config.max_iterations` (underscores before the first dot)."""
    name = arg.split("=", 1)[0]
    head, dot, tail = name.partition(".")
    return head.replace("_", "-") + dot + tail


def is_vllm_command(argv: Sequence[str]) -> bool:
    """Whether argv starts vLLM: `vllm` (any path) or a `vllm.` module among its first three words."""
    return any(PurePosixPath(word).name == "vllm" or word.startswith("vllm.") for word in argv[:3])


def parse_profiler_args(argv: Sequence[str], where: Sequence[str]) -> VllmProfilerSettings | ProfilerConfigProblem:
    """vLLM 0.32's profiler settings from a command line; `where[i]` names argv[i] (e.g. `serve.command[7]`)."""
    json_forms: list[tuple[str, str, str]] = []  # (where, argument, value)
    dotted: dict[str, object] = {}
    dotted_from: dict[str, tuple[str, str]] = {}  # top-level key → (source, argument as written)
    config_file = None
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = _option_name(arg) if arg.startswith("--") else ""
        inline = "=" in arg
        value = arg.split("=", 1)[1] if inline else (argv[i + 1] if i + 1 < len(argv) else None)
        if name == "--config":
            config_file = where[i]
        if name != OPTION and not name.startswith(OPTION + "."):
            continue
        skip = not inline
        if value is None:
            return ProfilerConfigProblem(where[i], arg, "no value follows it")
        if name == OPTION:
            json_forms.append((where[i], arg if inline else f"{arg} {value}", value))
            continue
        key = name[len(OPTION) + 1 :]
        if key.endswith("+"):  # `--x.key+ a,b`: a list
            key, parsed = key[:-1], value.split(",")
        else:
            parsed = _dotted_value(value)
        _put(dotted, key.split("."), parsed)
        dotted_from[key.split(".")[0]] = (f"{where[i]} {OPTION}.{key}", arg if inline else f"{arg} {value}")
    recognised = is_vllm_command(argv)
    sources: dict[str, tuple[str, str]]
    if dotted:
        config, sources = dotted, dotted_from
        dropped = tuple(w for w, _, _ in json_forms)
    elif json_forms:
        at, argument, text = json_forms[-1]
        try:
            loaded = json.loads(_expand_human_numbers(text))
        except json.JSONDecodeError as exc:
            return ProfilerConfigProblem(at, argument, f"not JSON: {exc}")
        if not isinstance(loaded, dict):
            return ProfilerConfigProblem(at, argument, f"must be a JSON object, got {json.dumps(loaded)[:40]}")
        config, sources = loaded, dict.fromkeys(loaded, (f"{at} {OPTION} JSON", argument))
        dropped = tuple(w for w, _, _ in json_forms[:-1])
    else:
        config, sources, dropped = {}, {}, ()
    try:
        fields = _Fields.model_validate_json(json.dumps(config))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        source, argument = sources[str(first["loc"][0])]  # only given keys can be invalid
        return ProfilerConfigProblem(source.split(" ")[0], argument, f"{key}: {first['msg']} (got {first['input']!r})")

    def setting(key: str, value: T) -> Setting[T]:
        return Setting(value, sources[key][0] if key in sources else VLLM_DEFAULT)

    return VllmProfilerSettings(
        profiler=setting("profiler", fields.profiler),
        torch_profiler_dir=setting("torch_profiler_dir", fields.torch_profiler_dir),
        with_stack=setting("torch_profiler_with_stack", fields.torch_profiler_with_stack),
        max_iterations=setting("max_iterations", fields.max_iterations),
        dump_cuda_time_total=setting("torch_profiler_dump_cuda_time_total", fields.torch_profiler_dump_cuda_time_total),
        ignore_frontend=setting("ignore_frontend", fields.ignore_frontend),
        form="dotted" if dotted else "json" if json_forms else None,
        configured=bool(json_forms or dotted),
        recognised=recognised,
        dropped=dropped,
        config_file=config_file,
    )


def _put(tree: dict[str, object], keys: list[str], value: object) -> None:
    """tree[k1][k2]... = value, making (or replacing with) objects on the way, as vLLM merges dotted flags."""
    for key in keys[:-1]:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = tree[key] = {}
        tree = child
    tree[keys[-1]] = value


def _dotted_value(text: str) -> object:
    """A dotted flag's value as vLLM takes it: JSON if it parses, else a `k`/`K` number, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        number = human_readable_int(text)
        return text if number is None else number


def legacy_env(envs: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
    """`where.NAME` for each profiler variable of older vLLMs set in `envs` (where → env); 0.32 reads none."""
    return tuple(
        f"{where}.{name}" for where, env in envs.items() for name in env if name.startswith(LEGACY_ENV_PREFIXES)
    )


def serve_argv(serve: ProcessServe | DockerServe | ExternalServe) -> tuple[list[str], list[str]] | None:
    """The serve target's command line and what names each word, or None (embedded engine, external URL)."""
    if isinstance(serve, ProcessServe) and serve.command:
        return list(serve.command), [f"serve.command[{i}]" for i in range(len(serve.command))]
    if isinstance(serve, DockerServe):
        entry = list(serve.entrypoint or [])
        where = [f"serve.entrypoint[{i}]" for i in range(len(entry))]
        return entry + list(serve.command), where + [f"serve.command[{i}]" for i in range(len(serve.command))]
    return None


def target_profiler_settings(
    serve: ProcessServe | DockerServe | ExternalServe, arm_envs: Mapping[str, Mapping[str, str]] | None = None
) -> VllmProfilerSettings | ProfilerConfigProblem | None:
    """The profiler settings of a plan's serve target, or None when it is not recognisably vLLM.

    A target is read when its command is vLLM's or carries a `--profiler-config` option (a container whose
    image's entrypoint is vLLM); never for the embedded engine or an external URL. `arm_envs` (arm name →
    env) is searched with `serve.env` and `serve.supplementary_env` for variables vLLM 0.32 ignores.
    """
    found = serve_argv(serve)
    if found is None or not found[0]:
        return None
    argv, where = found
    parsed = parse_profiler_args(argv, where)
    if isinstance(parsed, VllmProfilerSettings) and not (parsed.recognised or parsed.configured):
        return None
    if isinstance(parsed, ProfilerConfigProblem):
        return parsed
    envs: dict[str, Mapping[str, str]] = {"serve.env": serve.env, "serve.supplementary_env": serve.supplementary_env}
    envs.update({f"arms.{name}.env": env for name, env in (arm_envs or {}).items()})
    return dataclasses.replace(parsed, ignored_env=legacy_env(envs))
