"""Datasets by name: the shipped plans validate on a fresh clone, `data pull` fills the HF cache from a Hub (a
loopback one serving ../shared's files, through the real Hub client), and a soak reads them from the cache and
records which bytes it read. GSM8K from the Hub's parquet gives lm-eval's prompts byte for byte as the JSONL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.datasets.plan_data import data_path, data_records
from runners.plan.data_refs import NAMED, HubFile, parse_data_ref
from runners.plan.load import load_plan
from runners.replay.gsm8k import build_prompt, fewshot_prefixes, load_gsm8k
from runners.replay.workloads import prepare
from runners.run.rundir import RunDir
from tests.support.hub_server import GSM8K_JSONL, NAMED_PLAN, SHAREGPT_JSON, LoopbackHf, cli
from tests.support.plans import Plan, engine_serve
from tests.support.project import ROOT

SHIPPED = ("wo-split-soak.toml", "phasee-tax-3leg.toml", "workloads.toml")


def test_names_and_hub_references_parse_and_bad_ones_say_what_to_write(tmp_path: Path) -> None:
    assert parse_data_ref("sharegpt", "dataset") == NAMED["sharegpt"]["dataset"]
    assert parse_data_ref("gsm8k", "train_file").path == "main/train-00000-of-00001.parquet"
    ref = parse_data_ref("hf://datasets/me/data@v1.2/sub/file.jsonl", "trace")
    assert ref == HubFile("me/data", "v1.2", "sub/file.jsonl") and ref.uri == "hf://me/data@v1.2/sub/file.jsonl"
    phases = [
        {"name": "a", "kind": "sharegpt", "dataset": "gsm8k", "requests": 1},
        {"name": "b", "kind": "sharegpt", "dataset": "hf://me/data/file.json", "requests": 1},
        {"name": "c", "kind": "trace", "trace": "hf://me/data@main/"},
    ]
    plan = Plan("bad-data", {"kind": "process", **engine_serve()}, [{"name": "x"}], phases).write(tmp_path)
    with pytest.raises(ConfigFileError) as err:
        load_plan(plan)
    text = "\n".join(err.value.problems)
    assert 'phases[0].dataset: "gsm8k" is a dataset for test_file or train_file' in text
    assert "dataset takes sharegpt" in text
    assert "phases[1].dataset: hf://me/data/file.json: pin a revision" in text
    assert "phases[2].trace: hf://me/data@main/: name a file inside the repository" in text
    missing = Plan("missing", {"kind": "process", **engine_serve()}, [{"name": "x"}],
                   [{"name": "a", "kind": "sharegpt", "dataset": "sharegpt.json", "requests": 1}])  # fmt: skip
    with pytest.raises(ConfigFileError, match=r'does not exist \(use "builtin", "sharegpt" \(fetched from the Hugging'):
        load_plan(missing.write(tmp_path / "m"))


def test_the_shipped_plans_validate_on_a_fresh_clone_offline_and_list_what_to_fetch(tmp_path: Path) -> None:
    """No ../shared, an empty HF cache, HF_HUB_OFFLINE: each plan is valid and lists its datasets to fetch."""
    configs = Path(shutil.copytree(ROOT / "configs", tmp_path / "clone" / "configs"))  # nothing beside the clone
    for name in SHIPPED:
        plan = configs / name
        done = cli("validate", str(plan), env={**_offline_env(tmp_path / "empty")})
        assert done.returncode == 0, done.stderr
        assert ": valid" in done.stdout
        assert "to fetch, size unknown (HF_HUB_OFFLINE is set: the Hub is not asked)" in done.stdout
        assert f"to fetch: `gb10-console data pull {plan}`" in done.stdout
        assert "where the Hub is reachable" in done.stdout


def test_pull_fills_the_cache_validate_says_cached_and_the_cache_is_used_without_the_hub(
    loopback_hf: LoopbackHf, tmp_path: Path
) -> None:
    plan = NAMED_PLAN.write(tmp_path)
    home = tmp_path / "home"
    before = cli("validate", str(plan), env=loopback_hf.env(home))
    assert before.returncode == 0, before.stderr
    sizes = {f"{len(SHAREGPT_JSON.read_bytes()) / 1024:.3g} KiB"}
    assert "to fetch, " + sizes.pop() in before.stdout  # the size the Hub said
    assert "datasets: 3 to fetch (" in before.stdout
    pulled = cli("data", "pull", str(plan), env=loopback_hf.env(home))
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.count("fetching ") == 3 and pulled.stdout.count("cached ") == 3
    gets = sum(n for key, n in loopback_hf.hub.requests.items() if key.startswith("GET"))
    again = cli("data", "pull", str(plan), env=loopback_hf.env(home))  # pinned commits: the cache answers
    assert again.returncode == 0 and "fetching" not in again.stdout
    assert sum(n for key, n in loopback_hf.hub.requests.items() if key.startswith("GET")) == gets
    offline = cli("validate", str(plan), env=loopback_hf.env(home, online=False))
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.count(": cached, ") == 3 and "to fetch" not in offline.stdout


def test_a_damaged_cached_copy_is_refused_with_what_to_do(loopback_hf: LoopbackHf, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(loopback_hf.home, home, symlinks=True)
    blob = next(p for p in (home / "hub").rglob("blobs/*") if p.stat().st_size == SHAREGPT_JSON.stat().st_size)
    blob.write_bytes(blob.read_bytes().replace(b"human", b"HUMAN", 1))
    plan = NAMED_PLAN.write(tmp_path)
    done = cli("data", "pull", str(plan), env=loopback_hf.env(home, online=False))
    assert done.returncode == 1
    assert "is damaged" in done.stderr and "delete it and run `gb10-console data pull` again" in done.stderr


def test_run_refuses_before_anything_starts_when_a_dataset_is_neither_cached_nor_reachable(tmp_path: Path) -> None:
    """Offline with an empty cache, and online with a Hub that refuses connections (the client retries one file
    for ~23 s; the others are not asked): `run` refuses and writes nothing, `validate` passes and says why."""
    plan = NAMED_PLAN.write(tmp_path)
    out = tmp_path / "run"
    offline = _offline_env(tmp_path / "empty")
    done = cli("run", str(plan), "--headless", "--out", str(out), env=offline)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused before anything started: a dataset cannot be read" in done.stderr
    assert "run `gb10-console data pull PLAN` where the Hub is reachable" in done.stderr
    assert not out.exists()  # no run directory, so no target was started
    gone = {**offline, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    command = [sys.executable, "-m", "console.cli"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    both = [
        subprocess.Popen([*command, *args], cwd=ROOT, env=gone, **pipes)
        for args in (["run", str(plan), "--headless", "--out", str(out)], ["validate", str(plan)])
    ]
    (_, run_err), (validate_out, validate_err) = (proc.communicate(timeout=120) for proc in both)
    assert both[0].returncode == 2 and "ConnectError" in run_err, run_err
    assert run_err.count("is not in the Hugging Face cache either") == 2  # asked once, not once per file
    assert not out.exists()
    assert both[1].returncode == 0, validate_err
    assert "did not answer: ConnectError" in validate_out and validate_out.count("(the Hub did not answer)") == 2
    assert "Traceback" not in run_err + validate_err


def test_gsm8k_from_the_hubs_parquet_gives_the_jsonls_1319_prompts_byte_for_byte(hf_cached: LoopbackHf) -> None:
    """lm-eval's 5-shot prompt of every test question, from the pulled parquet and from ../shared's JSONL."""
    loaded = load_plan(NAMED_PLAN.write(hf_cached.home.parent / "plan-gsm8k"))
    test_parquet, train_parquet = (data_path(loaded, "gsm8k", field) for field in ("test_file", "train_file"))
    assert test_parquet.suffix == ".parquet" and str(test_parquet).startswith(str(hf_cached.home))
    from_hub, from_jsonl = load_gsm8k(test_parquet), load_gsm8k(GSM8K_JSONL / "test.jsonl")
    assert len(from_hub) == 1319 and from_hub == from_jsonl
    train_hub, train_jsonl = load_gsm8k(train_parquet), load_gsm8k(GSM8K_JSONL / "train.jsonl")
    assert len(train_hub) == 7473 and train_hub == train_jsonl
    indices = [i.index for i in from_hub]
    hub_prompts = fewshot_prefixes(train_hub, indices, 5, 1234)
    jsonl_prompts = fewshot_prefixes(train_jsonl, indices, 5, 1234)
    for hub_item, jsonl_item in zip(from_hub, from_jsonl, strict=True):
        hub_prompt = build_prompt(hub_prompts[hub_item.index], hub_item).encode()
        assert hub_prompt == build_prompt(jsonl_prompts[jsonl_item.index], jsonl_item).encode()


async def test_a_phase_with_named_data_prepares_from_the_cache(hf_cached: LoopbackHf, tmp_path: Path) -> None:
    loaded = load_plan(NAMED_PLAN.write(tmp_path))
    chat = await prepare(loaded.plan.phase("chat"), loaded)
    first_ids = [entry["id"] for entry in json.loads(SHAREGPT_JSON.read_text())[:4]]
    assert [c.source for c in chat.conversations] == [f"sharegpt:{i}" for i in first_ids]
    gsm8k = await prepare(loaded.plan.phase("gsm8k"), loaded)
    assert len(gsm8k.conversations) == 3
    records, errors = data_records(loaded)
    assert not errors
    assert {(r["phase"], r["field"], r["commit"]) for r in records} == {
        ("chat", "dataset", NAMED["sharegpt"]["dataset"].revision),
        ("gsm8k", "test_file", NAMED["gsm8k"]["test_file"].revision),
        ("gsm8k", "train_file", NAMED["gsm8k"]["train_file"].revision),
    }


def test_a_soak_reads_named_data_from_the_cache_offline_and_records_what_it_read(
    loopback_hf: LoopbackHf, tmp_path: Path
) -> None:
    plan = NAMED_PLAN.write(tmp_path)
    out = tmp_path / "run"
    done = cli("run", str(plan), "--headless", "--out", str(out), env=loopback_hf.env(online=False), timeout_s=240)
    assert done.returncode == 0, done.stdout + done.stderr
    records = json.loads((out / "provenance.json").read_text())["datasets"]
    chat = next(r for r in records if r["phase"] == "chat")
    assert chat["sha256"] == hashlib.sha256(SHAREGPT_JSON.read_bytes()).hexdigest()
    assert chat["source"] == NAMED["sharegpt"]["dataset"].uri and chat["commit"] == chat["revision"]
    assert chat["bytes"] == SHAREGPT_JSON.stat().st_size
    summary = (out / "summary.md").read_text()
    assert f"- data sharegpt (chat.dataset): {chat['source']}, revision {chat['revision']}" in summary
    assert f"sha256 {chat['sha256']}" in summary
    assert "- data gsm8k (gsm8k.test_file)" in summary and "- data gsm8k (gsm8k.train_file)" in summary


def test_a_resumed_run_whose_cached_data_is_gone_is_refused_and_its_runner_stops_before_any_target(
    loopback_hf: LoopbackHf, tmp_path: Path
) -> None:
    """`run --resume` refuses; the detached runner itself, started on the run, ends it failed and resumable, saying
    why, before it starts a target (it reads the cache alone)."""
    plan = Plan("gone", NAMED_PLAN.serve, NAMED_PLAN.arms, [NAMED_PLAN.phases[0]]).write(tmp_path)
    out = tmp_path / "run"
    first = cli("run", str(plan), "--headless", "--out", str(out), env=loopback_hf.env(online=False), timeout_s=240)
    assert first.returncode == 0, first.stderr
    shutil.rmtree(out / "done")  # the step is to run again
    serve_log = (out / "arms" / "split8" / "primary" / "serve.log").read_text()
    empty = _offline_env(tmp_path / "empty")
    again = cli("run", "--resume", str(out), "--headless", env=empty)
    assert again.returncode == 2 and "refused before anything started: a dataset cannot be read" in again.stderr
    runner = subprocess.run([sys.executable, "-m", "runners.execute", str(out)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=empty)  # fmt: skip
    assert runner.returncode == 1, runner.stderr
    state = RunDir(out).read_state()
    assert state is not None and state.status == "failed" and state.resumable
    assert "a dataset cannot be read" in state.reason and "gb10-console data pull PLAN" in state.reason
    assert (out / "arms" / "split8" / "primary" / "serve.log").read_text() == serve_log  # no target was started


def _offline_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
