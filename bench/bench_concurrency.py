"""The Sampler's concurrency for API backends: 200 requests to a local OpenAI-compatible server
with a fixed 100 ms latency, at concurrency 1 versus 8. Prints the ratio (expect close to 8x).

Run: .venv/bin/python bench/bench_concurrency.py  (or `make bench`)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.testing.openai_server import FakeOpenAIServer

REQUESTS = 200
LATENCY_S = 0.100


def timed_run(concurrency: int, workdir: Path) -> tuple[float, int]:
    """Seconds to draw REQUESTS samples (one request each) at this concurrency, and the peak in flight."""
    with FakeOpenAIServer(latency_s=LATENCY_S) as server:
        registry_file = workdir / f"models-{concurrency}.yaml"
        registry_file.write_text(json.dumps({"models": {"bench": {
            "backend": "openai", "kind": "base", "family": "bench", "api_model": "bench", "base_url": server.base_url,
            "api_dialect": "vllm", "max_concurrency": concurrency}}}))
        sampler = Sampler(store=workdir / f"store-{concurrency}.sqlite", registry=load_registry(registry_file),
                          progress=False)
        started = time.perf_counter()
        run = sampler.sample("bench", "A benchmark prompt", n=REQUESTS, max_tokens=4)
        elapsed = time.perf_counter() - started
        assert len(run.samples) == REQUESTS and len(server.state.requests) == REQUESTS
        sampler.store.close()
        return elapsed, server.state.max_in_flight


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        serial, serial_peak = timed_run(1, workdir)
        concurrent, concurrent_peak = timed_run(8, workdir)
    print(f"{REQUESTS} requests, {LATENCY_S * 1000:.0f} ms server latency, every sample committed to the store")
    print(f"  concurrency 1: {serial:6.2f} s  ({REQUESTS / serial:6.1f} req/s, peak in flight {serial_peak})")
    print(f"  concurrency 8: {concurrent:6.2f} s  ({REQUESTS / concurrent:6.1f} req/s, "
          f"peak in flight {concurrent_peak})")
    print(f"  speed-up: {serial / concurrent:.2f}x (ideal 8x)")


if __name__ == "__main__":
    main()
