"""Runs stopped by kill -9 or Ctrl-C resume without losing or duplicating samples; two processes share a store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_cli
from workbench.sampler import Sampler

MODEL = "smollm2-135m-instruct"
PROMPT = "The three most important inventions in history are"


def stored_counts(path: Path) -> list[tuple[str, int, int]]:
    """(run id, samples, distinct indices) per run, read with a plain SQLite connection."""
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return db.execute(
                "SELECT run_id, COUNT(*), COUNT(DISTINCT sample_index) FROM samples GROUP BY run_id"
            ).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def start_sampling(store: Path, n: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "sample", PROMPT, "--model", MODEL, "--n", str(n),
         "--max-tokens", "24", "--batch-size", "2", "--quiet", *extra],
        # One thread each: with two threads per process, processes sharing two cores wait on each other.
        env={**os.environ, "WORKBENCH_STORE": str(store), "WORKBENCH_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell's background job starts children with SIGINT ignored; a user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_samples(store: Path, at_least: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        counts = stored_counts(store)
        if counts and counts[0][1] >= at_least:
            return counts[0][1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the sampling process stored too few samples in time")


def test_a_run_killed_mid_way_resumes_with_every_sample_exactly_once(embedded_models, fresh_store):
    n = 40
    proc = start_sampling(fresh_store, n)
    wait_for_samples(fresh_store, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    [(run_id, before, distinct)] = stored_counts(fresh_store)
    assert before == distinct and 4 <= before < n

    resumed = Sampler(store=fresh_store, progress=False, batch_size=8).sample(MODEL, PROMPT, n=n, max_tokens=24)
    assert resumed.run_id == run_id
    assert resumed.drawn == n - before  # only the missing samples were drawn
    assert stored_counts(fresh_store) == [(run_id, n, n)]
    assert list(resumed.samples["sample_index"]) == list(range(n))

    # The samples drawn before the kill are the ones an uninterrupted run would have produced.
    clean = Sampler(store=fresh_store.with_name("clean.sqlite"), progress=False).sample(MODEL, PROMPT, n=n,
                                                                                         max_tokens=24)
    assert clean.texts == resumed.texts


def test_ctrl_c_keeps_finished_samples_and_says_how_to_continue(embedded_models, fresh_store):
    proc = start_sampling(fresh_store, 40)
    wait_for_samples(fresh_store, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "every finished sample is stored" in err and "Traceback" not in err
    [(_, count, distinct)] = stored_counts(fresh_store)
    assert count == distinct >= 2


def test_two_processes_writing_one_store_lose_nothing(embedded_models, fresh_store):
    # Both ask for the same run (so they race on the same indices) and one more run each.
    procs = [start_sampling(fresh_store, 12) for _ in range(2)]
    procs.append(start_sampling(fresh_store, 6, ("--seed", "1")))
    procs.append(start_sampling(fresh_store, 6, ("--seed", "2")))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    counts = sorted(c[1:] for c in stored_counts(fresh_store))
    assert counts == [(6, 6), (6, 6), (12, 12)]
    result = run_cli("runs", "list", env={"WORKBENCH_STORE": str(fresh_store)})
    assert result.returncode == 0 and result.stdout.count(MODEL) == 3
