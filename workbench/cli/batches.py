"""`workbench batches list|poll`: API batch jobs (OpenAI Batch API, Anthropic Message Batches)."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_run_flags, make_sampler, positive_float


def register(sub: argparse._SubParsersAction) -> None:
    """Add `batches list` and `batches poll`."""
    batches = sub.add_parser("batches", help="API batch jobs (OpenAI Batch API, Anthropic Message Batches)"
                             ).add_subparsers(dest="action", required=True)
    p = batches.add_parser("list", help="stored batch jobs and their last known status")
    p.add_argument("--unfinished", action="store_true", help="only jobs not finished yet")
    p.set_defaults(func=cmd_batches_list)
    p = batches.add_parser("poll", help="ask the providers about unfinished jobs; store finished results")
    p.add_argument("--wait", action="store_true", help="keep polling until every job has finished")
    p.add_argument("--interval", type=positive_float, default=30.0, help="seconds between polls with --wait")
    p.add_argument("--timeout", type=positive_float, help="give up waiting after this many seconds")
    add_run_flags(p)
    p.set_defaults(func=cmd_batches_poll)


def cmd_batches_list(args: argparse.Namespace) -> None:
    """One line per stored batch job with its last known status."""
    from workbench.store import Store

    with Store() as store:
        jobs = store.batches(unfinished=args.unfinished)
    if not jobs:
        print("no batch jobs")
    for job in jobs:
        print(f"{job['id']}  {job['provider']:<9} {job['model']:<24} run {job['run_id']}  "
              f"{len(job['sample_indices'])} samples  {job['status']}"
              + (f"  finished {job['finished_at']}" if job["finished_at"] else ""))


def cmd_batches_poll(args: argparse.Namespace) -> None:
    """Ask the providers about unfinished jobs (--wait: until all finish) and store finished results."""
    from workbench.sampler.batches import poll_batches

    sampler = make_sampler(args)
    jobs = poll_batches(sampler, wait=args.wait, interval_s=args.interval, timeout_s=args.timeout)
    if not jobs:
        print("no unfinished batch jobs")
    for job in jobs:
        state = f"{job.status}: stored {job.stored} samples" if job.finished else f"{job.status} (not finished)"
        print(f"batch {job.batch_id} ({job.model}, run {job.run_id}): {state}")
