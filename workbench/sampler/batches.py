"""Batch APIs for large runs (OpenAI Batch API, Anthropic Message Batches).

`submit_batch` plans a run exactly as `Sampler.sample` does (same cache cell, same run row),
sends the missing samples as one provider batch job, and stores the job's id with the run.
`poll_batches` asks the provider about every unfinished job in the store, so it resumes after a
restart, and writes finished results into the store as ordinary samples (their `raw` says
`batch: true`, which the cost report prices at the batch discount).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm
from typing_extensions import Unpack

from workbench.backends.api_common import run_sync
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.sampler.core import PromptInput, SampleOptions, Sampler
from workbench.sampler.retry import Retrying, call_with_retries
from workbench.types import SampleSlot


@dataclass
class BatchJob:
    """A provider batch job and what it draws."""

    batch_id: str
    run_id: str
    model: str
    provider: str
    sample_indices: list[int]
    status: str
    finished: bool = False
    stored: int = 0  # samples written to the store when it finished


BATCH_COMMIT_SAMPLES = 1000  # a finished job's samples are committed this many per transaction


def submit_batch(sampler: Sampler, model: str, prompt: PromptInput, n: int, config: SamplingConfig | None = None,
                 **options: Unpack[SampleOptions]) -> BatchJob | None:
    """Send the run's missing samples as one batch job; None when every sample is already stored or pending."""
    plan = sampler.plan(model, prompt, n, config, **options)
    seed = plan.seed
    api = plan.backend.batch_api()
    if api is None:
        raise WorkbenchError(f"model {plan.spec.name!r} ({plan.spec.backend}) has no batch API; use `sample`")
    run_id = sampler.store.ensure_run(plan.record)
    pending = {i for job in sampler.store.batches(run_id, unfinished=True) for i in job["sample_indices"]}
    stored = sampler.store.sample_indices(run_id, below=n)
    missing = [i for i in range(n) if i not in stored and i not in pending]
    if not missing:
        return None
    slots = tuple(SampleSlot(seed, i) for i in missing)

    async def submit() -> tuple[str, str, dict[str, Any]]:
        async with plan.backend.session() as client:
            return await api.submit(client, plan.rendered, plan.config, slots)

    # Under the one retry policy: a rate limit or a dropped connection is waited out and recorded with the run.
    retrying = Retrying(plan.backend.name, record=lambda event: sampler.store.add_run_event(run_id, **event))
    batch_id, status, info = call_with_retries(lambda: run_sync(submit), retrying)
    sampler.store.add_batch(batch_id, run_id, plan.spec.backend, plan.spec.name, missing, status, info)
    sampler.store.add_run_event(run_id, "batch", f"submitted batch {batch_id} for {len(missing)} samples",
                                sample_indices=missing)
    return BatchJob(batch_id, run_id, plan.spec.name, plan.spec.backend, missing, status)


def poll_batches(sampler: Sampler, wait: bool = False, interval_s: float = 30.0, timeout_s: float | None = None,
                 run_id: str | None = None) -> list[BatchJob]:
    """Check every unfinished batch job in the store (or one run's) and store the results of finished ones.

    With `wait`, keep polling every `interval_s` seconds until all are finished (or `timeout_s`).
    """
    started = time.monotonic()
    while True:
        jobs = [_poll_one(sampler, row) for row in sampler.store.batches(run_id, unfinished=True)]
        if not wait or all(job.finished for job in jobs):
            return jobs
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            return jobs
        time.sleep(interval_s)


def _poll_one(sampler: Sampler, row: dict[str, Any]) -> BatchJob:
    run = sampler.store.run(row["run_id"])
    backend = sampler.backend(row["model"])  # the Sampler's own package: batch jobs are part of sampling
    config = SamplingConfig(**run["config"])

    async def poll() -> tuple[str, bool, list[Any], dict[str, Any]]:
        async with backend.session() as client:
            return await backend.batch_api().poll(client, row["id"], config, run["seed"])

    retrying = Retrying(backend.name, record=lambda event: sampler.store.add_run_event(row["run_id"], **event))
    status, finished, generations, info = call_with_retries(lambda: run_sync(poll), retrying)
    stored = 0
    if generations:
        environment_id = sampler.environment_id(backend)
        with tqdm(total=len(generations), desc=f"batch {row['id']}", unit="sample", disable=not sampler.progress,
                  leave=False) as bar:
            for start in range(0, len(generations), BATCH_COMMIT_SAMPLES):
                chunk = generations[start:start + BATCH_COMMIT_SAMPLES]
                stored += sampler.store.add_generations(row["run_id"], chunk, environment_id)
                bar.update(len(chunk))
    sampler.store.update_batch(row["id"], status, info, finished=finished)
    if finished:
        missing = sorted(set(row["sample_indices"]) - sampler.store.sample_indices(row["run_id"]))
        note = f"; {len(missing)} samples did not come back (submit again to retry them)" if missing else ""
        sampler.store.add_run_event(row["run_id"], "batch",
                                    f"batch {row['id']} {status}: stored {stored} samples{note}",
                                    sample_indices=missing or None)
    return BatchJob(row["id"], row["run_id"], row["model"], row["provider"], row["sample_indices"], status, finished,
                    stored)
