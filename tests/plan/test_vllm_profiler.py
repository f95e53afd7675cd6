"""vLLM 0.32's profiler settings read off a serve command: both CLI forms, their sources, and what vLLM refuses.

The expected values are what vLLM 0.32's own parser made of the same arguments (vllm/utils/argparse_utils.py
`FlexibleArgumentParser` with the serve options, ProfilerConfig), checked by hand against .venv-vllm.
"""

from __future__ import annotations

import pytest

from runners.plan.serve_spec import DockerServe, ExternalServe, ProcessServe
from runners.plan.vllm_profiler import (
    VLLM_DEFAULT,
    ProfilerConfigProblem,
    VllmProfilerSettings,
    is_vllm_command,
    parse_profiler_args,
    target_profiler_settings,
)

VLLM = ["vllm", "serve", "/models/m", "--host", "{host}", "--port", "{port}"]
TORCH = '{"profiler": "torch", "torch_profiler_dir": "{profile_dir}"}'


def parse(*args: str) -> VllmProfilerSettings:
    argv = [*VLLM, *args]
    result = parse_profiler_args(argv, [f"serve.command[{i}]" for i in range(len(argv))])
    assert isinstance(result, VllmProfilerSettings), result
    return result


def problem(*args: str) -> ProfilerConfigProblem:
    argv = [*VLLM, *args]
    result = parse_profiler_args(argv, [f"serve.command[{i}]" for i in range(len(argv))])
    assert isinstance(result, ProfilerConfigProblem), result
    return result


def test_the_json_form_gives_values_and_leaves_the_rest_at_vllm_defaults() -> None:
    s = parse("--profiler-config", TORCH)
    assert (s.profiler.value, s.torch_profiler_dir.value) == ("torch", "{profile_dir}")
    assert s.profiler.source == "serve.command[7] --profiler-config JSON"
    assert (s.with_stack.value, s.max_iterations.value, s.dump_cuda_time_total.value) == (True, 0, True)
    assert s.with_stack.source == s.max_iterations.source == VLLM_DEFAULT
    assert (s.form, s.configured, s.recognised, s.dropped) == ("json", True, True, ())


def test_the_json_form_after_an_equals_sign_with_k_numbers_and_lax_booleans() -> None:
    s = parse('--profiler-config={"profiler": "torch", "torch_profiler_dir": "/p.x", "max_iterations": 2k, '
              '"torch_profiler_with_stack": "no", "torch_profiler_dump_cuda_time_total": 0}')  # fmt: skip
    assert (s.max_iterations.value, s.with_stack.value, s.dump_cuda_time_total.value) == (2000, False, False)
    assert s.with_stack.source == "serve.command[7] --profiler-config JSON"


def test_the_last_json_form_wins() -> None:
    s = parse("--profiler-config", TORCH, "--profiler-config", '{"profiler": "cuda"}')
    assert s.profiler.value == "cuda" and s.profiler.source.startswith("serve.command[9] ")
    assert s.dropped == ("serve.command[7]",)


def test_dotted_flags_with_a_space_or_an_equals_sign_and_underscores_in_the_option_name() -> None:
    s = parse("--profiler-config.profiler", "torch", "--profiler_config.torch_profiler_dir={profile_dir}",
              "--profiler-config.torch_profiler_with_stack=false",
              "--profiler-config.max_iterations", "200")  # fmt: skip
    assert (s.profiler.value, s.torch_profiler_dir.value, s.with_stack.value, s.max_iterations.value) == (
        "torch", "{profile_dir}", False, 200,
    )  # fmt: skip
    assert s.with_stack.source == "serve.command[10] --profiler-config.torch_profiler_with_stack"
    assert s.max_iterations.source == "serve.command[11] --profiler-config.max_iterations"
    assert s.form == "dotted"


def test_dotted_values_that_are_not_json_are_k_numbers_or_strings() -> None:
    s = parse("--profiler-config.profiler=torch", "--profiler-config.torch_profiler_with_stack", "False",
              "--profiler-config.max_iterations=1k")  # fmt: skip
    assert (s.profiler.value, s.with_stack.value, s.max_iterations.value) == ("torch", False, 1000)


@pytest.mark.parametrize("order", ["json first", "dotted first"])
def test_a_dotted_flag_makes_vllm_drop_every_json_form(order: str) -> None:
    args = ["--profiler-config", TORCH]
    dotted = ["--profiler-config.max_iterations=200"]
    s = parse(*(args + dotted if order == "json first" else dotted + args))
    assert s.profiler.value is None and s.max_iterations.value == 200  # what vLLM 0.32 did with both
    assert s.dropped == (("serve.command[7]",) if order == "json first" else ("serve.command[8]",))


def test_malformed_json_names_the_argument_and_the_json_error() -> None:
    p = problem("--profiler-config", '{"profiler": "torch",}')
    assert p.where == "serve.command[7]" and p.argument == '--profiler-config {"profiler": "torch",}'
    assert "not JSON: Expecting property name enclosed in double quotes: line 1 column 22" in p.message
    assert str(p).startswith("serve.command[7] '--profiler-config {") and str(p).endswith("vLLM will refuse to start")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profiler-config", "null"], "must be a JSON object, got null"),
        (["--profiler-config"], "no value follows it"),
        (["--profiler-config", '{"profiler": "torchy"}'], "profiler: Input should be 'torch', 'cuda' or 'proton'"),
        (["--profiler-config.max_iterations=-3"], "max_iterations: Input should be greater than or equal to 0"),
        (["--profiler-config.torch_profiler_with_stack=maybe"], "torch_profiler_with_stack: Input should be a valid"),
    ],
)  # fmt: skip
def test_values_vllm_refuses_are_problems(args: list[str], message: str) -> None:
    p = problem(*args)
    assert message in p.message and p.where == "serve.command[7]"


def test_no_option_is_vllms_defaults_no_profiler() -> None:
    s = parse()
    assert (s.profiler.value, s.form, s.configured, s.config_file) == (None, None, False, None)
    assert s.profiler.source == VLLM_DEFAULT
    assert parse("--config", "serve.yaml").config_file == "serve.command[7]"


@pytest.mark.parametrize(
    ("argv", "vllm"),
    [
        (["vllm", "serve", "m"], True),
        (["/opt/venv/bin/vllm", "serve", "m"], True),
        (["{python}", "-m", "vllm.entrypoints.openai.api_server"], True),
        (["python3", "-m", "vllm.entrypoints.cli.main", "serve"], True),
        (["{python}", "-m", "engine.server", "--port", "{port}"], False),
        (["/opt/vllm-venv/bin/python", "-m", "sglang.launch_server"], False),
        (["{python}", "-m", "mock", "--port", "{port}", "vllm"], False),  # too far in to be the program
    ],
)  # fmt: skip
def test_what_counts_as_a_vllm_command(argv: list[str], vllm: bool) -> None:
    assert is_vllm_command(argv) is vllm


def test_the_target_reading_covers_docker_entrypoints_and_env_but_never_the_engine_or_a_url() -> None:
    engine = ProcessServe(engine_config="engine.toml")
    other = ProcessServe(command=["{python}", "-m", "engine.server", "--port", "{port}"])
    assert target_profiler_settings(engine) is None and target_profiler_settings(other) is None
    assert target_profiler_settings(ExternalServe(kind="external", url="http://127.0.0.1:8000")) is None
    docker = DockerServe(kind="docker", image="img", entrypoint=["vllm", "serve"],
                         command=["m", "--host", "{host}", "--port", "{port}", "--profiler-config", TORCH],
                         env={"VLLM_TORCH_PROFILER_WITH_STACK": "0"},
                         supplementary_env={"VLLM_TORCH_PROFILER_DIR": "/x"})  # fmt: skip
    s = target_profiler_settings(docker, {"a": {"VLLM_PROFILER_MAX_ITERS": "200", "CUTE_WO_SPLIT": "1"}})
    assert isinstance(s, VllmProfilerSettings)
    assert s.profiler.source == "serve.command[5] --profiler-config JSON"
    assert s.with_stack.value is True  # the env form is not read by vLLM 0.32: named, not applied
    assert s.ignored_env == (
        "serve.env.VLLM_TORCH_PROFILER_WITH_STACK",
        "serve.supplementary_env.VLLM_TORCH_PROFILER_DIR",
        "arms.a.env.VLLM_PROFILER_MAX_ITERS",
    )
    # an image whose own entrypoint is vLLM: read because the command carries the option
    bare = DockerServe(
        kind="docker", image="img", command=["--host", "{host}", "--port", "{port}", "--profiler-config", TORCH]
    )
    assert isinstance(target_profiler_settings(bare), VllmProfilerSettings)
