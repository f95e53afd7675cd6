"""The Python steps of the one-shot GPU check (`make gpu-check`, bench/gpu_check.sh), not shipped.

They run on a lent GPU machine whose image has torch but none of the console's packages, so nothing here imports
`console` (textual, pydantic, orjson): `bench` times the decode kernels exactly as `gb10-console bench kernels
--json` does (`runners.bench.kernel_bench.bench_kernels`, the same JSON) and prints the Markdown table
docs/benchmarks.md keeps.

    python -m bench.gpu_check env [--json OUT]         what the machine has: GPU, L2, torch, the CuTe DSL, its arch
    python -m bench.gpu_check tests JUNIT_XML          did the GPU tests run, or did they skip on a GPU machine?
    python -m bench.gpu_check bench [--sizes issue] [--iters N] [--kernels wo,attention,mlp] [--json OUT]
                                    [--markdown OUT]

Exit codes: 0 fine; 1 a kernel failed its correctness gate, or a test failed or skipped for want of a GPU
where there is one; 3 a GPU is there but the CuTe DSL is not (the bench would time the CPU paths instead).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from runners.bench.kernel_bench import (
    BENCH_KERNELS,
    SIZES,
    BenchReport,
    BenchRow,
    bench_kernels,
    markdown_table,
    pick_impl,
)

# The targets for W_O at K=6144, N=5120: on H100/H200 at least this share of the measured copy
# bandwidth; on a GB10 at most this many µs per call.
WO_TARGET_PCT_COPY_BW = 70.0
WO_TARGET_GB10_US = 100.0
# Tests that skip on a GPU machine by design: they check the error raised where there is none.
EXPECTED_GPU_SKIP = "machines without CUDA"


def environment() -> dict:
    """GPU, L2, SMs, torch, the CuTe DSL (version, or why it does not import) and the arch it compiles for."""
    info: dict = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "CUTE_DSL_ARCH": os.environ.get("CUTE_DSL_ARCH"),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(
            device=props.name,
            capability=f"{props.major}.{props.minor}",
            sms=props.multi_processor_count,
            l2_bytes=int(props.L2_cache_size),
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    for dist in ("nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-cu12", "nvidia-cutlass-dsl-libs-cu13",
                 "cuda-bindings", "cuda-pathfinder", "protobuf", "numpy", "pytest"):  # fmt: skip
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    try:
        import cutlass.cute  # noqa: F401

        info["cute_dsl_import"] = "ok"
    except Exception as exc:  # ImportError, or the DSL refusing the driver: say which
        info["cute_dsl_import"] = f"{type(exc).__name__}: {exc}"
    try:
        info["bench_impl"] = pick_impl().name
    except Exception as exc:  # the DSL imported but refused this machine: the bench would fail the same way
        info["bench_impl"] = f"{type(exc).__name__}: {exc}"
    return info


def junit_outcome(junit_xml: Path, gpu_expected: bool) -> tuple[bool, list[str]]:
    """(ok, lines) from pytest's JUnit XML: counts, every failure, and every skip a GPU machine should not see."""
    if not junit_xml.exists():
        return False, [f"no JUnit XML at {junit_xml}: pytest did not finish (timed out or crashed)"]
    cases = ET.parse(junit_xml).getroot().iter("testcase")
    passed, failed, skipped, lines = 0, [], [], []
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if problem is not None:
            failed.append(f"FAILED {name}: {(problem.get('message') or '').splitlines()[0][:300]}")
        elif skip is not None:
            skipped.append((name, skip.get("message") or ""))
        else:
            passed += 1
    unexpected = [(n, m) for n, m in skipped if gpu_expected and EXPECTED_GPU_SKIP not in m]
    lines.append(f"tests: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    lines += failed
    lines += [f"SKIPPED ON A GPU MACHINE {n}: {m}" for n, m in unexpected]
    if not gpu_expected:
        reasons = sorted({m for _, m in skipped})
        lines += [f"skipped (no GPU here): {r}" for r in reasons]
    return not failed and not unexpected and passed > 0, lines


def target_lines(report: BenchReport) -> list[str]:
    """W_O against the issue's targets, one line per timed wo_split of the CuTe kernel (none for the CPU paths)."""
    device = str(report.meta.get("device", ""))
    lines = []
    if report.meta.get("impl") != "cute":
        return ["targets: not judged, the CPU paths were timed (the targets are for the CuTe kernel on a GPU)"]
    for r in report.rows:
        if r.kernel != "wo_gemv_nvfp4" or r.correctness != "pass" or r.median_us is None:
            continue
        if "GB10" in device:
            verdict = "meets" if r.median_us <= WO_TARGET_GB10_US else "misses"
            goal = f"≤ {WO_TARGET_GB10_US:g} µs"
        else:
            verdict = "meets" if (r.pct_copy_bw or 0) >= WO_TARGET_PCT_COPY_BW else "misses"
            goal = f"≥ {WO_TARGET_PCT_COPY_BW:g} % of copy bandwidth"
        lines.append(f"W_O {r.variant}: {_us(r)} µs, {r.pct_copy_bw:.0f} % of copy bandwidth: {verdict} {goal}")
    return lines


def _us(r: BenchRow) -> str:
    return f"{r.median_us:.1f}" if r.median_us is not None else "–"


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)


def _cmd_env(args: argparse.Namespace) -> int:
    info = environment()
    for key, value in info.items():
        print(f"{key}: {value}")
    _write_json(args.json, info)
    return 0


def _cmd_tests(args: argparse.Namespace) -> int:
    ok, lines = junit_outcome(args.junit_xml, torch.cuda.is_available())
    print("\n".join(lines))
    return 0 if ok else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    if torch.cuda.is_available() and pick_impl().name != "cute":
        print(f"error: CUDA is here but the CuTe DSL is not: {environment()['cute_dsl_import']}", file=sys.stderr)
        return 3
    kernels = tuple(args.kernels.split(","))
    if not kernels or not set(kernels) <= set(BENCH_KERNELS):
        print(f"error: --kernels {args.kernels}: pick from {','.join(BENCH_KERNELS)}", file=sys.stderr)
        return 2
    report = bench_kernels(SIZES[args.sizes], iters=args.iters, seed=args.seed, kernels=kernels)
    _write_json(args.json, report.as_dict())
    table = markdown_table(report)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    meta = report.meta
    print(
        f"bench kernels --sizes {args.sizes}: {meta['impl']} on {meta['device']} ({meta['arch']}), torch "
        f"{meta['torch']}, CuTe DSL {meta['cutlass_dsl'] or 'not installed'}, seed {meta['seed']}, {meta['iters']} "
        f"timed calls each; copy bandwidth {report.copy_bandwidth_gbs:.0f} GB/s (bytes read + written)"
    )
    print(f"timing: {meta['timing']}")
    print(table)
    print("\n".join(target_lines(report)))
    if not report.ok:
        print("error: a kernel failed its correctness gate (the `gate` column says how)", file=sys.stderr)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m bench.gpu_check env|tests|bench ...`."""
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    env = sub.add_parser("env", help="what this machine has for the GPU check")
    env.add_argument("--json", type=Path, metavar="OUT")
    tests = sub.add_parser("tests", help="read pytest's JUnit XML: failures, and skips a GPU machine should not see")
    tests.add_argument("junit_xml", type=Path)
    bench = sub.add_parser("bench", help="gb10-console bench kernels, without the console's packages")
    bench.add_argument("--sizes", choices=sorted(SIZES), default="issue")
    bench.add_argument("--iters", type=int, default=50, help="timed calls per variant (default 50)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--kernels", default=",".join(BENCH_KERNELS), help="comma-separated, default all: wo,attention,mlp"
    )
    bench.add_argument("--json", type=Path, metavar="OUT")
    bench.add_argument("--markdown", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    return {"env": _cmd_env, "tests": _cmd_tests, "bench": _cmd_bench}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
