"""Client vs server latency against a real vLLM, as an external and as a process target.

`python -m bench.vllm_crosscheck [--out DIR] [--json OUT]` starts the vLLM of `make vllm` by hand
(external target) and runs a soak of three ShareGPT-style phases at concurrency 1, 4 and 8 against
it; then runs the same soak with the runner starting vLLM itself (process target). Each step's
phase.json holds the client's TTFT and ITL (per chunk) means and the server's, from vLLM's own
histograms over the same requests; this prints them side by side as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from runners.run.files import read_json
from runners.serve.process import free_port
from runners.testbed.vllm_target import process_serve_toml, start_vllm, stop_vllm, unavailable

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 4, 8)
RUN_TIMEOUT_S = 900


def plan_text(serve: str, requests_per_stream: int, max_tokens: int) -> str:
    """One arm, one phase per concurrency level, against the `[serve]` section given."""
    phases = "".join(
        f"""
[[phases]]
name = "c{c}"
kind = "sharegpt"
requests = {c * requests_per_stream}
concurrency = {c}
max_tokens = {max_tokens}
ignore_eos = true
http_timeout_s = 120
deadline_s = 600
"""
        for c in CONCURRENCY
    )
    return f'name = "vllm-crosscheck"\n{serve}\n[[arms]]\nname = "vllm"\n{phases}'


def run_plan(plan: Path, out: Path) -> None:
    """`gb10-console run PLAN --headless --out OUT`; raises with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{plan} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def rows(target: str, run: Path) -> list[dict]:
    """Client and server TTFT/ITL means of every step of `run`."""
    out = []
    for path in sorted(run.glob("arms/*/*/*/*/phase.json")):
        record = read_json(path)
        check = record["measurement"]
        means = {c["metric"]: (c["client_mean_ms"], c["server_mean_ms"]) for c in check["comparisons"]}
        out.append(
            {
                "target": target,
                "concurrency": record["phase"]["concurrency"],
                "requests": record["stats"]["ok"],
                "server_requests": record["server_latency"]["server_requests"],
                "ttft_client_ms": means.get("TTFT", (None, None))[0],
                "ttft_server_ms": means.get("TTFT", (None, None))[1],
                "itl_client_ms": means.get("ITL", (None, None))[0],
                "itl_server_ms": means.get("ITL", (None, None))[1],
                "check": check["status"],
            }
        )
    return sorted(out, key=lambda r: r["concurrency"])


def markdown(results: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| target | concurrency | requests (client / server) | TTFT mean client / server ms (Δ) "
        "| ITL mean client / server ms | check |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        tc, ts, ic, is_ = r["ttft_client_ms"], r["ttft_server_ms"], r["itl_client_ms"], r["itl_server_ms"]
        ttft = f"{tc:.1f} / {ts:.1f} ({tc - ts:+.1f})" if tc is not None and ts is not None else "n/a"
        itl = f"{ic:.2f} / {is_:.2f}" if ic is not None and is_ is not None else "n/a"
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['requests']} / {r['server_requests']} | {ttft} | {itl} "
            f"| {r['check']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both soaks and print the table; exit 2 when no vLLM can start here, 1 when a soak fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.vllm_crosscheck", description=__doc__)
    parser.add_argument("--out", type=Path, help="directory for the plans and runs (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--requests-per-stream", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="gb10-vllm-crosscheck-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = measure(out, args.requests_per_stream, args.max_tokens)
    except RuntimeError as exc:  # vLLM did not start, or a soak failed: its own words, and where the runs are
        print(f"error: {exc}\n(plans, logs and runs in {out})", file=sys.stderr)
        return 1
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"runs in {out}")
    return 0


def measure(out: Path, requests_per_stream: int, max_tokens: int) -> list[dict]:
    """Both soaks in `out`, external then process; their rows."""
    results: list[dict] = []
    server = start_vllm(free_port(), out / "external-vllm.log")
    try:
        plan = out / "external.toml"
        plan.write_text(
            plan_text(f'[serve]\nkind = "external"\nurl = "{server.url}"\n', requests_per_stream, max_tokens)
        )
        run_plan(plan, out / "external")
        results += rows("external", out / "external")
    finally:
        stop_vllm(server)
    plan = out / "process.toml"
    plan.write_text(plan_text(process_serve_toml(), requests_per_stream, max_tokens))
    run_plan(plan, out / "process")
    results += rows("process", out / "process")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
