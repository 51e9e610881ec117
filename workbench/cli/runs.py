"""`workbench runs list|show|export|import`: the stored runs."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from workbench.cli.common import one_line


def register(sub: argparse._SubParsersAction) -> None:
    """Add `runs list`, `runs show`, `runs export` and `runs import`."""
    runs = sub.add_parser("runs", help="stored runs").add_subparsers(dest="action", required=True)
    p = runs.add_parser("list", help="runs, newest first")
    p.add_argument("--model", help="only this model's runs")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_runs_list)
    p = runs.add_parser("show", help="one run: model, input, config, versions, samples")
    p.add_argument("run_id", help="a run id or a unique prefix")
    p.add_argument("--samples", type=int, default=10, help="how many samples to print")
    p.set_defaults(func=cmd_runs_show)
    p = runs.add_parser("export", help="write a run bundle (Parquet, CSV or JSONL) to share")
    p.add_argument("run_id")
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"], default="parquet")
    p.add_argument("--out", help="output file (default $WORKBENCH_HOME/exports/runs/<id>.<format>)")
    p.set_defaults(func=cmd_runs_export)
    p = runs.add_parser("import", help="load an exported run bundle into this store")
    p.add_argument("file")
    p.set_defaults(func=cmd_runs_import)


def cmd_runs_list(args: argparse.Namespace) -> None:
    """The newest runs, one line each, with their input shortened."""
    from workbench.store import Store

    with Store() as store:
        frame = store.runs(model=args.model).head(args.limit)
    if frame.empty:
        print(f"no runs yet in {store.path}")
        return
    frame["input"] = [
        ref if isinstance(ref, str) and ref else one_line(text if text is not None else str(messages), 50)
        for ref, text, messages in zip(frame["prompt_ref"], frame["input_text"], frame["input_messages"],
                                       strict=True)
    ]
    print(frame[["id", "created_at", "model", "model_kind", "input_mode", "n_samples", "seed", "input"]]
          .to_string(index=False))


def cmd_runs_show(args: argparse.Namespace) -> None:
    """One run: model and engine, input, config, environments, usage, events, batch jobs and samples."""
    from workbench.sampler import Sampler
    from workbench.store import Store

    with Store() as store:
        run = store.run(args.run_id)
        samples = store.samples(run["id"])
        environments = store.environments(samples["environment_id"])
        events = store.run_events(run["id"])
        jobs = store.batches(run["id"])
        usage = Sampler(store=store, progress=False).run_usage(run["id"])
    print(f"run {run['id']} created {run['created_at']}")
    print(f"model {run['model']} ({run['model_kind']}, {run['model_family']} family), backend {run['backend']}, "
          f"dtype {run['dtype']}, endpoint {run['endpoint'] or '-'}")
    print(f"identity {json.dumps(run['model_identity'], sort_keys=True)}")
    source = f" from {run['prompt_ref']}" if run["prompt_ref"] else ""
    print(f"input [{run['input_mode']}, {run['template']}]{source}:")
    text = run["input_text"] if run["input_text"] is not None else json.dumps(run["input_messages"])
    print(textwrap.indent(text, "    "))
    print(f"config {json.dumps(run['config'], sort_keys=True)}; seed {run['seed']}")
    print(f"{len(samples)} samples; finish reasons {samples['finish_reason'].value_counts().to_dict()}; "
          f"tokens {int(samples['completion_tokens'].fillna(0).sum())}")
    for env in environments.values():
        print(f"environment {json.dumps(env, sort_keys=True)}")
    print(f"usage: {usage.describe()}")
    if len(events):
        counts = events["kind"].value_counts().to_dict()
        print(f"events: {', '.join(f'{k} x{v}' for k, v in counts.items())}")
        for event in events.tail(args.samples).itertuples():
            # wait_s is NaN for events without a wait (NaN != NaN).
            wait = f" (waited {event.wait_s:.1f} s)" if event.wait_s == event.wait_s and event.wait_s else ""
            print(f"  {event.created_at} {event.kind}{wait}: {one_line(event.message, 160)}")
    for job in jobs:
        print(f"batch {job['id']} ({job['provider']}): {job['status']}, {len(job['sample_indices'])} samples"
              + (f", finished {job['finished_at']}" if job["finished_at"] else ", not finished"))
    for row in samples.head(args.samples).itertuples():
        print(f"[{row.sample_index:>3}] ({row.finish_reason:<6}) {one_line(row.text)}")


def cmd_runs_export(args: argparse.Namespace) -> None:
    """Write one run as a bundle (Parquet, CSV or JSONL) for a colleague."""
    from workbench.home import exports_dir
    from workbench.store import Store

    with Store() as store:
        run_id = store.resolve_run_id(args.run_id)
        out = Path(args.out) if args.out else exports_dir() / "runs" / f"{run_id}.{args.format}"
        path = store.export_run(run_id, out, args.format)
    print(f"exported run {run_id} to {path}")


def cmd_runs_import(args: argparse.Namespace) -> None:
    """Load an exported run bundle into this store; samples already present are kept."""
    from workbench.store import Store

    with Store() as store:
        run_id, added, present = store.import_bundle(args.file)
    print(f"imported run {run_id}: {added} samples added, {present} already present")
