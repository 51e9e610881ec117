"""Server-scale throughput without losing reproducibility, and a store that stays flat (issue #19).

Speed itself is measured by bench/bench_throughput.py and bench/bench_store.py (never asserted
here). These tests check what the speed must not cost: sample i is the same text in the
high-rate mode however a run was interrupted, resumed or extended; samples cross threads and
reach the store in batches without being lost; the worker pool keeps a few tasks, not one per
request; the fake server takes 256 connections at once; and the store's hot queries use indexes
(EXPLAIN QUERY PLAN) and do the same work on a small and a large store (SQLite's own step counter).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench.backends.api_common import derive_seed
from workbench.backends.base import blocks_needed, request_blocks
from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.sampler.remote import Inbox, _store_items
from workbench.store import Store
from workbench.testing.openai_server import FakeOpenAIServer, fake_text
from workbench.types import Generation, SampleSlot

PROMPT = "Pick a random number between 1 and 100. My number is"


def write_registry(path: Path, base_url: str, **fields) -> Path:
    entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model", "base_url": base_url,
             "api_dialect": "vllm", **fields}
    path.write_text(json.dumps({"models": {"fake": entry}}))
    return path


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_sampler(tmp_path, fresh_store, server):
    made = []

    def make(store: Path | None = None, **fields) -> Sampler:
        registry = load_registry(write_registry(tmp_path / f"models{len(made)}.yaml", server.base_url, **fields))
        sampler = Sampler(store=store or fresh_store, registry=registry, progress=False)
        made.append(sampler)
        return sampler

    server.state.requests.clear()
    yield make
    for s in made:
        s.store.close()


def block_text(seed: int, index: int, size: int, max_tokens: int) -> str:
    """Sample `index` in the high-rate mode: choice index % size of its block's request."""
    start = index // size * size
    return "".join(fake_text(derive_seed(seed, start, size), index - start, max_tokens))


# -- 2. high-rate mode: fixed, aligned blocks ---------------------------------------------------------

def test_blocks_are_fixed_and_aligned_whatever_is_missing():
    slots = [SampleSlot(5, i) for i in (2, 3, 9, 17, 18, 31)]
    blocks = list(request_blocks(slots, 8))
    assert [(b.slots[0].index, b.slots[-1].index, b.wanted) for b in blocks] == [
        (0, 7, (2, 3)), (8, 15, (9,)), (16, 23, (17, 18)), (24, 31, (31,))]
    assert all(len(b.slots) == 8 and {s.seed for s in b.slots} == {5} for b in blocks)
    assert [b.slots for b in request_blocks([SampleSlot(0, 4)], 1)] == [(SampleSlot(0, 4),)]
    # Counted without listing: n=10, blocks of 4 -> 3 blocks; indices 0-3 stored -> 2 to send.
    assert blocks_needed(10, set(), 4) == 3
    assert blocks_needed(10, {0, 1, 2, 3}, 4) == 2
    assert blocks_needed(10, {0, 1, 2, 3, 8, 9}, 4) == 1  # the last block is complete at n=10
    assert blocks_needed(10, {0, 1, 2}, 4) == 3
    assert blocks_needed(10**8, set(), 16) == 10**8 // 16


def test_sample_i_is_the_same_text_however_a_block_run_was_resumed_or_extended(make_sampler, tmp_path, server):
    size, seed, n = 4, 3, 10
    clean = make_sampler(store=tmp_path / "clean.sqlite", choices_per_request=size)
    uninterrupted = clean.sample("fake", PROMPT, n=n, max_tokens=5, seed=seed)
    expected = [block_text(seed, i, size, 5) for i in range(n)]
    assert uninterrupted.texts == expected

    sampler = make_sampler(choices_per_request=size, max_concurrency=2)
    first = sampler.sample("fake", PROMPT, n=3, max_tokens=5, seed=seed)
    assert first.texts == expected[:3]
    # The whole first block was asked for and paid for: its fourth choice is stored for later.
    assert sampler.store.sample_indices(first.run_id) == {0, 1, 2, 3}
    # Samples lost in the middle of blocks (as a kill -9 between commits could leave a run).
    with sqlite3.connect(sampler.store.path) as db:
        db.execute("DELETE FROM samples WHERE sample_index IN (1, 2)")
    server.state.requests.clear()
    extended = sampler.sample("fake", PROMPT, n=n, max_tokens=5, seed=seed)
    assert extended.texts == expected
    asked = sorted((r["seed"], r["n"]) for r in server.state.requests)
    assert asked == sorted((derive_seed(seed, start, size), size) for start in (0, 4, 8))
    assert extended.drawn == 2 + 6  # indices 1, 2 and 4..9


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("workbench.sampler.retry.BACKOFF_START_S", 0.01)


def test_replies_short_of_the_missing_choices_are_retried_not_drawn_another_way(make_sampler, server, fast_backoff):
    server.state.faults = ["short", "short", "500", "short"]  # choice 15 is dropped three times
    sampler = make_sampler(choices_per_request=16, max_concurrency=1)
    run = sampler.sample("fake", PROMPT, n=16, max_tokens=4, seed=4)
    assert run.texts == [block_text(4, i, 16, 4) for i in range(16)]
    events = sampler.store.run_events(run.run_id)
    assert "one_per_request" not in set(events["kind"]) and "retry" in set(events["kind"])


def test_a_server_that_caps_choices_still_finishes_and_says_how(make_sampler, server, fast_backoff):
    server.state.max_choices = 5  # never more than 5 choices per reply
    try:
        sampler = make_sampler(choices_per_request=8, max_concurrency=2)
        run = sampler.sample("fake", PROMPT, n=8, max_tokens=4, seed=4)
    finally:
        server.state.max_choices = None
    assert run.texts[:5] == [block_text(4, i, 8, 4) for i in range(5)]
    assert run.texts[5:] == ["".join(fake_text(derive_seed(4, i, 1), 0, 4)) for i in (5, 6, 7)]
    events = sampler.store.run_events(run.run_id)
    fallback = events[events["kind"] == "one_per_request"].iloc[0]
    assert fallback["sample_indices"] == [5, 6, 7] and "never came back" in fallback["message"]


def test_a_re_asked_block_says_what_it_discarded(make_sampler):
    sampler = make_sampler(choices_per_request=4)
    run = sampler.sample("fake", PROMPT, n=8, max_tokens=4)
    with sqlite3.connect(sampler.store.path) as db:
        db.execute("DELETE FROM samples WHERE sample_index = 5")
    sampler.sample("fake", PROMPT, n=8, max_tokens=4)
    events = sampler.store.run_events(run.run_id)
    [message] = events[events["kind"] == "block_asked_again"]["message"]
    assert "block 4-7" in message and "1 choice already stored discarded" in message  # index 4; 6 and 7 are kept
    assert events[events["kind"] == "block_asked_again"].iloc[0]["sample_indices"] == [4]


def test_a_block_run_is_not_the_one_per_request_run(make_sampler):
    one = make_sampler()
    blocks = make_sampler(choices_per_request=4)
    assert one.sample("fake", PROMPT, n=4, max_tokens=4).run_id != blocks.sample("fake", PROMPT, n=4,
                                                                                   max_tokens=4).run_id


def test_the_dry_run_counts_whole_blocks_and_their_tokens(make_sampler):
    sampler = make_sampler(choices_per_request=16)
    one = sampler.estimate("fake", PROMPT, n=1, max_tokens=4)
    assert (one.requests, one.max_completion_tokens) == (1, 16 * 4)  # the whole block is asked for and paid
    sampler.sample("fake", PROMPT, n=20, max_tokens=4)  # blocks 0 and 1: indices 0..31 stored
    assert sampler.estimate("fake", PROMPT, n=40, max_tokens=4).requests == 1  # only block 2 (32..47)
    assert sampler.estimate("fake", PROMPT, n=10**6, max_tokens=4).requests == 10**6 // 16 - 2
    assert "request_blocks" in sampler.identity("fake")  # runs grouped before blocks were aligned are other runs


def test_max_cost_lets_the_requests_in_flight_finish(make_sampler, tmp_path):
    import os

    from workbench.errors import WorkbenchError

    prices = Path(os.environ["WORKBENCH_HOME"]) / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 0.0, output: 10000.0}\n")
    try:
        sampler = make_sampler(choices_per_request=4, max_concurrency=8)
        # A block's worst case is 4 choices x 4 tokens x $0.01 = $0.16: $0.50 covers 3 of the 8 first requests.
        with pytest.raises(WorkbenchError, match="max_cost"):
            sampler.sample("fake", PROMPT, n=64, max_tokens=4, max_cost=0.50)
        run_id = sampler.store.runs().iloc[0]["id"]
        assert len(sampler.store.sample_indices(run_id)) >= 12  # what fitted was drawn and stored
        assert sampler.run_usage(run_id).cost_usd <= 0.50
    finally:
        prices.unlink()


# -- 1. fewer hand-offs, batched commits, a worker pool -------------------------------------------

def generation(index: int) -> Generation:
    return Generation(index=index, text=f" text {index}", token_ids=None, tokens=None, token_logprobs=None,
                      finish_reason="stop")


class CountingBar:
    def __init__(self) -> None:
        self.n = 0

    def update(self, count: int) -> None:
        self.n += count


def test_everything_waiting_is_committed_in_one_transaction_before_it_counts(fresh_store):
    inbox = Inbox()
    inbox.put(("generations", ([generation(0), generation(1)], 2)))
    inbox.put(("event", {"kind": "short_choices", "message": "3 of 4 choices came back"}))
    inbox.put(("generations", ([generation(2), generation(7)], 1)))  # 7: a choice past n, stored, not counted
    items = inbox.take_all(timeout=1)
    assert [kind for kind, _ in items] == ["generations", "event", "generations"]
    assert inbox.take_all(timeout=0) == []
    with Store(fresh_store) as store:
        from workbench.store import RunRecord

        run_id = store.ensure_run(RunRecord(cache_key="k", model="m", model_identity={}, model_kind="base",
                                            model_family="f", backend="openai", endpoint=None, dtype=None,
                                            input_mode="completion", input_text="x", input_messages=None,
                                            template="raw", prompt_ref=None, config={}, seed=0, tags=[]))
        calls = []
        original = store.add_generations
        store.add_generations = lambda *args: calls.append(len(args[1])) or original(*args)
        bar = CountingBar()
        assert _store_items(store, run_id, items, None, bar) is False
        assert calls == [4] and bar.n == 3  # one transaction for all four rows
        assert store.sample_indices(run_id) == {0, 1, 2, 7}
        assert list(store.run_events(run_id)["kind"]) == ["short_choices"]
        assert _store_items(store, run_id, [("finished", None)], None, bar) is True
        with pytest.raises(RuntimeError, match="the network failed"):
            _store_items(store, run_id, [("generations", ([generation(3)], 1)), ("finished",
                                                                                RuntimeError("the network failed"))],
                         None, bar)
        assert 3 in store.sample_indices(run_id)  # what arrived before the error is kept


def test_an_inbox_loses_nothing_between_two_threads():
    inbox, taken = Inbox(), []

    def produce() -> None:
        for i in range(20_000):
            inbox.put(("generations", ([i], 1)))
        inbox.put(("finished", None))

    producer = threading.Thread(target=produce)
    producer.start()
    while not taken or taken[-1][0] != "finished":
        taken.extend(inbox.take_all(timeout=1))
    producer.join()
    assert [payload[0][0] for kind, payload in taken if kind == "generations"] == list(range(20_000))


def test_workers_take_requests_from_a_pool_instead_of_one_task_each(make_sampler, server):
    sampler = make_sampler(max_concurrency=4)
    backend = sampler.backend("fake")
    seen = []
    original = backend.agenerate

    async def counting(session, request):
        seen.append(len(asyncio.all_tasks()))
        return await original(session, request)

    backend.agenerate = counting
    run = sampler.sample("fake", PROMPT, n=300, max_tokens=3)
    assert run.drawn == 300 and len(seen) == 300
    # Four workers, the watcher and the main task: never a task per request.
    assert max(seen) <= 4 + 2, max(seen)


def test_a_call_returns_without_building_its_frame_until_asked(make_sampler):
    sampler = make_sampler()
    run = sampler.sample("fake", PROMPT, n=5, max_tokens=3)
    assert run._samples is None
    import copy
    import dataclasses

    assert copy.deepcopy(run).run_id == dataclasses.asdict(run)["run_id"] == run.run_id  # no connection copied
    import pickle

    assert pickle.loads(pickle.dumps(run)).texts == run.texts  # pickled with its frame
    assert list(run.samples["sample_index"]) == list(range(5))
    later = sampler.sample("fake", PROMPT, n=5, max_tokens=3)
    sampler.store.close()  # a closed connection, or another thread: the frame is read anew
    assert later.texts == run.texts
    other = make_sampler().sample("fake", PROMPT, n=5, max_tokens=3)
    result = []
    thread = threading.Thread(target=lambda: result.append(other.texts))
    thread.start()
    thread.join()
    assert result == [run.texts]


# -- 4. the fake server under load -----------------------------------------------------------------

def test_the_fake_server_takes_256_connections_at_once():
    import openai

    with FakeOpenAIServer(latency_s=0.5) as srv:
        assert srv.request_queue_size >= 256

        async def burst() -> list:
            client = openai.AsyncOpenAI(api_key="none", base_url=srv.base_url, max_retries=0, timeout=30)
            try:
                return await asyncio.gather(*(client.completions.create(model="m", prompt="p", max_tokens=2, seed=i)
                                              for i in range(256)), return_exceptions=True)
            finally:
                await client.close()

        replies = asyncio.run(burst())
    failures = [r for r in replies if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert srv.state.max_in_flight >= 200  # served side by side, not queued behind a small backlog


# -- 3. a store that stays flat --------------------------------------------------------------------

def test_the_new_migration_drops_the_duplicate_index_of_an_old_store(tmp_path, monkeypatch):
    import workbench.store.database as database
    from workbench.store import migrations

    path = tmp_path / "old.sqlite"
    monkeypatch.setattr(database, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m.__name__ < "m005"])
    with Store(path) as store:
        ids = fill(store, 3, 5)
        assert "samples_by_run" in {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
    monkeypatch.setattr(database, "MIGRATIONS", migrations.MIGRATIONS)
    with Store(path) as store:
        indexes = {row[0]: row[1] for row in store.db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('samples', 'runs')")}
        assert "samples_by_run" not in indexes
        # What replaces it: the index SQLite builds for UNIQUE (run_id, sample_index).
        assert any(sql is None and name.startswith("sqlite_autoindex_samples") for name, sql in indexes.items())
        assert indexes["runs_by_model"] == "CREATE INDEX runs_by_model ON runs(model, id)"
        assert "m005_flat_store_indexes" in store.applied_migrations()
        assert list(store.runs()["n_samples"]) == [5, 5, 5] and len(store.samples(ids[0])) == 5


def fill(store: Store, runs: int, per_run: int, start: int = 0, family: str = "model") -> list[str]:
    """Runs with samples, written through the store's insert path."""
    from workbench.store import RunRecord

    ids = []
    for k in range(start, start + runs):
        run_id = store.ensure_run(RunRecord(cache_key=f"key-{k}", model=f"{family}-{k % 3}", model_identity={},
                                            model_kind="base", model_family="f", backend="openai", endpoint=None,
                                            dtype=None, input_mode="completion", input_text=f"prompt {k}",
                                            input_messages=None, template="raw", prompt_ref=None, config={},
                                            seed=0, tags=[]))
        store.add_generations(run_id, [generation(i) for i in range(per_run)], None)
        ids.append(run_id)
    return ids


class Statements:
    """Every SQL statement a store connection runs (with its values), and SQLite's VM steps."""

    def __init__(self, store: Store) -> None:
        self.store, self.sql, self.steps = store, [], 0
        store.db.set_trace_callback(self.sql.append)
        store.db.set_progress_handler(self._step, 1)

    def _step(self) -> int:
        self.steps += 1
        return 0

    def measure(self, action) -> int:
        self.steps = 0
        self.sql.clear()
        action()
        return self.steps

    def plans(self) -> list[tuple[str, str]]:
        self.store.db.set_trace_callback(None)
        self.store.db.set_progress_handler(None, 1)
        out = []
        for sql in self.sql:
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                rows = self.store.db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                out.append((sql, " | ".join(row[3] for row in rows)))
        self.store.db.set_trace_callback(self.sql.append)
        self.store.db.set_progress_handler(self._step, 1)
        return out


def hot_queries(store: Store, run_id: str, tmp_path: Path) -> dict:
    return {
        "runs list": lambda: store.runs(limit=30),
        "runs list --model": lambda: store.runs(model="model-1", limit=30),
        "full id": lambda: store.resolve_run_id(run_id),
        "id prefix": lambda: store.resolve_run_id(run_id[:-3].lower()),
        "cache lookup": lambda: store.find_run("key-5"),
        "stored indices below n": lambda: store.sample_indices(run_id, below=100),
        "samples frame": lambda: store.samples(run_id, 100),
        "count": lambda: store.count_samples(run_id),
        "export": lambda: store.export_run(run_id, tmp_path / "run.jsonl", "jsonl"),
    }


def test_hot_queries_search_indexes_and_never_scan_samples(fresh_store, tmp_path):
    with Store(fresh_store) as store:
        ids = fill(store, 60, 20)
        statements = Statements(store)
        for name, action in hot_queries(store, ids[5], tmp_path).items():
            statements.measure(action)
            for sql, plan in statements.plans():
                assert "SCAN samples" not in plan, (name, sql, plan)
                assert " LIKE " not in sql.upper(), (name, sql)
                if "SCAN runs" in plan:  # only the listing walks runs, newest first by primary key, and stops
                    assert name.startswith("runs list") and "USING" in plan and "LIMIT" in sql, (name, sql, plan)
            if name in ("full id", "id prefix", "cache lookup"):
                plan = " ".join(p for _, p in statements.plans())
                assert "SEARCH runs" in plan, (name, plan)


def test_hot_queries_do_the_same_work_on_a_store_a_hundred_times_larger(tmp_path):
    # The same 40 runs of 10 samples, alone and behind 400 older runs of 100 samples (40,000 more
    # samples). Threshold set before measuring: within 25 % (plus 200 steps) of the small store's work.
    work = {}
    for size, older in (("small", 0), ("large", 400)):
        with Store(tmp_path / f"{size}.sqlite") as store:
            fill(store, older, 100, start=1000, family="older")
            ids = fill(store, 40, 10)
            statements = Statements(store)
            work[size] = {name: statements.measure(action)
                          for name, action in hot_queries(store, ids[5], tmp_path).items()}
    for name, small in work["small"].items():
        assert work["large"][name] <= small * 1.25 + 200, (name, small, work["large"][name])


def test_runs_list_counts_only_the_newest_runs_and_says_so(fresh_store):
    with Store(fresh_store) as store:
        ids = fill(store, 35, 3)
        frame = store.runs(limit=30)
        # Newest first by id (time-sortable to the millisecond).
        assert list(frame["id"]) == sorted(ids, reverse=True)[:30] and set(frame["n_samples"]) == {3}
        model_1 = sorted((i for k, i in enumerate(ids) if k % 3 == 1), reverse=True)
        assert list(store.runs(model="model-1", limit=2)["id"]) == model_1[:2]
        assert len(store.runs()) == 35
    result = run_cli("runs", "list", "--limit", "0")
    assert result.returncode == 2 and "--limit" in result.stderr and "Traceback" not in result.stderr


def test_an_id_prefix_is_a_range_of_the_primary_key_not_a_pattern(fresh_store):
    with Store(fresh_store) as store:
        [run_id] = fill(store, 1, 1)
        assert store.resolve_run_id(run_id[:6]) == run_id
        assert store.resolve_run_id(run_id[:6].lower()) == run_id
        for pattern in ("%", "_" * 26, run_id[:4] + "%"):  # LIKE wildcards are characters, not patterns
            with pytest.raises(Exception, match="no run"):
                store.resolve_run_id(pattern)


# -- 1 and 2 together: kill -9 in the middle of a high-rate run ---------------------------------------

def test_a_high_rate_run_killed_mid_way_resumes_to_the_uninterrupted_texts(tmp_path, fresh_store):
    import os
    import signal
    import subprocess
    import sys
    import time

    n, size, seed = 2000, 4, 9
    with FakeOpenAIServer(latency_s=0.005) as srv:
        home = tmp_path / "home"
        home.mkdir()
        write_registry(home / "models.yaml", srv.base_url, choices_per_request=size, max_concurrency=8)
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "sample", PROMPT, "--model", "fake", "--n", str(n),
             "--max-tokens", "4", "--seed", str(seed), "--quiet"],
            env={**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_STORE": str(fresh_store)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        stored = 0
        while stored < 200 and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
            if fresh_store.exists():
                with sqlite3.connect(fresh_store, timeout=30) as db:
                    try:
                        stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
                    except sqlite3.OperationalError:  # tables not created yet
                        pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with sqlite3.connect(fresh_store) as db:
            before = db.execute("SELECT COUNT(*), COUNT(DISTINCT sample_index) FROM samples").fetchone()
        assert before[0] == before[1] and 200 <= before[0] < n, before

        registry = load_registry(home / "models.yaml")
        with Sampler(store=fresh_store, registry=registry, progress=False) as sampler:
            resumed = sampler.sample("fake", PROMPT, n=n, max_tokens=4, seed=seed)
            assert resumed.drawn == n - before[0]
            assert resumed.texts == [block_text(seed, i, size, 4) for i in range(n)]
            assert sampler.store.count_samples(resumed.run_id) == n
