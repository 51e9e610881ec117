"""The store's everyday operations at 10k and at 1M stored samples, side by side in one run.

A temporary store is filled through the Sampler's own insert path (`Sampler.plan` makes each run's
row and cache key, `Store.add_generations` commits its samples, as a real run does): runs of 100
samples each, and at 1M one run of 100,000 samples. At each size the same operations are timed
(median of repeated calls, warm page cache): `runs list` (the newest 30 runs with their counts),
a run looked up by id prefix, a fully cached `sample(n=100)` (the call alone, whose frame is built
only when asked for, and the call with its frame), the run's cost, and its export; at 1M also a
cached `sample(n=100)` of the 100k-sample run. Prints `runs list at 10k: X ms, at 1M: Y ms` lines
and the ratios.

Run: `make bench` or `.venv/bin/python bench/bench_store.py [--large 1000000]`. About 2-3 minutes.
Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.types import Generation

PER_RUN = 100
BIG_RUN = 100_000
SMALL = 10_000


def generation(index: int) -> Generation:
    """A sample shaped like a short completion from an OpenAI-compatible server (tokens, logprobs, raw)."""
    tokens = [" forty", "-", "two", "."]
    return Generation(index=index, text="".join(tokens), token_ids=None, tokens=tokens,
                      token_logprobs=[-1.2, -0.3, -0.05, -2.0],
                      finish_reason="stop", prompt_tokens=14, completion_tokens=4, latency_s=0.01,
                      raw={"id": "cmpl-bench", "model": "bench", "choices_in_request": 1, "asked_choices": 1,
                           "finish_reason": "stop", "usage": {"prompt_tokens": 14, "completion_tokens": 4}})


def add_run(sampler: Sampler, k: int | str, samples: int, environment: str) -> str:
    """Run k ("prompt k", seed 0) with `samples` samples, through the Sampler's plan and the store's insert."""
    plan = sampler.plan("bench", f"Pick a random number, attempt {k}. My number is", n=samples, max_tokens=4)
    run_id = sampler.store.ensure_run(plan.record)
    for start in range(0, samples, 1000):
        sampler.store.add_generations(run_id, [generation(i) for i in range(start, min(samples, start + 1000))],
                                      environment)
    return run_id


def timed(action: Callable[[], object], repeats: int = 15) -> float:
    """Median milliseconds of `action`."""
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(sampler: Sampler, run_id: str, k: int, workdir: Path, big: str | None) -> dict[str, float]:
    """The timed operations on run k (and on the big run, when there is one)."""
    store = sampler.store
    prompt = f"Pick a random number, attempt {k}. My number is"
    found: dict[str, float] = {
        "runs list": timed(lambda: store.runs(limit=30)),
        "run by id prefix": timed(lambda: store.run(run_id[:10])),
        "cached sample(n=100)": timed(lambda: sampler.sample("bench", prompt, n=100, max_tokens=4)),
        "cached sample(n=100) + frame": timed(lambda: sampler.sample("bench", prompt, n=100, max_tokens=4).samples),
        "run cost": timed(lambda: sampler.run_usage(run_id)),
        "export (100 samples, jsonl)": timed(lambda: store.export_run(run_id, workdir / "run.jsonl", "jsonl"), 5),
    }
    if big is not None:
        found["cached sample(n=100) of a 100k run"] = timed(
            lambda: sampler.sample("bench", "Pick a random number, attempt big. My number is", n=100,
                                   max_tokens=4).samples, 5)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="samples in the large store (default 1M)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        registry_file = workdir / "models.yaml"
        registry_file.write_text(json.dumps({"models": {"bench": {
            "backend": "openai", "kind": "base", "family": "bench", "api_model": "bench",
            "base_url": "http://127.0.0.1:9/v1", "api_dialect": "vllm"}}}))
        with Sampler(store=workdir / "store.sqlite", registry=load_registry(registry_file), progress=False) as sampler:
            environment = sampler.environment_id(sampler.backend("bench"))
            started = time.perf_counter()
            ids = [add_run(sampler, k, PER_RUN, environment) for k in range(SMALL // PER_RUN)]
            fill_small = time.perf_counter() - started
            probe = len(ids) // 2
            small = measure(sampler, ids[probe], probe, workdir, None)
            started = time.perf_counter()
            big = add_run(sampler, "big", BIG_RUN, environment)
            remaining = (args.large - SMALL - BIG_RUN) // PER_RUN
            for k in range(len(ids), len(ids) + remaining):
                add_run(sampler, k, PER_RUN, environment)
            fill_large = time.perf_counter() - started
            total = sampler.store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            runs = sampler.store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            large = measure(sampler, ids[probe], probe, workdir, big)
            size_mb = sum(p.stat().st_size for p in workdir.glob("store.sqlite*")) / 1e6
    label = f"{total / 1e6:g}M" if total >= 1e6 else f"{total // 1000}k"
    print(f"store filled through Sampler.plan + Store.add_generations: {SMALL:,} samples in {fill_small:.1f} s, "
          f"then {total:,} samples in {runs:,} runs ({size_mb:.0f} MB) after {fill_large:.1f} s more")
    print(f"{'operation (median ms, warm cache)':38}{'10k':>10}{label:>10}{'ratio':>8}")
    for name, at_small in small.items():
        print(f"{name:38}{at_small:10.2f}{large[name]:10.2f}{large[name] / at_small:8.2f}")
    for name, value in large.items():
        if name not in small:
            print(f"{name:38}{'':10}{value:10.2f}")
    print()
    for name in ("runs list", "run by id prefix", "cached sample(n=100)", "cached sample(n=100) + frame"):
        print(f"{name} at 10k: {small[name]:.2f} ms, at {label}: {large[name]:.2f} ms")

if __name__ == "__main__":
    main()
