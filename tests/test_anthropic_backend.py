"""The anthropic backend: request shaping and response parsing through the real `anthropic` SDK,
with responses replayed by an httpx2 mock transport from hand-written fixtures that follow the
documented API schema (tests/fixtures/anthropic/README.md: nothing could be recorded here)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx2
import pytest

from workbench.errors import WorkbenchError
from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.sampler.batches import poll_batches, submit_batch

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeAnthropic:
    """Answers like api.anthropic.com from the fixtures; records every request."""

    def __init__(self, replies: list[tuple[int, str, dict[str, str]]] | None = None) -> None:
        self.replies = list(replies or [])  # (status, fixture, headers) consumed per /v1/messages call
        self.requests: list[httpx2.Request] = []
        self.batch_polls = 0
        self.transport = httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/messages":
            status, name, headers = self.replies.pop(0) if self.replies else (200, "message.json", {})
            return httpx2.Response(status, json=fixture(name), headers=headers)
        if path == "/v1/messages/batches" and request.method == "POST":
            return httpx2.Response(200, json=fixture("batch_in_progress.json"))
        if path.endswith("/results"):
            return httpx2.Response(200, content=(FIXTURES / "batch_results.jsonl").read_bytes(),
                                   headers={"content-type": "application/x-jsonl"})
        if path.startswith("/v1/messages/batches/"):
            self.batch_polls += 1
            return httpx2.Response(200, json=fixture("batch_in_progress.json" if self.batch_polls == 1
                                                     else "batch_ended.json"))
        return httpx2.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": path}})

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path == "/v1/messages"]


@pytest.fixture
def key(monkeypatch):
    value = "sk-ant-" + "test" + secrets.token_hex(20)  # built at run time: no key-shaped string committed
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", value)
    return value


def make_sampler(tmp_path: Path, store: Path, api: FakeAnthropic, **fields) -> Sampler:
    entry = {"backend": "anthropic", "kind": "tuned", "family": "claude", "api_model": "claude-haiku-4-5",
             "api_key_env": "ANTHROPIC_TEST_KEY", "timeout_s": 5, **fields}
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"models": {"claude": entry}}))
    return Sampler(store=store, registry=load_registry(path), progress=False, http_transport=api.transport)


def test_messages_with_system_prompt_prefill_and_sampling_fields(tmp_path, fresh_store, key):
    api = FakeAnthropic()
    sampler = make_sampler(tmp_path, fresh_store, api)
    messages = [{"role": "system", "content": "You are a storyteller."},
                {"role": "user", "content": "Tell me a story."},
                {"role": "assistant", "content": "Once upon a time there was  "}]
    run = sampler.sample("claude", messages, n=2, max_tokens=30, temperature=0.7, top_k=20, stop=["\n\n"])
    body = api.bodies()[0]
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 30
    assert body["system"] == "You are a storyteller."
    # The prefill, without its trailing space.
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon a time there was"}
    assert body["temperature"] == 0.7 and body["top_k"] == 20 and "top_p" not in body
    assert body["stop_sequences"] == ["\n\n"]
    headers = api.requests[0].headers
    # The SDK sends the key as x-api-key or (newer versions) as a bearer token.
    assert key in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in headers
    row = run.samples.iloc[0]
    assert row["text"] == " a little fox who lived at the edge of the forest."
    assert row["finish_reason"] == "eos" and row["prompt_tokens"] == 31 and row["completion_tokens"] == 13
    assert row["raw"]["model"] == "claude-haiku-4-5-20251001" and row["token_logprobs"] is None
    backend = sampler.backend("claude")
    assert not (backend.supports_logprobs or backend.supports_score or backend.supports_next_token_topk)


def test_a_raw_text_prompt_becomes_an_explicit_prefill(tmp_path, fresh_store, key):
    api = FakeAnthropic()
    sampler = make_sampler(tmp_path, fresh_store, api)
    run = sampler.sample("claude", "Once upon a time, ", n=1, max_tokens=20)
    body = api.bodies()[0]
    assert run.rendered.template == "prefill-continuation"
    assert body["messages"][0]["role"] == "user" and "Continue" in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "assistant", "content": "Once upon a time,"}
    assert "system" not in body


def test_stop_reasons_map_to_finish_reasons(tmp_path, fresh_store, key):
    api = FakeAnthropic([(200, "message_stop_sequence.json", {}), (200, "message_max_tokens.json", {})])
    sampler = make_sampler(tmp_path, fresh_store, api, max_concurrency=1)
    run = sampler.sample("claude", "Name a colour.", n=2, chat=True, max_tokens=4, stop=["\n"])
    rows = run.samples.set_index("sample_index")
    assert (rows.loc[0, "finish_reason"], rows.loc[0, "stop_sequence"]) == ("stop", "\n")
    assert rows.loc[1, "finish_reason"] == "length"


def test_rate_limits_and_overload_are_retried_and_recorded(tmp_path, fresh_store, key):
    api = FakeAnthropic([(429, "error_rate_limit.json", {"retry-after": "0.3"}), (529, "error_overloaded.json", {})])
    sampler = make_sampler(tmp_path, fresh_store, api, max_concurrency=1)
    run = sampler.sample("claude", "Hello", n=2, chat=True, max_tokens=10)
    assert sorted(run.samples["sample_index"]) == [0, 1]
    events = sampler.store.run_events(run.run_id)
    assert list(events["kind"]) == ["rate_limited", "retry"]
    assert events.iloc[0]["wait_s"] >= 0.3 and "529" in events.iloc[1]["message"]


def test_authentication_errors_fail_at_once_and_never_show_the_key(tmp_path, fresh_store, key):
    api = FakeAnthropic([(401, "error_authentication.json", {})])
    sampler = make_sampler(tmp_path, fresh_store, api, max_concurrency=1)
    with pytest.raises(WorkbenchError, match="authentication failed .401.*ANTHROPIC_TEST_KEY") as caught:
        sampler.sample("claude", "Hello", n=3, chat=True, max_tokens=10)
    assert key not in str(caught.value) and len(api.bodies()) == 1


def test_missing_key_and_unsupported_fields_are_clear_errors(tmp_path, fresh_store, monkeypatch, key):
    api = FakeAnthropic()
    sampler = make_sampler(tmp_path, fresh_store, api)
    with pytest.raises(WorkbenchError, match="does not take min_p"):
        sampler.sample("claude", "Hello", n=1, chat=True, min_p=0.1)
    with pytest.raises(WorkbenchError, match="temperature 0-1"):
        sampler.sample("claude", "Hello", n=1, chat=True, temperature=1.5)
    monkeypatch.delenv("ANTHROPIC_TEST_KEY")
    with pytest.raises(WorkbenchError, match="set the environment variable ANTHROPIC_TEST_KEY"):
        sampler.sample("claude", "Hello", n=1, chat=True)
    assert api.requests == []


def test_message_batches_submit_poll_and_store_results(tmp_path, fresh_store, key):
    api = FakeAnthropic()
    sampler = make_sampler(tmp_path, fresh_store, api)
    job = submit_batch(sampler, "claude", "Once upon a time", n=3, max_tokens=20)
    create = json.loads(api.requests[0].content)
    assert [r["custom_id"] for r in create["requests"]] == ["i0", "i1", "i2"]
    assert create["requests"][0]["params"]["messages"][-1]["role"] == "assistant"
    assert job.batch_id == "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"
    assert not poll_batches(sampler)[0].finished
    done = poll_batches(sampler)[0]
    assert done.finished and done.stored == 2
    stored = sampler.store.samples(job.run_id)
    assert sorted(stored["sample_index"]) == [0, 2] and all(r["batch"] for r in stored["raw"])
    events = sampler.store.run_events(job.run_id)
    assert "1 samples did not come back" in events.iloc[-1]["message"]
    # The errored sample is submitted again, alone.
    again = submit_batch(sampler, "claude", "Once upon a time", n=3, max_tokens=20)
    assert again.sample_indices == [1]
