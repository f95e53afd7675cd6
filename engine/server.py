"""OpenAI-compatible HTTP server for the tiny engine: `python -m engine.server --config FILE --port N`.

Endpoints: /health, /v1/models, /v1/completions, /v1/chat/completions (SSE when `stream`),
/tokenize (vLLM's shape: a prompt or chat messages -> count, tokens, max_model_len),
/metrics (Prometheus, vLLM names), /debug/config (the effective kernel settings and where each
came from, so a runner can verify that an arm's environment really arrived) and, like vLLM,
POST /start_profile and POST /stop_profile (a torch profile of the engine thread, written as a
Chrome trace). `--test-fault` switches on deliberate misbehaviour for rehearsing incidents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.config import EngineConfig, load_engine_config
from engine.config_file import ConfigFileError, field_path
from engine.deadlines import timeout
from engine.engine_loop import EngineLoop, EngineStopped, TokenDelta
from engine.env_sentinel import ENV_DIR_VAR
from engine.faults import (
    ActiveFaults,
    FaultSpecError,
    MemoryBalloon,
    balloon_for,
    fault_help,
    hang_until_disconnect,
    parse_faults,
    release_in_bursts,
    stall_after,
    trickle,
    wo_gemv_dropping_last_slot,
)
from engine.kernel_settings import KernelSettings, resolve_kernel_settings
from engine.kernels.backend import KERNEL_CHOICES, DecodeKernels, select_kernels
from engine.kernels.cute.build import CuteUnavailableError
from engine.metrics import EngineMetrics
from engine.model import TinyDecoder
from engine.openai_api import (
    ChatCompletionRequest,
    CompletionRequest,
    StreamUsage,
    TokenizeRequest,
    error_body,
    new_id,
    now,
    usage,
)
from engine.profiler import EngineProfiler, ProfilerConflict
from engine.tokenizer import VOCAB_SIZE, apply_chat_template, encode

# How often a waiting request checks that the engine thread is still alive.
ENGINE_LIVENESS_POLL_S = 1.0
# The longest a profiler request waits for the engine thread to run its command.
ENGINE_COMMAND_TIMEOUT_S = 30.0
DEFAULT_PROFILE_MAX_STEPS = 200
COMPLETION_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})  # what `zombie=N` counts
_Body = TypeVar("_Body", CompletionRequest, ChatCompletionRequest, TokenizeRequest)


@dataclass
class ServerState:
    """Everything the request handlers need."""

    config: EngineConfig
    settings: KernelSettings
    engine: EngineLoop
    metrics: EngineMetrics
    device: str
    env_dir: str | None
    started_at: float
    profiler: EngineProfiler
    profile_dir: Path | None = None
    faults: ActiveFaults = field(default_factory=ActiveFaults)
    balloon: MemoryBalloon | None = None
    kernel_checks: list[dict] = field(default_factory=list)
    kernels: str = "torch"  # which implementation of the decode kernels runs: "torch" or "cute"

    @property
    def model_name(self) -> str:
        """The served model id."""
        return self.config.model.name


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error type."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param

    def response(self) -> JSONResponse:
        """The error as an OpenAI-style JSON response."""
        return JSONResponse(error_body(str(self), self.kind, self.status, self.param), status_code=self.status)


def create_app(state: ServerState) -> Starlette:
    """Build the ASGI app around a started engine: the routes below, `state` as the app's `state.server`."""
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/metrics", metrics),
            Route("/debug/config", debug_config),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/start_profile", start_profile, methods=["POST"]),
            Route("/stop_profile", stop_profile, methods=["POST"]),
        ]
    )
    app.state.server = state
    return _zombie(app, state.faults.zombie_after) if state.faults.zombie else app


def _server(request: Request) -> ServerState:
    """The server state `create_app` gave the app that took `request`."""
    return request.app.state.server


async def health(request: Request) -> Response:
    """GET /health: 200 while the engine thread runs; 503 with its fatal error once it stopped."""
    state = _server(request)
    if not state.engine.alive:
        return JSONResponse(error_body(state.engine.fatal_error or "engine stopped", "EngineDead", 503), 503)
    return Response(status_code=200)


async def models(request: Request) -> Response:
    """GET /v1/models: the one served model's card, with its max_model_len (as vLLM puts it there)."""
    state = _server(request)
    card = {
        "id": state.model_name,
        "object": "model",
        "created": int(state.started_at),
        "owned_by": "gb10-console",
        "max_model_len": state.config.model.max_model_len,
    }
    return JSONResponse({"object": "list", "data": [card]})


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text under vLLM's metric names."""
    return Response(_server(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def debug_config(request: Request) -> Response:
    """GET /debug/config: the effective kernel settings and where each came from, the device, the faults."""
    state = _server(request)
    s = state.settings
    return JSONResponse(
        {
            "model": state.model_name,
            "env": s.effective_env(),
            "sources": s.sources,
            "kernel_checks": state.kernel_checks,
            "kernels": state.kernels,
            "env_dir": state.env_dir,
            "sentinel": str(s.sentinel_path) if s.sentinel_path else None,
            "device": state.device,
            "torch_threads": torch.get_num_threads(),
            "max_num_seqs": state.config.server.max_num_seqs,
            "max_model_len": state.config.model.max_model_len,
            "pid": os.getpid(),
            "profile_dir": str(state.profile_dir) if state.profile_dir else None,
            "profile_max_steps": state.profiler.max_steps,
            "test_faults": state.faults.names(),
        }
    )


async def completions(request: Request) -> Response:
    """POST /v1/completions: one prompt (text or token ids), streamed as SSE when `stream`."""
    arrival = time.perf_counter()  # the TTFT and e2e clocks start here, before parsing (vLLM: at arrival)
    state = _server(request)
    try:
        body = await _parse(request, CompletionRequest)
        prompt_ids = _completion_prompt(body)
        max_tokens = _check_lengths(state, prompt_ids, body.max_tokens or 16)
    except RequestError as exc:
        return exc.response()
    return await _respond(state, request, body, prompt_ids, max_tokens, arrival, chat=False)


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions: messages through the chat template, streamed as SSE when `stream`."""
    arrival = time.perf_counter()
    state = _server(request)
    try:
        body = await _parse(request, ChatCompletionRequest)
        prompt = apply_chat_template([(m.role, m.text()) for m in body.messages])
        prompt_ids = encode(prompt)
        max_tokens = _check_lengths(state, prompt_ids, body.requested_max_tokens())
    except RequestError as exc:
        return exc.response()
    return await _respond(state, request, body, prompt_ids, max_tokens, arrival, chat=True)


async def tokenize(request: Request) -> Response:
    """POST /tokenize (vLLM's shape): a prompt or chat messages -> count, tokens, max_model_len."""
    state = _server(request)
    try:
        body = await _parse(request, TokenizeRequest)
        ids = _tokenize(body)
    except RequestError as exc:
        return exc.response()
    if body.model is not None and body.model != state.model_name:
        return RequestError(f"The model `{body.model}` does not exist.", 404, "NotFoundError", "model").response()
    limit = state.config.model.max_model_len
    return JSONResponse({"count": len(ids), "max_model_len": limit, "tokens": ids, "token_strs": None})


async def start_profile(request: Request) -> Response:
    """POST /start_profile: a torch profile of the engine thread into the body's `dir` or --profile-dir."""
    state = _server(request)
    try:
        directory = _profile_dir(await _json_object(request), state.profile_dir)
        started = await _on_engine(state, lambda: state.profiler.start(directory))
    except RequestError as exc:
        return exc.response()
    return JSONResponse({"status": "started", "dir": str(started.directory), "max_steps": started.max_steps})


async def stop_profile(request: Request) -> Response:
    """POST /stop_profile: stop the profile and write its Chrome trace (the stop_profile_* faults misbehave here)."""
    state = _server(request)
    if state.faults.stop_profile_hang:
        await hang_until_disconnect(request.receive)
        return Response(status_code=499)  # nobody is listening any more
    try:
        stopped = await _on_engine(state, state.profiler.stop)
    except RequestError as exc:
        return exc.response()
    body = {"status": "stopped", "trace": str(stopped.trace), "steps": stopped.steps}
    background = BackgroundTask(state.balloon.start) if state.balloon else None
    if state.faults.stop_profile_trickle_s is not None:
        content = json.dumps(body).encode()
        stream = trickle(content, state.faults.stop_profile_trickle_s)
        return StreamingResponse(stream, media_type="application/json", background=background)
    return JSONResponse(body, background=background)


def _zombie(app: Starlette, after: int = 0) -> Callable:
    """The app behind the `zombie` fault: GETs answer, every POST hangs until its client goes away, once
    `after` completion POSTs have been let through."""
    passed = 0

    async def asgi(scope: dict, receive: Callable, send: Callable) -> None:
        nonlocal passed
        if scope["type"] == "http" and scope["method"] == "POST":
            if passed >= after:
                await hang_until_disconnect(receive)
                return
            passed += scope["path"] in COMPLETION_PATHS
        await app(scope, receive, send)

    return asgi


async def _json_object(request: Request) -> dict:
    """The request body as a JSON object; an empty body is `{}`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _profile_dir(body: dict, default: Path | None) -> Path:
    """The trace directory from the body's `dir` or `--profile-dir`, created if missing."""
    given = body.get("dir")
    if given is not None and (not isinstance(given, str) or not given.strip()):
        raise RequestError("dir: must be a non-empty string (an absolute path)", param="dir")
    if given is not None and not os.path.isabs(given):
        raise RequestError(f"dir: {given!r} is not an absolute path", param="dir")
    directory = Path(given) if given is not None else default
    if directory is None:
        raise RequestError(
            'no trace directory: send {"dir": "/abs/path"} in the body of POST /start_profile, '
            "or start the server with --profile-dir DIR",
            param="dir",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RequestError(f"cannot create the trace directory {directory}: {exc}", param="dir") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RequestError(f"the trace directory {directory} is not writable by the server", param="dir")
    return directory


async def _on_engine(state: ServerState, command: Callable):
    """Run `command` on the engine thread, waiting at most ENGINE_COMMAND_TIMEOUT_S; failures as RequestError."""
    try:
        future = state.engine.call(command)
    except EngineStopped as exc:
        raise RequestError(f"the engine is not running: {exc}", 503, "ServiceUnavailableError") from None
    try:
        async with timeout(ENGINE_COMMAND_TIMEOUT_S):
            return await asyncio.wrap_future(future)
    except asyncio.TimeoutError:
        raise RequestError(
            f"the engine thread did not run the profiler command within {ENGINE_COMMAND_TIMEOUT_S:g} s "
            "(a step may be stuck); the profiler state is unknown: check /health, then retry",
            503,
            "ServiceUnavailableError",
        ) from None
    except ProfilerConflict as exc:
        raise RequestError(str(exc), 409, "ConflictError") from None
    except EngineStopped as exc:
        raise RequestError(f"the engine stopped: {exc}", 503, "ServiceUnavailableError") from None
    except Exception as exc:
        raise RequestError(f"profiler failed: {type(exc).__name__}: {exc}", 500, "InternalServerError") from None


async def _parse(request: Request, model: type[_Body]) -> _Body:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = field_path(tuple(err["loc"]))
        raise RequestError(f"{where}: {err['msg']}", param=where) from None


def _tokenize(body: TokenizeRequest) -> list[int]:
    """The ids the completion or chat endpoint would feed the model for this prompt or these messages."""
    if (body.prompt is None) == (body.messages is None):
        raise RequestError("send either prompt (completions) or messages (chat), not both or neither", param="prompt")
    if body.messages is not None:
        return encode(apply_chat_template([(m.role, m.text()) for m in body.messages]))
    return encode(body.prompt or "")


def _completion_prompt(body: CompletionRequest) -> list[int]:
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        bad = [p for p in prompt if not 0 <= p < VOCAB_SIZE]
        if bad:
            raise RequestError(
                f"prompt: token id {bad[0]} is outside the vocabulary 0..{VOCAB_SIZE - 1}", param="prompt"
            )
        return list(prompt)
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise RequestError("prompt: send one prompt per request", param="prompt")
        prompt = prompt[0]
    return encode(str(prompt))


def _check_lengths(state: ServerState, prompt_ids: list[int], max_tokens: int | None) -> int:
    limit = state.config.model.max_model_len
    room = limit - len(prompt_ids)
    if max_tokens is None:
        max_tokens = room
    if room < 1 or max_tokens > room:
        raise RequestError(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the prompt, {max_tokens} in the "
            "completion). Please reduce the length of the prompt or max_tokens.",
            param="max_tokens",
        )
    return max_tokens


async def _respond(
    state: ServerState,
    request: Request,
    body: CompletionRequest | ChatCompletionRequest,
    prompt_ids: list[int],
    max_tokens: int,
    arrival: float,
    chat: bool,
) -> Response:
    if body.model is not None and body.model != state.model_name:
        return RequestError(f"The model `{body.model}` does not exist.", 404, "NotFoundError", "model").response()
    request_id = new_id("chatcmpl" if chat else "cmpl")
    deltas = _generate(state, request_id, prompt_ids, body.sampling(max_tokens), arrival)
    if body.stream:
        if state.faults.stream_stall_tokens is not None:
            deltas = stall_after(deltas, state.faults.stream_stall_tokens, request.is_disconnected)
        chunks = _chat_chunks if chat else _completion_chunks
        stream = _sse(chunks(state, request_id, body.stream_usage(), deltas))
        if state.faults.stream_burst_ms is not None:
            stream = release_in_bursts(stream, state.faults.stream_burst_ms / 1000)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    text, last = "", None
    async for delta in deltas:
        text, last = text + delta.text, delta
    if last is None or last.error:
        reason = last.error if last else "no output"
        return JSONResponse(error_body(reason, "InternalServerError", 500), status_code=500)
    choice: dict = {"index": 0, "logprobs": None, "finish_reason": last.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return JSONResponse(
        {
            "id": request_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": now(),
            "model": state.model_name,
            "choices": [choice],
            "usage": usage(last.prompt_tokens, last.completion_tokens),
        }
    )


async def _generate(
    state: ServerState, request_id: str, prompt_ids: list[int], params, arrival: float
) -> AsyncIterator[TokenDelta]:
    """Deltas of one request from the engine thread; aborts the request if the consumer goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[TokenDelta] = asyncio.Queue()
    finished = False
    try:
        sink = partial(loop.call_soon_threadsafe, queue.put_nowait)
        state.engine.submit(request_id, prompt_ids, params, sink, arrival)
    except EngineStopped as exc:
        yield TokenDelta("", "error", len(prompt_ids), 0, error=str(exc))
        return
    try:
        while True:
            try:
                async with timeout(ENGINE_LIVENESS_POLL_S):
                    delta = await queue.get()
            except asyncio.TimeoutError:
                if state.engine.alive:
                    continue
                delta = TokenDelta("", "error", len(prompt_ids), 0, error=state.engine.fatal_error or "engine stopped")
            finished = delta.finish_reason is not None
            yield delta
            if finished:
                return
    finally:
        if not finished:
            state.engine.abort(request_id)


async def _sse(events: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    async for event in events:
        yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _completion_chunks(
    state: ServerState, request_id: str, stream_usage: StreamUsage, deltas: AsyncIterator[TokenDelta]
) -> AsyncIterator[dict]:
    created = now()
    base = {"id": request_id, "object": "text_completion", "created": created, "model": state.model_name}
    last = None
    async for d in deltas:
        last = d
        if d.error:
            yield error_body(d.error, "InternalServerError", 500)
            return
        choice = {"index": 0, "text": d.text, "logprobs": None, "finish_reason": d.finish_reason}
        yield {**base, "choices": [choice], **stream_usage.on_chunk(d.prompt_tokens, d.completion_tokens)}
    if stream_usage.final and last is not None:
        yield {**base, "choices": [], "usage": usage(last.prompt_tokens, last.completion_tokens)}


async def _chat_chunks(
    state: ServerState, request_id: str, stream_usage: StreamUsage, deltas: AsyncIterator[TokenDelta]
) -> AsyncIterator[dict]:
    created = now()
    base = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": state.model_name}
    last = None
    async for d in deltas:
        if d.error:
            yield error_body(d.error, "InternalServerError", 500)
            return
        if last is None:  # like vLLM: a role-only delta once the first token exists
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            yield {**base, "choices": [role], **stream_usage.on_chunk(d.prompt_tokens, 0)}
        last = d
        choice = {"index": 0, "delta": {"content": d.text}, "logprobs": None, "finish_reason": d.finish_reason}
        yield {**base, "choices": [choice], **stream_usage.on_chunk(d.prompt_tokens, d.completion_tokens)}
    if stream_usage.final and last is not None:
        yield {**base, "choices": [], "usage": usage(last.prompt_tokens, last.completion_tokens)}


def build_state(
    config: EngineConfig,
    settings: KernelSettings,
    env_dir: str | None,
    device: str,
    profile_dir: Path | None = None,
    profile_max_steps: int = DEFAULT_PROFILE_MAX_STEPS,
    faults: ActiveFaults | None = None,
    kernels: DecodeKernels | None = None,
) -> ServerState:
    """Build the model (with `kernels`, default the torch references) and start the engine thread."""
    torch.set_num_threads(config.server.threads)
    faults = faults or ActiveFaults()
    kernels = kernels or select_kernels("torch", torch.device(device))
    if faults.wo_drop_last_slot:
        kernels = kernels.with_wo(wo_gemv_dropping_last_slot)
    model = TinyDecoder(config.model, settings.wo_split, device, kernels)
    checks = [c.as_dict() for c in model.kernel_checks()]
    metrics = EngineMetrics(config.model.name)
    profiler = EngineProfiler(device, profile_max_steps)
    engine = EngineLoop(model, config.server.max_num_seqs, metrics, on_step=profiler.on_step)
    engine.start()
    return ServerState(
        config,
        settings,
        engine,
        metrics,
        device,
        env_dir,
        time.time(),
        profiler,
        profile_dir=profile_dir,
        faults=faults,
        balloon=balloon_for(faults),
        kernel_checks=checks,
        kernels=kernels.name,
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m engine.server",
        description=__doc__.splitlines()[0],
        epilog=fault_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="engine TOML file, e.g. configs/engine-tiny.toml")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument("--env-dir", default=None, help=f"directory holding an ENV sentinel file (or ${ENV_DIR_VAR})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run the model")
    parser.add_argument(
        "--kernels",
        choices=KERNEL_CHOICES,
        default="auto",
        help="decode kernels: the CuTe DSL ones (cuda only), the torch references, or auto (CuTe where it can run)",
    )
    parser.add_argument(
        "--profile-dir",
        default=None,
        metavar="DIR",
        help='where POST /start_profile writes traces when its body has no {"dir": ...} (created if missing)',
    )
    parser.add_argument(
        "--profile-max-steps",
        type=_positive_int,
        default=DEFAULT_PROFILE_MAX_STEPS,
        metavar="N",
        help=f"a profile stops recording by itself after N engine steps (default {DEFAULT_PROFILE_MAX_STEPS})",
    )
    parser.add_argument(
        "--test-fault",
        action="append",
        default=[],
        metavar="NAME[=ARG]",
        help="switch on a deliberate fault for rehearsing incidents (repeatable; listed below)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; exit 2 with a one-line reason on bad configuration."""
    args = _parse_args(argv)
    try:
        faults = parse_faults(args.test_fault)
    except FaultSpecError as exc:
        print(f"engine: refusing to start: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_engine_config(Path(args.config))
        env_dir = args.env_dir or os.environ.get(ENV_DIR_VAR) or None
        settings = resolve_kernel_settings(os.environ, env_dir)
    except (ConfigFileError, ValueError) as exc:
        print(f"engine: refusing to start: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("engine: refusing to start: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    profile_dir = Path(args.profile_dir).resolve() if args.profile_dir else None
    try:
        kernels = select_kernels(args.kernels, torch.device(device))
    except CuteUnavailableError as exc:
        print(f"engine: refusing to start: --kernels cute: {exc}", file=sys.stderr)
        return 2
    try:
        state = build_state(config, settings, env_dir, device, profile_dir, args.profile_max_steps, faults, kernels)
    except ValueError as exc:  # a shape the chosen kernels cannot run (e.g. the CuTe W_O at this wo_split)
        print(f"engine: refusing to start: {kernels.name} kernels with {args.config}: {exc}", file=sys.stderr)
        return 2
    print(
        f"engine: serving {config.model.name} on http://{args.host}:{args.port} "
        f"(CUTE_WO_SPLIT={settings.wo_split} from {settings.sources['CUTE_WO_SPLIT']}, device {device}, "
        f"{kernels.name} kernels, "
        f"{torch.get_num_threads()} torch thread(s), pid {os.getpid()})",
        file=sys.stderr,
        flush=True,
    )
    if faults.names():
        print(
            f"engine: TEST FAULTS ACTIVE: {', '.join(faults.names())} (this server misbehaves on purpose)",
            file=sys.stderr,
            flush=True,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state),
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
    )
    try:
        server.run()
    finally:
        state.engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
