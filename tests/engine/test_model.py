"""The tiny model, tokenizer, sampling, settings resolution and the batching engine loop."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest
import torch

from engine.config import ModelConfig, load_engine_config
from engine.config_file import ConfigFileError
from engine.engine_loop import EngineLoop, TokenDelta
from engine.env_sentinel import SentinelError, format_sentinel, parse_sentinel
from engine.kernel_settings import resolve_kernel_settings
from engine.kernels.wo_split_values import WoSplitError
from engine.model import TinyDecoder
from engine.sampling import SamplingParams, make_generator, sample_token
from engine.tokenizer import BOS, EOS, StreamDecoder, decode, encode
from tests.support.project import ENGINE_CONFIG

SMALL = ModelConfig(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, max_model_len=256)


def generate(model: TinyDecoder, prompt: str, n: int, params: SamplingParams) -> list[int]:
    ids = encode(prompt)
    cache = model.new_cache(len(ids) + n)
    gen = make_generator(params.seed)
    logits = model.prefill(ids, cache)
    out = []
    for _ in range(n):
        tok = sample_token(logits, params, gen)
        out.append(tok)
        logits = model.decode([tok], [cache])[0]
    return out


def test_same_seed_gives_same_tokens_and_another_seed_does_not() -> None:
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=7)
    a = generate(TinyDecoder(SMALL), "hello", 24, params)
    b = generate(TinyDecoder(SMALL), "hello", 24, params)
    c = generate(TinyDecoder(SMALL.model_copy(update={"seed": 99})), "hello", 24, params)
    assert a == b
    assert a != c


def test_decode_step_matches_full_forward() -> None:
    model = TinyDecoder(SMALL)
    ids = encode("abcdef")
    cache = model.new_cache(len(ids) + 1)
    model.prefill(ids, cache)
    step = model.decode([ord("g")], [cache])[0]
    full = model.forward([*ids, ord("g")], model.new_cache(len(ids) + 1))[-1]
    torch.testing.assert_close(step[:256], full[:256], rtol=1e-5, atol=1e-5)


def test_batched_decode_matches_single_sequence_decode() -> None:
    model = TinyDecoder(SMALL)
    prompts = [encode("one"), encode("a longer prompt")]
    caches = [model.new_cache(32) for _ in prompts]
    for ids, cache in zip(prompts, caches, strict=True):
        model.prefill(ids, cache)
    batched = model.decode([65, 66], caches)
    single = model.new_cache(32)
    model.prefill(prompts[1], single)
    torch.testing.assert_close(batched[1, :256], model.decode([66], [single])[0, :256], rtol=1e-5, atol=1e-5)


def test_tokenizer_round_trip_and_streamed_multibyte_text() -> None:
    text = "naïve — 東京"
    ids = encode(text)
    assert ids[0] == BOS and decode(ids) == text
    dec = StreamDecoder()
    pieces = [dec.push(i) for i in ids[1:]]
    assert "".join(pieces) == text
    assert "" in pieces  # a character appears only once all its bytes have arrived
    assert dec.push(EOS) == ""


def test_greedy_sampling_is_argmax_and_top_k_1_too() -> None:
    logits = torch.tensor([0.1, 3.0, 0.2, 2.9])
    gen = make_generator(0)
    assert sample_token(logits, SamplingParams(max_tokens=1, temperature=0.0), gen) == 1
    assert sample_token(logits, SamplingParams(max_tokens=1, temperature=5.0, top_k=1), gen) == 1
    assert sample_token(logits, SamplingParams(max_tokens=1, temperature=5.0, top_p=0.01), gen) == 1


def test_env_wins_over_sentinel_which_wins_over_default(tmp_path: Path) -> None:
    (tmp_path / "ENV").write_text(format_sentinel({"CUTE_WO_SPLIT": "4"}))
    assert resolve_kernel_settings({}, None).wo_split == 1
    from_file = resolve_kernel_settings({}, tmp_path)
    assert (from_file.wo_split, from_file.sources["CUTE_WO_SPLIT"]) == (4, "sentinel")
    from_env = resolve_kernel_settings({"CUTE_WO_SPLIT": "8"}, tmp_path)
    assert (from_env.wo_split, from_env.sources["CUTE_WO_SPLIT"]) == (8, "env")


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    (tmp_path / "ENV").write_text("CUTE_WO_SPLIT=3\n")
    with pytest.raises(WoSplitError, match=r"from sentinel .*ENV.*'3' is not one of"):
        resolve_kernel_settings({}, tmp_path)
    with pytest.raises(SentinelError, match="no ENV sentinel"):
        resolve_kernel_settings({}, tmp_path / "missing")
    with pytest.raises(SentinelError, match=r"ENV:2: expected KEY=VALUE"):
        parse_sentinel("# ok\nnot a pair\n", "ENV")
    with pytest.raises(SentinelError, match="spans lines"):
        format_sentinel({"A": "x\ny"})


def test_engine_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    assert load_engine_config(ENGINE_CONFIG).model.kv_heads == 2
    bad = tmp_path / "engine.toml"
    bad.write_text("[model]\nlayers = 4\nheads = 8\nkv_heads = 3\n")
    with pytest.raises(ConfigFileError, match=r"engine.toml:1: model: heads \(8\) must be a multiple of kv_heads"):
        load_engine_config(bad)


class Collector:
    """A sink that collects deltas from the engine thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[TokenDelta] = queue.Queue()

    def __call__(self, d: TokenDelta) -> None:
        self.q.put(d)

    def all(self, timeout: float = 30.0) -> list[TokenDelta]:
        out = []
        while not out or out[-1].finish_reason is None:
            out.append(self.q.get(timeout=timeout))
        return out


@pytest.fixture
def engine_loop():
    loop = EngineLoop(TinyDecoder(SMALL), max_num_seqs=4)
    loop.start()
    yield loop
    loop.stop()
    assert not loop.alive


def test_engine_loop_batches_more_requests_than_slots(engine_loop: EngineLoop) -> None:
    sinks = [Collector() for _ in range(7)]
    for i, sink in enumerate(sinks):
        engine_loop.submit(f"r{i}", encode(f"prompt {i}"), SamplingParams(max_tokens=10, ignore_eos=True, seed=i), sink)
    for sink in sinks:
        deltas = sink.all()
        assert len(deltas) == 10 and deltas[-1].finish_reason == "length"
        assert deltas[-1].completion_tokens == 10


def test_stop_string_ends_generation_and_is_not_emitted(engine_loop: EngineLoop) -> None:
    free = Collector()
    engine_loop.submit("free", encode("x"), SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True), free)
    text = "".join(d.text for d in free.all())
    stop = text[10:12]
    first = text.find(stop)
    stopped = Collector()
    params = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True, stop=(stop,))
    engine_loop.submit("stopped", encode("x"), params, stopped)
    deltas = stopped.all()
    assert deltas[-1].finish_reason == "stop"
    assert "".join(d.text for d in deltas) == text[:first]


def test_engine_loop_abort_drops_a_request(engine_loop: EngineLoop) -> None:
    sink = Collector()
    engine_loop.submit("long", encode("x"), SamplingParams(max_tokens=200, ignore_eos=True), sink)
    sink.q.get(timeout=30)
    engine_loop.abort("long")
    threading.Event().wait(0.5)
    drained = 0
    while not sink.q.empty():
        sink.q.get()
        drained += 1
    threading.Event().wait(0.3)
    assert sink.q.empty() and drained < 199
