"""What the activation lens costs: sampling with the workbench's hooks off, on and steering, side by side.

Three ways to draw the same continuations of the embedded base model (gemma-3-270m), interleaved in one
run so the machine's load hits all of them alike:
- plain: the forward pass as before the lens (no model lock, no steering check), patched in for the bench;
- hooks: the workbench's path with no steering active (the lock and the per-pass steering check);
- steered: the same model steered after one block (add 0.02 x the median residual norm of " wedding").
Targets (issue #16): hooks / plain <= 1.05, steered / plain <= 1.15. Also prints capture throughput:
capture runs as right-padded batched forward passes (16 texts per pass by default).

Run: `.venv/bin/python bench/bench_steering.py`. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

MODEL = "gemma-3-270m"
PROMPT = "Once upon a time,"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="continuations per draw")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from workbench.backends.base import GenerationRequest
    from workbench.backends.hf import lens as hf_lens
    from workbench.config import make_config
    from workbench.direction_files import save_direction
    from workbench.lens import token_direction
    from workbench.sampler import Sampler
    from workbench.types import RenderedInput, SampleSlot

    with tempfile.TemporaryDirectory() as tmp, Sampler(Path(tmp) / "bench.sqlite", progress=False) as sampler:
        save_direction(token_direction(sampler, MODEL, " wedding", "bench-wedding"), Path(tmp) / "d", overwrite=True)
        from workbench import direction_files

        direction_files.search_dirs = lambda: [Path(tmp) / "d"]  # the bench's direction, not the user's
        steered = f"{MODEL}@bench-wedding@L1@add0.02"
        config = make_config(max_tokens=args.max_tokens, temperature=1.0)
        rendered = RenderedInput(mode="completion", text=PROMPT)

        def draw(model: str, seed: int) -> float:
            backend = sampler.backend(model)
            request = GenerationRequest(rendered, config, tuple(SampleSlot(seed, i) for i in range(args.n)))
            start = time.perf_counter()
            tokens = sum(len(g.token_ids) for g in backend.generate(request))
            return (time.perf_counter() - start) / tokens

        original = hf_lens.ActivationMethods._pass

        def plain(self, model, cache, first_position, response_from, **inputs):
            return hf_lens.forward_pass(model, cache, **inputs)

        draw(MODEL, 999), draw(steered, 999)  # load and warm up both
        times: dict[str, list[float]] = {"plain": [], "hooks": [], "steered": []}
        for repeat in range(args.repeats):
            hf_lens.ActivationMethods._pass = plain
            times["plain"].append(draw(MODEL, repeat))
            hf_lens.ActivationMethods._pass = original
            times["hooks"].append(draw(MODEL, repeat))
            times["steered"].append(draw(steered, repeat))
        median = {k: statistics.median(v) for k, v in times.items()}
        print(f"sampling {args.n} x {args.max_tokens} tokens of {MODEL}, median of {args.repeats} interleaved repeats "
              f"(s per generated token):")
        for key, value in median.items():
            print(f"  {key:8s} {value * 1000:7.2f} ms/token")
        print(f"hooks / plain   = {median['hooks'] / median['plain']:.3f}  (target <= 1.05)")
        print(f"steered / plain = {median['steered'] / median['plain']:.3f}  (target <= 1.15)")

        texts = [f"{PROMPT} there was a village number {i} by the sea, and every evening" for i in range(64)]
        for batch in (1, 16):
            start = time.perf_counter()
            sampler.capture(MODEL, texts, [1, 6, 12], positions="last", batch_size=batch)
            print(f"capture of 64 texts at 3 layers, batch {batch:2d}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
