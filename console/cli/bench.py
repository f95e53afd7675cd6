"""`gb10-console bench client|mock-server|watchdog|kernels`: measure the replay client, the guard and the kernels."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from console.cli.command import EXIT_FAILED, CliError, Subparsers
from engine.units import NOT_MEASURED, number_text
from runners import event_loop
from runners.bench.client_bench import BenchError, ClientBenchResult, bench_client
from runners.bench.watchdog_bench import as_row, idle_cpu, measure
from runners.replay.metrics import Distribution
from runners.run.files import write_json_atomic
from runners.testbed.mock_server import MockSettings, RegionTimingMock, serve_mock


def register(sub: Subparsers) -> None:
    """Add `bench client`, `mock-server`, `watchdog` and `kernels`."""
    bench = sub.add_parser("bench", help="benchmark the replay client (and a mock server to run it against)")
    what = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    client = what.add_parser("client", help="the soak's replay client at fixed concurrency against URL")
    client.add_argument("--url", required=True, help="base URL of an OpenAI-compatible server")
    client.add_argument("--concurrency", type=_positive, required=True)
    client.add_argument("--requests", type=_positive, required=True)
    client.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    client.add_argument("--max-tokens", type=_positive, default=64)
    input_help = "prompts of N tokens, counted by the server's /tokenize (approximate where it has none)"
    client.add_argument("--input-len", type=_positive, metavar="N", help=input_help)
    client.add_argument("--json", type=Path, metavar="OUT", help="also write the result as JSON")
    client.set_defaults(handler=client_bench)
    mock = what.add_parser("mock-server", help="a fast loopback streaming server with injected delays")
    mock.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "::1", "localhost"))
    mock.add_argument("--port", type=int, required=True)
    mock.add_argument("--ttft-ms", type=float, default=50.0)
    mock.add_argument("--itl-ms", type=float, default=10.0)
    mock.add_argument("--tokens", type=_positive, default=64, help="tokens per response (at most max_tokens)")
    mock.add_argument("--fault", choices=("none", "http500", "garbage", "stall", "eof"), default="none")
    mock.add_argument("--fault-every", type=_positive, default=1, help="the fault hits every N-th request")
    mock.add_argument("--health-fail-after", type=int, default=0, metavar="N",
                      help="/health answers 503 from its N-th probe on (default 0: never)")  # fmt: skip
    mock.add_argument("--tokens-per-chunk", type=_positive, default=1, metavar="K",
                      help="tokens in each SSE chunk, as MTP / speculative decoding send them (default 1)")  # fmt: skip
    mock.add_argument(
        "--continuous-usage", choices=("honour", "ignore", "reject"), default="honour",
        help="stream_options.continuous_usage_stats: usage on every chunk (like vLLM), ignored, or HTTP 400",
    )  # fmt: skip
    mock.add_argument("--region-timing-trigger", metavar="PATH",
                      help="play region timers: a completion that finds PATH writes a synthetic dump")  # fmt: skip
    mock.add_argument("--region-timing-output", metavar="PATH", help="where the dump goes (.npy)")
    mock.add_argument("--region-timing-ctas", type=_positive, default=8, metavar="N", help="CTA rows of the dump")
    mock.add_argument("--region-timing-regions", type=_positive, default=3, metavar="R", help="regions of the dump")
    mock.set_defaults(handler=mock_server)
    watchdog = what.add_parser("watchdog", help="guard reaction to a real memory hog (floors just below now)")
    watchdog.add_argument("--rates", default="0.5,1,2", help="fill rates in GiB/s, comma-separated")
    watchdog.add_argument("--repeats", type=_positive, default=1)
    watchdog.add_argument("--max-gib", type=float, default=6.0, help="the hog never holds more than this")
    watchdog.add_argument("--horizon", type=float, default=5.0, help="prediction horizon s (0: off, floors only)")
    watchdog.add_argument("--idle-s", type=float, default=0.0, help="also measure the guard's idle CPU for S seconds")
    watchdog.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    watchdog.set_defaults(handler=watchdog_bench)
    kernels = what.add_parser("kernels", help="time the decode kernels (correctness gate first), or just compile them")
    kernels.add_argument(
        "--compile-only", action="store_true",
        help="compile every CuTe kernel with fake tensors for --arch and report the builds (no GPU needed)",
    )  # fmt: skip
    kernels.add_argument("--arch", default="sm_121a", help="--compile-only: comma-separated, e.g. sm_121a,sm_90a")
    kernels.add_argument("--dump-dir", type=Path, metavar="DIR", help="--compile-only: keep PTX and cubin here")
    sizes_help = "issue: K=6144 N=5120 W_O and matching attention/MLP; tiny: the engine's own model"
    kernels.add_argument("--sizes", choices=("issue", "tiny"), default="issue", help=sizes_help)
    kernels.add_argument("--iters", type=_positive, default=20, help="timed calls per variant (default 20)")
    kernels.add_argument("--seed", type=int, default=0)
    kernels.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    kernels.set_defaults(handler=kernel_bench)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def mock_server(args: argparse.Namespace, out: Console) -> int:
    """`bench mock-server`: serve until Ctrl-C."""
    if (args.region_timing_trigger is None) != (args.region_timing_output is None):
        raise CliError("give --region-timing-trigger and --region-timing-output together")
    regions = None
    if args.region_timing_trigger:
        regions = RegionTimingMock(args.region_timing_trigger, args.region_timing_output,
                                   args.region_timing_ctas, args.region_timing_regions)  # fmt: skip
    settings = MockSettings(args.ttft_ms, args.itl_ms, args.tokens, args.fault, args.fault_every,
                            args.health_fail_after, args.tokens_per_chunk, args.continuous_usage,
                            regions)  # fmt: skip
    out.print(f"mock server on http://{args.host}:{args.port} ({settings}); Ctrl-C stops it", highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        event_loop.run(serve_mock(args.host, args.port, settings))
    return 0


def client_bench(args: argparse.Namespace, out: Console) -> int:
    """`bench client`: the replay client against URL; exit 1 when a request failed (or the bench could not run)."""
    try:
        result = event_loop.run(
            bench_client(args.url, args.concurrency, args.requests, args.endpoint, args.max_tokens,
                         input_len=args.input_len)
        )  # fmt: skip
    except BenchError as exc:
        raise CliError(str(exc), code=EXIT_FAILED) from None
    out.print(result_table(result))
    if args.json:
        write_json_atomic(args.json, result.as_dict())
        out.print(f"wrote {args.json}", highlight=False)
    return 0 if result.ok else 1


def result_table(r: ClientBenchResult) -> Table:
    """The benchmark result as a rich table."""
    t = Table(title=f"bench client: {r.url} {r.endpoint}, concurrency {r.concurrency}", show_header=False)
    if r.input_len is not None:
        t.add_row("input length", f"{r.input_len.requested} tokens requested: {r.input_len.note}")
    t.add_row("requests ok / failed", f"{r.ok} / {r.failed}" + (f"  {json.dumps(r.errors)}" if r.errors else ""))
    t.add_row("completed req/s", number_text(r.req_s, 1))
    t.add_row("output tok/s", number_text(r.output_tok_s, 0))
    t.add_row("client CPU s", f"{r.cpu_s:.2f} (over {r.wall_s:.2f} s wall)")
    t.add_row("dispatch lag p99 ms", number_text(r.dispatch_lag_p99_ms, 2))
    for name, dist in (
        ("TTFT ms", r.ttft_ms),
        (f"ITL ms ({r.itl_basis})", r.itl_ms),
        ("TPOT ms", r.tpot_ms),
        ("E2EL ms", r.e2el_ms),
    ):
        t.add_row(name, _dist(dist))
    return t


def _dist(d: Distribution) -> str:
    pcts = "  ".join(f"{k} {number_text(v, 2)}" for k, v in d.percentiles.items())
    return f"mean {number_text(d.mean, 2)}  {pcts}"


def kernel_bench(args: argparse.Namespace, out: Console) -> int:
    """`bench kernels`: time the decode kernels, or with --compile-only build them for --arch."""
    if not args.compile_only:
        return _kernel_timing(args, out)
    from engine.kernels.cute.build import CuteUnavailableError
    from runners.bench.kernel_compile import compile_all

    table = Table(title="bench kernels --compile-only: CuTe DSL builds (fake tensors, no GPU)")
    for col in ("kernel", "variant", "arch", "regs", "cubin B", "128-bit loads", "compile s"):
        table.add_column(col)
    rows = []
    for arch in (a.strip() for a in args.arch.split(",") if a.strip()):
        try:
            built = compile_all(arch, args.dump_dir)
        except CuteUnavailableError as exc:
            raise CliError(str(exc)) from None
        except KeyError:
            raise CliError(f"--arch: the CuTe DSL does not know {arch!r}; try sm_121a, sm_100a or sm_90a") from None
        except Exception as exc:  # the DSL's own errors (a compiler failure) name the cause
            raise CliError(f"compiling for {arch} failed: {type(exc).__name__}: {exc}", code=EXIT_FAILED) from None
        for k in built:
            rows.append(k.as_dict())
            table.add_row(k.kernel, k.variant, k.arch, str(k.registers or NOT_MEASURED), f"{k.cubin_bytes:,}",
                          "yes" if k.vectorized_128 else "NO", f"{k.compile_s:.2f}")  # fmt: skip
    out.print(table)
    if args.json:
        write_json_atomic(args.json, {"kernels": rows})
    return 0 if rows and all(r["vectorized_128"] for r in rows) else 1


def _kernel_timing(args: argparse.Namespace, out: Console) -> int:
    from runners.bench.kernel_bench import SIZES, bench_kernels

    report = bench_kernels(SIZES[args.sizes], iters=args.iters, seed=args.seed)
    meta = report.meta
    title = (
        f"bench kernels ({meta['impl']} on {meta['device']}, {meta['arch']}; torch {meta['torch']}, "
        f"CuTe DSL {meta['cutlass_dsl'] or 'not installed'}; seed {meta['seed']}; "
        f"copy bandwidth {report.copy_bandwidth_gbs:.1f} GB/s)"
    )
    table = Table(title=title)
    cols = ("kernel", "impl", "variant", "median µs", "p10", "p90", "payload MB", "GB/s", "% copy BW", "× baseline",
            "× wo_split=1", "correctness")  # fmt: skip
    for col in cols:
        table.add_column(col)
    for r in report.rows:
        table.add_row(
            r.kernel, r.impl, r.variant, number_text(r.median_us, 1), number_text(r.p10_us, 1),
            number_text(r.p90_us, 1), f"{r.payload_bytes / 1e6:.2f}", number_text(r.gbs, 1),
            number_text(r.pct_copy_bw, 0), number_text(r.speedup_vs_baseline, 2), number_text(r.speedup_vs_split1, 2),
            r.correctness,
        )  # fmt: skip
    out.print(table)
    if args.json:
        write_json_atomic(args.json, report.as_dict())
        out.print(f"wrote {args.json}", highlight=False)
    return 0 if report.ok else 1


def watchdog_bench(args: argparse.Namespace, out: Console) -> int:
    """`bench watchdog`: the guard's reaction to a real memory hog; exit 1 when the guard missed one."""
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        raise CliError(f"--rates {args.rates!r}: give GiB/s values like 0.5,1,2") from None
    rows = []
    table = Table(title="bench watchdog: a real memory hog against the guard (floors 1/2/3 GiB below MemAvailable)")
    columns = ("GiB/s", "killed", "predicted", "reaction s", "min avail GiB", "below KILL GiB", "hog GiB", "guard s")
    for col in columns:
        table.add_column(col)
    for rate in rates:
        for _ in range(args.repeats):
            r = event_loop.run(measure(rate, max_gib=args.max_gib, horizon_s=args.horizon))
            rows.append(as_row(r))
            table.add_row(
                f"{rate:g}", str(r.killed), str(r.predicted), number_text(r.reaction_s, 3),
                f"{r.min_available_gib:.2f}", f"{r.below_kill_floor_gib:.3f}", f"{r.hog_allocated_gib:.2f}",
                f"{r.guard_cpu_s:.2f}",
            )  # fmt: skip
    out.print(table)
    result: dict = {"reactions": rows}
    if args.idle_s > 0:
        result["guard_idle_cpu_pct"] = round(event_loop.run(idle_cpu(args.idle_s)), 3)
        out.print(f"guard idle CPU over {args.idle_s:g} s: {result['guard_idle_cpu_pct']:.2f}% of one core")
    if args.json:
        write_json_atomic(args.json, result)
    return 0 if all(row["killed"] for row in rows) else 1
