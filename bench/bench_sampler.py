"""Sampler throughput against a one-at-a-time `generate` loop, measured side by side in one run.

For each embedded model: n=64 continuations of 64 tokens through the Sampler (batched, KV
cache of the prompt shared, inverse-CDF sampling) versus transformers' `generate` one sequence
at a time; tokens per second, achieved GFLOP/s against this machine's measured bf16 matmul
peak, peak memory; and the time to load the prepared bf16 checkpoint versus the GGUF.

Run: `make bench` (or `.venv/bin/python bench/bench_sampler.py [--loop-samples 8]`).
Each model is measured in its own process so peak memory is per model. Not a test: numbers
depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# --- knobs ------------------------------------------------------------------------------
N_SAMPLES = 64          # continuations per model through the Sampler
MAX_TOKENS = 64         # tokens per continuation
LOOP_SAMPLES = 8        # one-at-a-time generate calls (tokens/s extrapolates; keeps the run short)
PROMPT = "Once upon a time, in a small village by the sea,"
MODELS = ("gemma-3-270m", "smollm2-135m-instruct")


def matmul_peak_gflops(dtype_name: str, size: int = 2048, repeats: int = 8) -> float:
    """Best-of GFLOP/s of a square matmul in the given dtype (the machine's practical peak)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def matmul_params(model) -> int:
    """Parameters that take part in a matmul per token: every Linear, the (tied) output layer included."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def worker(model_name: str, loop_samples: int) -> dict:
    """Measure one model (runs in its own process)."""
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.backends import hf
    from workbench.registry import load_registry
    from workbench.sampler import Sampler

    spec = load_registry().get(model_name)
    hf.prepare_model(spec)
    result: dict = {"model": model_name, "threads": torch.get_num_threads()}

    # Load times: prepared bf16 safetensors vs dequantising the GGUF.
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(str(hf.prepared_dir(spec)), dtype=torch.bfloat16)
    result["load_prepared_s"] = time.perf_counter() - start
    gguf = hf.gguf_path(spec)
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    result["load_gguf_s"] = time.perf_counter() - start

    # The baseline runs on the very model object the Sampler's backend uses (loaded once per process).
    dtype = hf.resolve_dtype(spec)
    model, tokenizer = hf.load_model(spec, dtype, hf.default_device()), hf.load_tokenizer(spec)
    with tempfile.TemporaryDirectory() as tmp, Sampler(store=Path(tmp) / "bench.sqlite", progress=False) as sampler:
        warm = sampler.sample(model_name, PROMPT, n=2, max_tokens=4, seed=999)  # load + warm-up
        assert warm.n == 2
        start = time.perf_counter()
        run = sampler.sample(model_name, PROMPT, n=N_SAMPLES, max_tokens=MAX_TOKENS, seed=1)
        sampler_s = time.perf_counter() - start
        sampler_tokens = int(run.samples["completion_tokens"].sum())
        prompt_ids = torch.tensor([sampler.encode(model_name, PROMPT)])

    loop_tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(loop_samples):
            torch.manual_seed(i)
            out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=True, top_k=0,
                                 max_new_tokens=MAX_TOKENS, pad_token_id=tokenizer.pad_token_id or 0)
            loop_tokens += out.shape[1] - prompt_ids.shape[1]
    loop_s = time.perf_counter() - start

    flops_per_token = 2 * matmul_params(model)
    result.update(
        dtype=dtype,
        sampler_tokens=sampler_tokens,
        sampler_s=sampler_s,
        sampler_tok_s=sampler_tokens / sampler_s,
        loop_tokens=loop_tokens,
        loop_s=loop_s,
        loop_tok_s=loop_tokens / loop_s,
        gflop_per_token=flops_per_token / 1e9,
        sampler_gflops=sampler_tokens * flops_per_token / sampler_s / 1e9,
        loop_gflops=loop_tokens * flops_per_token / loop_s / 1e9,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--loop-samples", type=int, default=LOOP_SAMPLES)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.loop_samples)))
        return

    peak_bf16, peak_fp32 = matmul_peak_gflops("bfloat16"), matmul_peak_gflops("float32")
    print(f"machine: {os.cpu_count()} cores; matmul peak bf16 {peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s")
    print(f"workload: n={N_SAMPLES} continuations x {MAX_TOKENS} tokens through the Sampler; "
          f"{args.loop_samples} one-at-a-time generate calls for the baseline\n")
    results = []
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, __file__, "--worker", name, "--loop-samples", str(args.loop_samples)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    header = ("model", "dtype", "sampler tok/s", "loop tok/s", "speed-up", "sampler GFLOP/s", "% bf16 peak",
              "peak RSS GiB", "load prepared s", "load GGUF s", "load speed-up")
    rows = [
        (
            r["model"], r["dtype"], f"{r['sampler_tok_s']:.0f}", f"{r['loop_tok_s']:.1f}",
            f"{r['sampler_tok_s'] / r['loop_tok_s']:.1f}x", f"{r['sampler_gflops']:.1f}",
            f"{100 * r['sampler_gflops'] / peak_bf16:.1f}%", f"{r['peak_rss_gib']:.2f}",
            f"{r['load_prepared_s']:.1f}", f"{r['load_gguf_s']:.1f}", f"{r['load_gguf_s'] / r['load_prepared_s']:.0f}x",
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
    print("\nspeed-up = Sampler tokens/s over one-at-a-time generate tokens/s, measured in the same process.")
    print("GFLOP/s counts 2 x (parameters in matmuls) per generated token; attention over the context is left out.")


if __name__ == "__main__":
    main()
