"""Exact answer distributions: one batched pass that reuses the prompt's KV cache versus scoring
each candidate with its own full forward pass, side by side in one run.

Workload: the 100 candidates 1..100 of mode-collapse/random-number-completion on the embedded
base model (gemma-3-270m), each with its terminator mass. Each method runs in its own process
so peak memory is per method. Both run in the backend's scoring dtype (float32, whatever dtype
sampling runs in), and the bench prints the largest difference in probability between them: the
KV-reuse path must agree with a full forward pass to 1e-4 (bf16 scoring differed by 5.5e-3).

Run: `.venv/bin/python bench/bench_exact.py`. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "gemma-3-270m"
PROMPT = "mode-collapse/random-number-completion"
TOLERANCE = 1e-4  # in probability: what an exact distribution may differ from a full forward pass


def prefix_reuse(sampler, prompt) -> tuple[list[float], float]:
    """The workbench's exact distribution (prompt run once, its KV cache shared by all candidates)."""
    from workbench.analysis.distributions import exact_distribution

    start = time.perf_counter()
    dist = exact_distribution(sampler, MODEL, prompt)
    elapsed = time.perf_counter() - start
    probs = dist.probabilities()
    return [probs[c] for c in prompt.spec.answer_space.values()], elapsed


def full_passes(sampler, prompt) -> tuple[list[float], float]:
    """Baseline: one full forward pass over prompt + candidate for every candidate."""
    import torch

    model, end_mask = baseline_model(sampler, prompt)
    space = prompt.spec.answer_space
    rendered = sampler.render(prompt, MODEL)
    prompt_ids = sampler.encode(MODEL, rendered.text)
    start = time.perf_counter()
    probs = []
    with torch.inference_mode():
        for candidate in space.values():
            text = space.scored_text(candidate, after=rendered.text)
            ids = continuation_ids(sampler, rendered.text, prompt_ids, text)
            logits = model(torch.tensor([prompt_ids + ids])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
            total = sum(float(logprobs[p, t]) for p, t in zip(positions, ids, strict=True))
            total += float(torch.logsumexp(logprobs[len(prompt_ids) + len(ids) - 1][end_mask], 0))
            probs.append(float(torch.exp(torch.tensor(total))))
    return probs, time.perf_counter() - start


def baseline_model(sampler, prompt):
    """The model exact scoring runs on (float32, loaded once per process) and the answer-end token mask."""
    from workbench.backends import hf

    spec = sampler.model(MODEL)
    model = hf.load_model(spec, hf.HFBackend.scoring_dtype, hf.default_device())
    texts = hf.vocabulary_texts(spec, model.get_output_embeddings().weight.shape[0])
    terminators = prompt.spec.answer_space.terminators
    return model, hf.end_token_mask(texts, terminators, sampler.stop_token_ids(MODEL))


def continuation_ids(sampler, prompt_text: str, prompt_ids: list[int], continuation: str) -> list[int]:
    """A candidate's tokens as the model sees them after the prompt (tokenised together, as the backend does)."""
    together = sampler.encode(MODEL, prompt_text + continuation)
    if together[: len(prompt_ids)] == prompt_ids and len(together) > len(prompt_ids):
        return together[len(prompt_ids):]
    from workbench.backends import hf

    return hf.load_tokenizer(sampler.model(MODEL))(continuation, add_special_tokens=False).input_ids


def worker(method: str) -> dict:
    from workbench.sampler import Sampler

    with tempfile.TemporaryDirectory() as tmp, Sampler(store=Path(tmp) / "bench.sqlite", progress=False) as sampler:
        prompt = sampler.library.get(PROMPT)
        rendered = sampler.render(prompt, MODEL)
        # Load the model and build the answer-end mask once per model; neither is timed.
        sampler.score_candidates(MODEL, rendered, ["1"], [1.0], prompt.spec.answer_space.terminators)
        baseline_model(sampler, prompt)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        probs, elapsed = (prefix_reuse if method == "prefix" else full_passes)(sampler, prompt)
        backend = sampler.backend(MODEL)
        return {"method": method, "seconds": elapsed, "probs": probs, "rss_before_gib": before,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "prompt_tokens": sampler.count_tokens(MODEL, rendered),
                "sampling_dtype": backend.resolved_dtype(), "scoring_dtype": backend.scoring_dtype}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    results = {}
    for method in ("prefix", "full"):
        out = subprocess.run([sys.executable, __file__, "--worker", method], capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    prefix, full = results["prefix"], results["full"]
    worst = max(abs(a - b) for a, b in zip(prefix["probs"], full["probs"], strict=True))
    print(f"{MODEL}, {PROMPT}: 100 candidates, prompt of {prefix['prompt_tokens']} tokens; scoring in "
          f"{prefix['scoring_dtype']} (sampling dtype here: {prefix['sampling_dtype']})")
    print(f"{'method':<36}{'seconds':>9}{'peak RSS GiB':>14}{'model loaded GiB':>18}")
    print(f"{'one batched pass, prompt KV reused':<36}{prefix['seconds']:>9.2f}{prefix['peak_rss_gib']:>14.2f}"
          f"{prefix['rss_before_gib']:>18.2f}")
    print(f"{'a full forward pass per candidate':<36}{full['seconds']:>9.2f}{full['peak_rss_gib']:>14.2f}"
          f"{full['rss_before_gib']:>18.2f}")
    print(f"speed-up: {full['seconds'] / prefix['seconds']:.1f}x")
    verdict = "within" if worst <= TOLERANCE else "OVER"
    print(f"largest |p(KV reuse) - p(full forward)| over the {len(prefix['probs'])} candidates: {worst:.2e} "
          f"({verdict} the {TOLERANCE:.0e} an exact distribution allows)")


if __name__ == "__main__":
    main()
