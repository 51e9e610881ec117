"""The openai backend and the Sampler's remote path against a real HTTP server on 127.0.0.1 that
injects faults (workbench.testing.openai_server): retries, concurrency, cost, batches, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench.backends.api_common import derive_seed
from workbench.errors import WorkbenchError
from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.sampler.batches import poll_batches, submit_batch
from workbench.testing.openai_server import FakeOpenAIServer, fake_text

PROMPT = "The three most common pet names are"


def fake_key() -> str:
    # Built at run time so no key-shaped string is ever committed.
    return "sk-" + "test" + secrets.token_hex(16)


def write_registry(path: Path, base_url: str, **fields) -> Path:
    entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model", "base_url": base_url,
             "api_dialect": "llama.cpp", "timeout_s": 2, **fields}
    path.write_text(json.dumps({"models": {"fake": entry}}))  # JSON is YAML
    return path


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_sampler(tmp_path, fresh_store):
    made = []

    def make(srv: FakeOpenAIServer, **fields) -> Sampler:
        registry = load_registry(write_registry(tmp_path / f"models{len(made)}.yaml", srv.base_url, **fields))
        sampler = Sampler(store=fresh_store, registry=registry, progress=False)
        made.append(sampler)
        return sampler

    yield make
    for s in made:
        s.store.close()


def expected_text(seed: int, index: int, max_tokens: int) -> str:
    return "".join(fake_text(derive_seed(seed, index, 1), 0, max_tokens))


def test_every_fault_is_retried_and_every_sample_is_stored_exactly_once(server, make_sampler):
    server.state.faults = ["429", "500", "malformed", "slow", "drop"]
    server.state.slow_s = 6.0  # past the entry's timeout
    sampler = make_sampler(server, timeout_s=3.0)
    run = sampler.sample("fake", PROMPT, n=12, max_tokens=6, seed=3)
    samples = run.samples
    assert sorted(samples["sample_index"]) == list(range(12))
    assert samples["sample_index"].is_unique
    # Each sample is its own request's answer (seed derived from (seed, index)), not a copy.
    assert list(samples["text"]) == [expected_text(3, i, 6) for i in range(12)]
    events = sampler.store.run_events(run.run_id)
    kinds = list(events["kind"])
    # One event per fault (a busy machine can add a timeout, never lose one).
    assert kinds.count("rate_limited") == 1 and kinds.count("retry") >= 4
    messages = " ".join(events["message"])
    assert "429" in messages and "500" in messages and "malformed" in messages and "no reply within" in messages
    assert "connection failed or dropped" in messages
    rate_limited = events[events["kind"] == "rate_limited"].iloc[0]
    assert rate_limited["wait_s"] >= server.state.retry_after_s  # Retry-After honoured
    sent = len(server.state.requests)
    assert sent == 12 + len(events)
    # Resume: asking again sends nothing; asking for more draws only the new indices.
    assert sampler.sample("fake", PROMPT, n=12, max_tokens=6, seed=3).drawn == 0
    assert len(server.state.requests) == sent
    more = sampler.sample("fake", PROMPT, n=16, max_tokens=6, seed=3)
    assert more.drawn == 4 and len(server.state.requests) == sent + 4


def test_every_sampling_field_is_sent_explicitly_per_dialect(server, make_sampler):
    llama = make_sampler(server)
    llama.sample("fake", PROMPT, n=2, max_tokens=5, temperature=0.7, top_logprobs=2, stop=["\n"])
    body = server.state.requests[-1]
    assert body["prompt"] == PROMPT and body["model"] == "fake-model" and body["n"] == 1
    assert body["temperature"] == 0.7 and body["top_p"] == 1.0 and body["top_k"] == 0 and body["min_p"] == 0.0
    assert body["repeat_penalty"] == 1.0 and body["max_tokens"] == 5 and body["stop"] == ["\n"]
    assert body["logprobs"] == 2
    assert {server.state.requests[-2]["seed"], body["seed"]} == {derive_seed(0, 0), derive_seed(0, 1)}

    vllm = make_sampler(server, api_dialect="vllm")
    vllm.sample("fake", PROMPT, n=1, max_tokens=5)
    body = server.state.requests[-1]
    assert body["top_k"] == -1 and body["repetition_penalty"] == 1.0 and "repeat_penalty" not in body

    sent = len(server.state.requests)
    openai_api = make_sampler(server, api_dialect="openai", completions_endpoint=True)
    openai_api.sample("fake", PROMPT, n=1, max_tokens=5)
    assert "top_k" not in server.state.requests[-1] and "min_p" not in server.state.requests[-1]
    with pytest.raises(WorkbenchError, match="does not take top_k"):
        openai_api.sample("fake", PROMPT, n=1, max_tokens=5, top_k=5)
    assert len(server.state.requests) == sent + 1  # refused before sending


def test_chat_models_get_messages_and_logprobs_are_normalised(server, make_sampler):
    sampler = make_sampler(server, kind="tuned")
    run = sampler.sample("fake", "Name a colour.", n=3, chat=True, max_tokens=4, top_logprobs=1)
    body = server.state.requests[-1]
    assert body["messages"] == [{"role": "user", "content": "Name a colour."}]
    assert body["logprobs"] is True and body["top_logprobs"] == 1
    row = run.samples.iloc[0]
    assert row["tokens"] and len(row["tokens"]) == len(row["token_logprobs"]) == row["completion_tokens"]
    assert row["top_logprobs"][0][0][1] == row["tokens"][0]
    assert row["raw"]["model"] == "fake-model" and row["raw"]["usage"]["prompt_tokens"] > 0
    # A base model gets the chat as a transcript through the completions endpoint instead.
    base = make_sampler(server)
    base.sample("fake", "Name a colour.", n=1, chat=True, max_tokens=4)
    assert server.state.requests[-1]["prompt"].endswith("Assistant:") and "messages" not in server.state.requests[-1]


def test_fewer_choices_than_asked_are_asked_for_again(server, make_sampler):
    server.state.faults = ["short"]
    sampler = make_sampler(server, choices_per_request=4)
    run = sampler.sample("fake", PROMPT, n=4, max_tokens=5)
    assert sorted(run.samples["sample_index"]) == [0, 1, 2, 3]
    # 3 came back: the same request went again (same seed, same n) and its 4th choice was kept.
    assert [r["n"] for r in server.state.requests] == [4, 4]
    assert server.state.requests[0]["seed"] == server.state.requests[1]["seed"]
    assert run.samples.iloc[0]["raw"]["asked_choices"] == 4 and run.samples.iloc[0]["raw"]["choices_in_request"] == 3


def test_a_server_that_ignores_n_still_gives_every_sample(server, make_sampler):
    # llama.cpp answers one choice whatever `n` says: asked again, it sends the same choice, so the
    # rest is asked for one request per sample (never running out of attempts).
    server.state.max_choices = 1
    sampler = make_sampler(server, choices_per_request=12)
    run = sampler.sample("fake", PROMPT, n=12, max_tokens=4)
    assert sorted(run.samples["sample_index"]) == list(range(12))
    assert [r["n"] for r in server.state.requests] == [12, 12] + [1] * 11
    assert set(sampler.store.run_events(run.run_id)["kind"]) == {"short_choices", "one_per_request"}


def test_requests_run_concurrently_up_to_the_models_limit(server, make_sampler):
    server.state.latency_s = 0.2
    sampler = make_sampler(server, max_concurrency=4)
    started = time.perf_counter()
    sampler.sample("fake", PROMPT, n=12, max_tokens=4)
    elapsed = time.perf_counter() - started
    assert server.state.max_in_flight == 4
    assert elapsed < 12 * 0.2  # not one at a time (the bench measures the ratio)


def test_the_same_call_works_inside_a_running_event_loop(server, make_sampler):
    sampler = make_sampler(server)

    async def notebook_cell():
        return sampler.sample("fake", PROMPT, n=3, max_tokens=4)

    run = asyncio.run(notebook_cell())
    assert run.drawn == 3 and len(run.samples) == 3


def test_auth_errors_fail_at_once_without_the_key(server, make_sampler, monkeypatch):
    key = fake_key()
    monkeypatch.setenv("FAKE_SERVER_KEY", key)
    server.state.faults = ["401"]
    sampler = make_sampler(server, api_key_env="FAKE_SERVER_KEY")
    with pytest.raises(WorkbenchError) as caught:
        sampler.sample("fake", PROMPT, n=3, max_tokens=4)
    message = str(caught.value)
    assert "authentication failed" in message and "FAKE_SERVER_KEY" in message
    assert key not in message and key[-4:] + "." not in message
    assert len(server.state.requests) <= 3  # no retries: each request in flight failed once, then all stopped
    events = sampler.store.run_events(sampler.store.runs().iloc[0]["id"])
    assert key not in " ".join(events["message"])


def test_bad_requests_fail_at_once_with_the_servers_reason(server, make_sampler):
    server.state.faults = ["400"]
    sampler = make_sampler(server, max_concurrency=1)
    with pytest.raises(WorkbenchError, match="refused the request .400. .*top_k"):
        sampler.sample("fake", PROMPT, n=2, max_tokens=4)
    assert len(server.state.requests) == 1


def test_a_fake_key_never_reaches_the_store_exports_or_figures(server, make_sampler, monkeypatch, tmp_path,
                                                               fresh_store):
    key = fake_key()
    monkeypatch.setenv("FAKE_SERVER_KEY", key)
    server.state.faults = ["429"]
    sampler = make_sampler(server, api_key_env="FAKE_SERVER_KEY")
    run = sampler.sample("fake", PROMPT, n=4, max_tokens=4)
    assert server.state.headers[-1]["authorization"] == f"Bearer {key}"  # it was used
    assert key not in repr(sampler.backend("fake")) and key not in repr(sampler.model("fake"))
    for fmt in ("parquet", "csv", "jsonl"):
        sampler.store.export_run(run.run_id, tmp_path / f"run.{fmt}", fmt)
    from matplotlib.figure import Figure

    from workbench.plots import export_figure

    fig = Figure()
    fig.add_subplot().bar(run.samples["text"], 1)
    export_figure(fig, tmp_path / "fig", {"run_ids": [run.run_id], "env": dict(os.environ)}, formats=("png", "svg"))
    sampler.store.close()
    files = [fresh_store, *tmp_path.rglob("*")]
    for path in files:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_cost_dry_run_and_max_cost(server, make_sampler, tmp_path, monkeypatch):
    home = Path(os.environ["WORKBENCH_HOME"])
    prices = home / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 1000.0, output: 2000.0}\n")
    try:
        sampler = make_sampler(server)
        estimate = sampler.estimate("fake", PROMPT, n=10, max_tokens=4)
        assert estimate.requests == 10 and estimate.cached == 0 and estimate.cost_usd > 0
        assert server.state.requests == []  # nothing sent
        run = sampler.sample("fake", PROMPT, n=2, max_tokens=4)
        usage = sampler.run_usage(run.run_id)
        tokens = run.samples
        expected = (tokens["prompt_tokens"].sum() * 1000.0 + tokens["completion_tokens"].sum() * 2000.0) / 1e6
        assert usage.cost_usd == pytest.approx(expected)
        with pytest.raises(WorkbenchError, match="max_cost"):
            sampler.sample("fake", PROMPT, n=40, max_tokens=4, max_cost=usage.cost_usd + 0.2)
        stored = sampler.store.samples(run.run_id)
        assert 2 <= len(stored) < 40 and stored["sample_index"].is_unique
        assert sampler.run_usage(run.run_id).cost_usd <= usage.cost_usd + 0.2
        assert "max_cost" in set(sampler.store.run_events(run.run_id)["kind"])
        assert sampler.estimate("fake", PROMPT, n=40, max_tokens=4).cached == len(stored)
    finally:
        prices.unlink()


def test_batch_jobs_are_stored_polled_after_a_restart_and_land_as_samples(server, make_sampler, fresh_store):
    sampler = make_sampler(server)
    job = submit_batch(sampler, "fake", PROMPT, n=5, max_tokens=4, seed=2)
    assert job is not None and job.sample_indices == [0, 1, 2, 3, 4]
    assert submit_batch(sampler, "fake", PROMPT, n=5, max_tokens=4, seed=2) is None  # already pending
    first = poll_batches(sampler)
    assert [j.status for j in first] == ["in_progress"] and not first[0].finished
    # A new process: the batch id lives in the store.
    restarted = make_sampler(server)
    done = poll_batches(restarted, wait=True, interval_s=0.05, timeout_s=10)
    assert done[0].finished and done[0].stored == 5
    run = restarted.sample("fake", PROMPT, n=5, max_tokens=4, seed=2)
    assert run.drawn == 0 and all(r["batch"] for r in run.samples["raw"])
    assert list(run.samples["text"]) == [expected_text(2, i, 4) for i in range(5)]
    assert restarted.store.batches(unfinished=True) == []


def test_cli_dry_run_runs_show_and_batches(server, tmp_path):
    registry = write_registry(Path(os.environ["WORKBENCH_HOME"]) / "models.yaml", server.base_url)
    try:
        dry = run_cli("sample", PROMPT, "--model", "fake", "--n", "6", "--max-tokens", "4", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "6 of 6 samples to draw" in dry.stdout and "6 requests" in dry.stdout
        assert server.state.requests == []
        server.state.faults = ["500"]
        sampled = run_cli("sample", PROMPT, "--model", "fake", "--n", "3", "--max-tokens", "4", "--quiet")
        assert sampled.returncode == 0, sampled.stderr
        run_id = sampled.stdout.split("run ")[1].split(":")[0]
        shown = run_cli("runs", "show", run_id)
        assert shown.returncode == 0, shown.stderr
        assert "usage: 3 samples, 3 requests" in shown.stdout and "retry" in shown.stdout
        submitted = run_cli("sample", PROMPT, "--model", "fake", "--n", "6", "--max-tokens", "4", "--batch")
        assert submitted.returncode == 0, submitted.stderr
        assert "submitted batch" in submitted.stdout
        polled = run_cli("batches", "poll", "--wait", "--interval", "0.05")
        assert polled.returncode == 0, polled.stderr
        assert "completed" in polled.stdout and "stored 3" in polled.stdout
        again = run_cli("sample", PROMPT, "--model", "fake", "--n", "6", "--max-tokens", "4", "--dry-run")
        assert "0 of 6 samples to draw (6 cached)" in again.stdout
    finally:
        registry.unlink()
