"""Samples per second through the workbench against the raw `AsyncOpenAI` client, side by side.

A zero-latency fake OpenAI-compatible server runs in its own process (so it never competes with
the client for the GIL). At each concurrency, N samples are drawn twice, alternating, several
rounds: by a plain asyncio loop of the official SDK that does nothing with the replies, and by
`Sampler.sample` (every sample parsed, checked and committed to a fresh store before it counts).
Both send the same request body (completions, logprobs on, one choice per request). Then the
high-rate mode: blocks of 16 choices per request.

The raw loop uses `completions.create`, which builds the SDK's pydantic reply objects; the
workbench posts with `cast_to=object` and checks the JSON itself, so it can come out slightly
above 1.0 when the client's CPU is the limit (concurrency 1).

Prints `workbench/raw at concurrency C: R` per concurrency (the issue's target: R >= 0.9) and
`blocks of 16: S samples/s` (target: >= 3000), then the peak memory one call of 5k and 20k
samples adds (in a fresh process each). Run: `make bench` or
`.venv/bin/python bench/bench_throughput.py [--samples 4000] [--rounds 3]`. Takes 2-3 minutes.
Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.registry import load_registry
from workbench.sampler import Sampler

PROMPT = "Pick a random number between 1 and 100. My number is"
MAX_TOKENS = 4
CONCURRENCIES = (1, 8, 64)
BLOCK = 16
BLOCK_CONCURRENCY = 8


def start_server() -> tuple[subprocess.Popen, str]:
    """The fake server in a child process; returns it and its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "workbench.testing.openai_server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"the fake server did not start (it printed {url!r})")
    return proc, url


async def raw_client(url: str, samples: int, concurrency: int, choices: int, seed: int) -> float:
    """Seconds for a plain loop of `AsyncOpenAI.completions.create` to get `samples` choices."""
    import openai

    client = openai.AsyncOpenAI(api_key="no-key-needed", base_url=url, max_retries=0)
    requests = iter(range(0, samples, choices))

    async def worker() -> None:
        for start in requests:
            await client.completions.create(model="bench", prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=1.0,
                                            top_p=1.0, n=choices, seed=seed + start, logprobs=1)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def workbench(url: str, workdir: Path, samples: int, concurrency: int, choices: int, seed: int) -> float:
    """Seconds for `Sampler.sample` to draw and commit `samples` samples into a fresh store."""
    registry_file = workdir / f"models-{concurrency}-{choices}-{seed}.yaml"
    registry_file.write_text(json.dumps({"models": {"bench": {
        "backend": "openai", "kind": "base", "family": "bench", "api_model": "bench", "base_url": url,
        "api_dialect": "openai", "max_concurrency": concurrency, "choices_per_request": choices}}}))
    with Sampler(store=workdir / f"store-{concurrency}-{choices}-{seed}.sqlite",
                 registry=load_registry(registry_file), progress=False) as sampler:
        sampler.backend("bench")  # the SDK import is not part of the measurement
        started = time.perf_counter()
        run = sampler.sample("bench", PROMPT, n=samples, max_tokens=MAX_TOKENS, temperature=1.0, seed=seed)
        elapsed = time.perf_counter() - started
        stored = sampler.store.count_samples(run.run_id)
        if run.drawn != samples or stored < samples:
            raise SystemExit(f"the workbench stored {stored} of {samples} samples")
    return elapsed


class PeakResidentMemory:
    """The highest resident memory (from /proc/self/statm, polled every 5 ms) since `reset`, in MB."""

    def __init__(self) -> None:
        import os
        import threading

        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * self._page_mb

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def reset(self) -> float:
        self.peak = self.now()
        return self.peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def memory_child(url: str, samples: int) -> None:
    """In a child process: how far one `sample` call of `samples` raises resident memory, then its frame."""
    with tempfile.TemporaryDirectory() as tmp:
        workbench(url, Path(tmp), 200, 8, 1, 1)  # warm-up: imports, first connections, store created
        registry_file = Path(tmp) / "memory.yaml"
        registry_file.write_text(json.dumps({"models": {"bench": {
            "backend": "openai", "kind": "base", "family": "bench", "api_model": "bench", "base_url": url,
            "api_dialect": "openai", "max_concurrency": 8}}}))
        meter = PeakResidentMemory()
        with Sampler(store=Path(tmp) / "memory.sqlite", registry=load_registry(registry_file),
                     progress=False) as sampler:
            before = meter.reset()
            run = sampler.sample("bench", PROMPT, n=samples, max_tokens=MAX_TOKENS, seed=5)
            drawn = meter.peak
            len(run.samples)
            framed = meter.peak
        meter.close()
    print(json.dumps({"call_mb": drawn - before, "frame_mb": framed - before}))


def memory(url: str, samples: int) -> dict[str, float]:
    """Peak resident memory growth (MB) of one call, in a fresh process so earlier rounds do not count."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(samples), "--url", url],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def side_by_side(url: str, workdir: Path, samples: int, concurrency: int, choices: int, rounds: int
                 ) -> tuple[float, float]:
    """Median samples/s of the raw client and of the workbench, alternating round by round."""
    raw, ours = [], []
    for round_ in range(rounds):
        seed = 1000 * round_ + concurrency + 7 * choices
        raw.append(samples / asyncio.run(raw_client(url, samples, concurrency, choices, seed)))
        ours.append(samples / workbench(url, workdir, samples, concurrency, choices, seed))
    return statistics.median(raw), statistics.median(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000, help="samples per measurement (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are printed (default 3)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.url, args.memory_child)
        return
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            workbench(url, workdir, 200, 8, 1, 999_999)  # warm-up: imports, first connections
            print(f"{args.samples} samples per measurement, zero-latency fake server in its own process, "
                  f"median of {args.rounds} alternating rounds")
            print(f"{'':22}{'raw client':>12}{'workbench':>12}{'ratio':>8}   (samples/s)")
            rows = []
            for concurrency in CONCURRENCIES:
                raw, ours = side_by_side(url, workdir, args.samples, concurrency, 1, args.rounds)
                rows.append((concurrency, ours / raw))
                print(f"{'concurrency ' + str(concurrency):22}{raw:12.0f}{ours:12.0f}{ours / raw:8.2f}", flush=True)
            raw, ours = side_by_side(url, workdir, args.samples * 4, BLOCK_CONCURRENCY, BLOCK, args.rounds)
            print(f"{f'blocks of {BLOCK}, conc. {BLOCK_CONCURRENCY}':22}{raw:12.0f}{ours:12.0f}{ours / raw:8.2f}")
            print()
            for concurrency, ratio in rows:
                print(f"workbench/raw at concurrency {concurrency}: {ratio:.2f}")
            print(f"blocks of {BLOCK}: {ours:.0f} samples/s (raw client {raw:.0f})")
            for samples in (5000, 20000):
                grown = memory(url, samples)
                print(f"memory of one call of {samples} samples: +{grown['call_mb']:.0f} MB resident at its peak "
                      f"(+{grown['frame_mb']:.0f} MB in all once its frame is built)")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
