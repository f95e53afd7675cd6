"""Pre-flight warnings about a plan's vLLM profiler settings: which plans get which warning, and what it says."""

from __future__ import annotations

import pytest

from runners.plan.model import Plan
from runners.plan.preflight import SHORT_STOP_S, preflight_warnings

VLLM = ["{python}", "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--port", "{port}"]
BOUNDED = ('{"profiler": "torch", "torch_profiler_dir": "{profile_dir}", "torch_profiler_with_stack": false, '
           '"max_iterations": 200}')  # fmt: skip
STACKS = '{"profiler": "torch", "torch_profiler_dir": "{profile_dir}", "max_iterations": 200}'


def plan(command: list[str] | None = None, profile: bool = True, stop_s: float = 60.0, **serve) -> Plan:
    """A one-arm plan with a primary phase and a supplementary phase `profiled`."""
    target = {"command": command} if command is not None else {"engine_config": "engine.toml"}
    return Plan.model_validate({
        "name": "p",
        "serve": {"kind": "process", **target, **serve},
        "arms": [{"name": "a"}],
        "phases": [
            {"name": "timing", "kind": "sharegpt", "requests": 1},
            {"name": "profiled", "kind": "sharegpt", "requests": 1, "mode": "supplementary", "profile": profile,
             "profile_stop_timeout_s": stop_s},
        ],
    })  # fmt: skip


def topics(p: Plan) -> list[str]:
    return [w.topic for w in preflight_warnings(p)]


def test_stack_tracing_on_by_default_with_the_default_deadline_warns_with_where_and_what_to_set() -> None:
    [warning] = preflight_warnings(plan([*VLLM, "--profiler-config", STACKS]))
    assert warning.topic == "profiler_stop_timeout"
    assert warning.message.startswith("phase profiled: profile_stop_timeout_s = 60 s with stack tracing on "
                                      "(torch_profiler_with_stack, vLLM 0.32 default)")  # fmt: skip
    assert '"torch_profiler_with_stack": false in the --profiler-config JSON' in warning.message
    assert f"or profile_stop_timeout_s >= {SHORT_STOP_S:g}" in warning.message


def test_no_iteration_bound_warns_and_the_fix_follows_the_dotted_form_the_command_uses() -> None:
    dotted = ["--profiler-config.profiler=torch", "--profiler-config.torch_profiler_dir={profile_dir}",
              "--profiler-config.torch_profiler_with_stack=false"]  # fmt: skip
    [warning] = preflight_warnings(plan([*VLLM, *dotted], stop_s=90))
    assert "with no iteration bound (max_iterations 0, vLLM 0.32 default)" in warning.message
    assert "stack tracing" not in warning.message and "set --profiler-config.max_iterations=200," in warning.message


def test_stacks_off_and_200_iterations_or_a_long_deadline_get_no_warning() -> None:
    assert preflight_warnings(plan([*VLLM, "--profiler-config", BOUNDED])) == []
    assert preflight_warnings(plan([*VLLM, "--profiler-config", STACKS], stop_s=SHORT_STOP_S)) == []
    assert topics(plan([*VLLM, "--profiler-config", STACKS], stop_s=SHORT_STOP_S - 1)) == ["profiler_stop_timeout"]


def test_the_embedded_engine_a_url_and_a_non_vllm_command_get_no_warning() -> None:
    assert preflight_warnings(plan()) == []
    assert preflight_warnings(plan(["{python}", "-m", "engine.server", "--port", "{port}"])) == []
    external = Plan.model_validate({**plan().model_dump(), "serve": {"kind": "external", "url": "http://127.0.0.1:1"}})
    assert preflight_warnings(external) == []


def test_without_a_profiled_phase_nothing_is_judged() -> None:
    assert preflight_warnings(plan(VLLM, profile=False)) == []
    assert preflight_warnings(plan([*VLLM, "--profiler-config", "{bad"], profile=False)) == []


def test_a_profiled_vllm_without_a_profiler_warns_of_the_404() -> None:
    [warning] = preflight_warnings(plan(VLLM))
    assert warning.topic == "profiler_missing"
    assert "phases profiled are profiled" in warning.message and "no /start_profile (404)" in warning.message
    assert '"torch_profiler_dir": "{profile_dir}"' in warning.message
    assert preflight_warnings(plan([*VLLM, "--config", "vllm.yaml"])) == []  # the file may configure it: unread


def test_malformed_json_is_one_warning_naming_the_argument() -> None:
    [warning] = preflight_warnings(plan([*VLLM, "--profiler-config", '{"profiler": torch}']))
    assert warning.topic == "profiler_config"
    assert warning.message.startswith("serve.command[7] '--profiler-config {\"profiler\": torch}': not JSON: ")
    assert warning.message.endswith("the profiled phases (profiled) get no trace")


def test_a_trace_directory_other_than_the_runners_is_named() -> None:
    config = BOUNDED.replace('"{profile_dir}"', '"/profiles"')
    [warning] = preflight_warnings(plan([*VLLM, "--profiler-config", config]))
    assert warning.topic == "profiler_dir" and "torch_profiler_dir is '/profiles' (serve.command[7]" in warning.message
    assert 'set "torch_profiler_dir": "{profile_dir}"' in warning.message


def test_json_dropped_by_dotted_flags_and_env_vllm_ignores_are_named() -> None:
    command = [*VLLM, "--profiler-config", BOUNDED, "--profiler-config.max_iterations=100"]
    found = preflight_warnings(plan(command, env={"VLLM_TORCH_PROFILER_WITH_STACK": "0"}))
    assert [w.topic for w in found] == ["profiler_config", "profiler_env", "profiler_missing"]
    assert found[0].message.startswith("serve.command[7]: vLLM 0.32 drops this --profiler-config JSON")
    assert found[1].message.startswith("serve.env.VLLM_TORCH_PROFILER_WITH_STACK: vLLM 0.32 reads no")


@pytest.mark.parametrize("kind", ["cuda", "proton"])
def test_other_profilers_are_not_held_to_the_torch_rules(kind: str) -> None:
    config = f'{{"profiler": "{kind}"}}' if kind == "cuda" else '{"profiler": "proton", "proton_profiler_dir": "/p"}'
    assert preflight_warnings(plan([*VLLM, "--profiler-config", config])) == []
