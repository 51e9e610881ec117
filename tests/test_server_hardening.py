"""Servers cannot stall or corrupt a run, and keys never leak in any shape (issue #15, failures 4 and 6).

Each failure of the issue is reproduced with its exact inputs against the fake OpenAI-compatible
server (workbench.testing.openai_server), through the Sampler or the `workbench` command.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench.backends.api_common import derive_seed, retry_after_seconds
from workbench.errors import ConfigError, WorkbenchError
from workbench.registry import ModelSpec, load_registry
from workbench.sampler import Sampler
from workbench.secrets import REDACTED, scrub_text
from workbench.store import Store
from workbench.testing.openai_server import FakeOpenAIServer, fake_text

PROMPT = "The three most common pet names are"


def write_registry(path: Path, base_url: str, **fields) -> Path:
    entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model", "base_url": base_url,
             "api_dialect": "llama.cpp", **fields}
    path.write_text(json.dumps({"models": {"fake": entry}}))  # JSON is YAML
    return path


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Exponential backoff from 10 ms instead of 1 s (Retry-After and timeouts are what these tests time)."""
    monkeypatch.setattr("workbench.sampler.retry.BACKOFF_START_S", 0.01)


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_sampler(tmp_path, fresh_store):
    made = []

    def make(srv: FakeOpenAIServer, store: Path | None = None, **fields) -> Sampler:
        registry = load_registry(write_registry(tmp_path / f"models{len(made)}.yaml", srv.base_url, **fields))
        sampler = Sampler(store=store or fresh_store, registry=registry, progress=False)
        made.append(sampler)
        return sampler

    yield make
    for s in made:
        s.store.close()


@pytest.fixture
def cli_registry(server):
    """The fake model in the session's $WORKBENCH_HOME/models.yaml, for `workbench` commands."""
    path = Path(os.environ["WORKBENCH_HOME"]) / "models.yaml"

    def write(**fields) -> Path:
        return write_registry(path, server.base_url, **fields)

    yield write
    path.unlink(missing_ok=True)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The CLI's error line, after checking it is one line with exit status 2 and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("workbench: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- 4. wrong-shape replies ---------------------------------------------------------------------

@pytest.mark.parametrize("fault, field", [("text_object", "choices[0].text is an object"),
                                          ("logprob_string", "choices[0].logprobs.token_logprobs[0] is a string"),
                                          ("usage_string", "usage is a string")])
def test_a_reply_of_the_wrong_shape_is_retried_and_never_reaches_the_store(server, make_sampler, fault, field):
    server.state.faults = [fault]
    sampler = make_sampler(server, max_concurrency=1)
    run = sampler.sample("fake", PROMPT, n=2, max_tokens=5, top_logprobs=1, seed=4)
    assert list(run.samples["text"]) == ["".join(fake_text(derive_seed(4, i), 0, 5)) for i in range(2)]
    events = sampler.store.run_events(run.run_id)
    assert list(events["kind"]) == ["retry"]
    assert f"malformed reply: {field}" in events.iloc[0]["message"]


@pytest.mark.parametrize("chat", [False, True])
def test_wrong_shapes_of_chat_replies_are_named_too(server, make_sampler, chat):
    server.state.faults = ["text_object", "logprob_string"]
    sampler = make_sampler(server, kind="tuned", max_concurrency=1)
    run = sampler.sample("fake", "Name a colour.", n=1, chat=chat, max_tokens=4, top_logprobs=1)
    messages = list(sampler.store.run_events(run.run_id)["message"])
    where = ("choices[0].message.content", "choices[0].logprobs.content[0].logprob") if chat else (
        "choices[0].text", "choices[0].logprobs.token_logprobs[0]")
    assert [m.split("malformed reply: ")[1].split(" is ")[0] for m in messages] == list(where)


# -- 4. Retry-After ------------------------------------------------------------------------------

def test_a_retry_after_of_a_day_stops_the_run_with_when_to_resume(server, cli_registry):
    server.state.faults = ["ok", "429"]
    server.state.retry_after_s = 86400
    cli_registry(max_concurrency=1)
    started = time.monotonic()
    result = run_cli("sample", PROMPT, "--model", "fake", "--n", "3", "--max-tokens", "4", "--quiet", timeout=60)
    assert time.monotonic() - started < 30  # the bug waits a day
    line = one_line_error(result)
    assert "asks to wait 86400 s (until " in line and " UTC)" in line and "max_retry_after_s=60" in line
    assert "stored samples are kept" in line
    with Store(os.environ["WORKBENCH_STORE"]) as store:
        run_id = store.runs().iloc[0]["id"]
        assert sorted(store.sample_indices(run_id)) == [0]
        assert "retry_after_too_long" in set(store.run_events(run_id)["kind"])


def test_a_retry_after_under_the_cap_is_obeyed_and_the_cap_is_a_setting(server, make_sampler):
    server.state.faults = ["429", "429"]
    server.state.retry_after_s = 2
    sampler = make_sampler(server, max_concurrency=1, max_retry_after_s=1)
    with pytest.raises(WorkbenchError, match=r"asks to wait 2 s .*more than max_retry_after_s=1\b"):
        sampler.sample("fake", PROMPT, n=1, max_tokens=4)
    server.state.retry_after_s = 0.3
    run = sampler.sample("fake", PROMPT, n=1, max_tokens=4)
    rate_limited = sampler.store.run_events(run.run_id).query("kind == 'rate_limited'")
    assert rate_limited.iloc[-1]["wait_s"] >= 0.3


# -- 4. a server that accepts connections and never answers --------------------------------------

def test_the_defaults_fail_a_dead_server_in_about_a_minute(server, make_sampler):
    spec = ModelSpec(name="m", backend="openai", kind="base", family="f", api_model="m")
    assert (spec.connect_timeout_s, spec.read_timeout_s, spec.dead_server_s) == (10, 60, 60)
    assert spec.deadline_s is None and spec.max_retry_after_s == 60
    sampler = make_sampler(server)
    backend = sampler.backend("fake")

    async def client_timeout():
        async with backend.session() as client:
            return client.timeout

    import asyncio

    timeout = asyncio.run(client_timeout())
    assert (timeout.connect, timeout.read) == (10, 60)
    # The old single setting still works, as the read timeout.
    legacy = ModelSpec(name="m", backend="openai", kind="base", family="f", api_model="m", timeout_s=5)
    assert legacy.read_timeout_s == 5


def test_a_server_that_never_answers_fails_once_dead_server_s_has_passed(server, make_sampler):
    server.state.faults = ["hang"] * 40
    sampler = make_sampler(server, max_concurrency=2, read_timeout_s=0.5, dead_server_s=2)
    started = time.monotonic()
    with pytest.raises(WorkbenchError) as caught:
        sampler.sample("fake", PROMPT, n=4, max_tokens=4)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message and f"no reply from {server.base_url} within 2 s" in message
    assert "is the server up?" in message and "run the same command to continue" in message
    assert elapsed < 30  # the bug: 7 attempts x the timeout, plus backoff
    assert "no_reply" in set(sampler.store.run_events(sampler.store.runs().iloc[0]["id"])["kind"])


def test_a_slow_reply_within_dead_server_s_is_retried(server, make_sampler):
    server.state.faults = ["slow"]
    server.state.slow_s = 2.0
    sampler = make_sampler(server, read_timeout_s=0.5, dead_server_s=30, max_concurrency=1)
    run = sampler.sample("fake", PROMPT, n=2, max_tokens=4)
    assert sorted(run.samples["sample_index"]) == [0, 1]
    assert "no reply within 0.5 s" in " ".join(sampler.store.run_events(run.run_id)["message"])


def test_a_run_deadline_stops_the_run_and_keeps_its_samples(server, make_sampler):
    server.state.latency_s = 0.3
    sampler = make_sampler(server, max_concurrency=1, deadline_s=1)
    started = time.monotonic()
    with pytest.raises(WorkbenchError, match=r"deadline_s=1 .*stored samples are kept"):
        sampler.sample("fake", PROMPT, n=30, max_tokens=4)
    assert time.monotonic() - started < 20
    run_id = sampler.store.runs().iloc[0]["id"]
    assert 1 <= len(sampler.store.sample_indices(run_id)) < 30
    assert "deadline" in set(sampler.store.run_events(run_id)["kind"])


# -- 4. refilled choices -------------------------------------------------------------------------

def test_a_short_reply_refills_sample_7_as_an_uninterrupted_run_draws_it(server, make_sampler, tmp_path):
    uninterrupted = make_sampler(server, store=tmp_path / "clean.sqlite", choices_per_request=4)
    clean = uninterrupted.sample("fake", PROMPT, n=8, max_tokens=5, seed=11)
    server.state.faults = ["ok", "short"]  # samples 0-3 whole, then 4-6 of 4-7
    sampler = make_sampler(server, choices_per_request=4, max_concurrency=1)
    refilled = sampler.sample("fake", PROMPT, n=8, max_tokens=5, seed=11)
    assert refilled.texts[7] == clean.texts[7] == "".join(fake_text(derive_seed(11, 4, 4), 3, 5))
    assert refilled.texts == clean.texts
    events = sampler.store.run_events(refilled.run_id)
    assert list(events["kind"]) == ["short_choices"] and events.iloc[0]["sample_indices"] == [7]
    asked = [(r["n"], r["seed"]) for r in server.state.requests[2:]]
    assert asked == [(4, derive_seed(11, 0, 4))] + [(4, derive_seed(11, 4, 4))] * 2  # the same request again


def test_choices_per_request_is_in_the_cache_key_only_when_above_one(server, make_sampler):
    one = make_sampler(server)
    four = make_sampler(server, choices_per_request=4)
    assert "choices_per_request" not in one.identity("fake")
    assert four.identity("fake")["choices_per_request"] == 4
    first = one.sample("fake", PROMPT, n=2, max_tokens=4, seed=2)
    assert first.texts == ["".join(fake_text(derive_seed(2, i, 1), 0, 4)) for i in range(2)]
    assert four.sample("fake", PROMPT, n=2, max_tokens=4, seed=2).run_id != first.run_id


def test_a_server_that_ignores_n_falls_back_to_one_request_per_sample(server, make_sampler):
    server.state.max_choices = 1
    sampler = make_sampler(server, choices_per_request=4)
    run = sampler.sample("fake", PROMPT, n=4, max_tokens=4, seed=1)
    assert sorted(run.samples["sample_index"]) == [0, 1, 2, 3]
    assert [r["n"] for r in server.state.requests] == [4, 4, 1, 1, 1]
    assert run.texts[1:] == ["".join(fake_text(derive_seed(1, i, 1), 0, 4)) for i in (1, 2, 3)]
    events = sampler.store.run_events(run.run_id)
    assert "one_per_request" in set(events["kind"])


# -- 6. keys of any shape --------------------------------------------------------------------------

def plain_key() -> str:
    """A 26-character key that does not start with sk- (built at run time: no key-shaped string committed)."""
    return "PLAINkey" + secrets.token_hex(7) + "10zz"


def test_masked_echoes_of_any_key_are_scrubbed():
    key = plain_key()
    assert len(key) == 26
    for echoed in (f"{key[:8]}...{key[-4:]}", f"{key[:3]}***{key[-2:]}", f"{key[:5]}…", f"…{key[-4:]}",
                   f"{key[:4]}****************{key[-4:]}", key[5:15], key):
        cleaned = scrub_text(f"Incorrect API key provided: {echoed}. See your account.", [key])
        assert cleaned == f"Incorrect API key provided: {REDACTED}. See your account.", echoed
    # Ordinary text with dots stays as it is.
    text = "loading... 10 items; wait...; PLAIN text, keys 10zz"
    assert scrub_text(text, [key]) == text


def test_a_plain_key_echoed_by_a_401_leaks_nowhere(server, cli_registry, tmp_path):
    key = plain_key()
    server.state.faults = ["401"]
    cli_registry(api_key_env="FAKE_PLAIN_KEY", max_concurrency=1)
    result = run_cli("sample", PROMPT, "--model", "fake", "--n", "2", "--max-tokens", "4", "--quiet",
                     env={"FAKE_PLAIN_KEY": key})
    line = one_line_error(result)
    assert "authentication failed (401)" in line and "Incorrect API key provided: [redacted]" in line
    with Store(os.environ["WORKBENCH_STORE"]) as store:
        run_id = store.runs().iloc[0]["id"]
        events = " ".join(store.run_events(run_id)["message"])
        for fmt in ("jsonl", "csv", "parquet"):
            store.export_run(run_id, tmp_path / f"run.{fmt}", fmt)
    assert "authentication failed" in events
    texts = [result.stdout, result.stderr, events]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.glob("run.*")]
    texts.append(Path(os.environ["WORKBENCH_STORE"]).read_bytes().decode("utf-8", "replace"))
    for text in texts:
        for part in (key, key[:8], key[-4:], key[8:22], key[:12]):
            assert part not in text


def test_an_anthropic_reply_of_the_wrong_shape_is_retried(tmp_path, fresh_store, monkeypatch):
    import httpx2

    message = json.loads((Path(__file__).parent / "fixtures" / "anthropic" / "message.json").read_text())
    broken = {**message, "content": [{"type": "text", "text": {"oops": 1}}]}
    replies = [broken, {**message, "usage": "lots"}, message]
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=replies.pop(0)))
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "test-" + secrets.token_hex(12))
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"models": {"claude": {
        "backend": "anthropic", "kind": "tuned", "family": "claude", "api_model": "claude-haiku-4-5",
        "api_key_env": "ANTHROPIC_TEST_KEY"}}}))
    with Sampler(store=fresh_store, registry=load_registry(path), progress=False, http_transport=transport) as sampler:
        run = sampler.sample("claude", "Hello", n=1, chat=True, max_tokens=10)
        assert run.texts == [message["content"][0]["text"]]
        messages = list(sampler.store.run_events(run.run_id)["message"])
    assert "malformed reply: content[0].text is an object" in messages[0]
    assert "malformed reply: usage is a string" in messages[1]


# -- the review of #15: unrepresentable waits, bounded timeouts, a next step after retries -------
# Findings 3, 6 and 8, with the reviewer's exact inputs.

@pytest.mark.parametrize("header, seconds", [("inf", math.inf), ("1e400", math.inf), ("nan", math.inf),
                                             ("1e12", 1e12), ("-5", 0.0)])
def test_a_retry_after_that_is_not_a_finite_time_counts_as_too_long(header, seconds):
    assert retry_after_seconds({"retry-after": header}) == seconds
    assert retry_after_seconds({"retry-after-ms": header}) == (seconds / 1000 if math.isfinite(seconds) else seconds)


@pytest.mark.parametrize("retry_after", [math.inf, 1e12])
def test_an_unreasonable_retry_after_stops_the_run_in_one_line(server, cli_registry, retry_after):
    # Before: rc 1, internal error OverflowError at sampler/retry.py:105 (datetime + timedelta).
    server.state.faults = ["ok", "429"]
    server.state.retry_after_s = retry_after
    cli_registry(max_concurrency=1)
    result = run_cli("sample", PROMPT, "--model", "fake", "--n", "3", "--max-tokens", "4", "--quiet", timeout=60)
    line = one_line_error(result)
    assert "asks to wait an unreasonable time" in line and "(until" not in line
    assert "more than max_retry_after_s=60" in line and "stored samples are kept" in line


def test_a_retry_after_message_never_overflows():
    from workbench.backends.base import BackendError
    from workbench.sampler.retry import Retrying

    for seconds in (math.inf, 1e400, 1e12, 1e15, 3e8):
        error = BackendError("rate limited", "rate_limited", seconds)
        with pytest.raises(WorkbenchError, match="more than max_retry_after_s=60") as caught:
            Retrying("openai", server="http://x").failed(error, 0)
        assert "\n" not in str(caught.value)
    error = BackendError("rate limited", "rate_limited", 3600.0)
    with pytest.raises(WorkbenchError, match=r"asks to wait 3600 s \(until .* UTC\)"):
        Retrying("openai", server="http://x").failed(error, 0)


TIMEOUT_FIELDS = ("read_timeout_s", "connect_timeout_s", "dead_server_s", "timeout_s", "deadline_s",
                  "max_retry_after_s")


@pytest.mark.parametrize("field", TIMEOUT_FIELDS)
@pytest.mark.parametrize("value", [".inf", "1e400", "1.0e12"])
def test_registry_times_are_finite_and_sane(tmp_path, field, value):
    # Before: `read_timeout_s: .inf` (and the others) were accepted: a silent server could hold a run forever.
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  fake: {backend: openai, kind: base, family: fake, api_model: m, "
                    f"base_url: 'http://127.0.0.1:9', {field}: {value}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert "\n" not in message and field in message and str(path) in message
    assert "at most" in message


def test_registry_times_up_to_their_bounds_are_taken():
    spec = ModelSpec(name="m", backend="openai", kind="base", family="f", api_model="m", read_timeout_s=86400,
                     connect_timeout_s=86400, dead_server_s=86400, max_retry_after_s=86400, deadline_s=7 * 86400)
    assert spec.deadline_s == 7 * 86400 and spec.read_timeout_s == 86400


def test_the_error_after_retries_run_out_says_what_to_do(server, make_sampler):
    # Before: `openai backend failed after 7 attempts: ... malformed reply: choices[0].text is an object`, no next step.
    server.state.faults = ["text_object"] * 7
    sampler = make_sampler(server, max_concurrency=1)
    with pytest.raises(WorkbenchError) as caught:
        sampler.sample("fake", PROMPT, n=1, max_tokens=4)
    message = str(caught.value)
    assert "\n" not in message and "after 7 attempts" in message
    assert f"check the server at {server.base_url}" in message and "api_dialect" in message
    assert "stored samples are kept" in message and "run the same command to continue" in message
    assert "malformed reply: choices[0].text is an object" in message
    assert sampler.store.sample_indices(sampler.store.runs().iloc[0]["id"]) == set()
