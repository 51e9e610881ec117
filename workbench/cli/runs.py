"""`workbench runs list|show|export|import|check|salvage`: the stored runs, shared bundles, store health."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from workbench.cli.common import one_line, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add `runs list`, `runs show`, `runs export`, `runs import`, `runs check` and `runs salvage`."""
    runs = sub.add_parser("runs", help="stored runs").add_subparsers(dest="action", required=True)
    p = runs.add_parser("list", help="runs, newest first")
    p.add_argument("--model", help="only this model's runs")
    p.add_argument("--limit", type=positive_int, default=30, help="show the newest LIMIT runs (default 30)")
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
    p = runs.add_parser("import", help="verify an exported run bundle and load it as its own run",
                        description="Verify a run bundle (cache key, every row, content hashes) and load it, all or "
                                    "nothing, as its own run. Imported runs are there to read, compare and plot; "
                                    "`sample` reuses one only with --trust, and never while a local run of the same "
                                    "model, input, config and seed exists.")
    p.add_argument("file")
    p.add_argument("--trust", action="store_true",
                   help="let this run answer `sample` calls (row hashes detect damage, not forgery: trust the sender)")
    p.set_defaults(func=cmd_runs_import)
    p = runs.add_parser("check", help="check the store file (SQLite integrity_check) and its rows")
    p.add_argument("--store", help="the store file (default: $WORKBENCH_STORE or $WORKBENCH_HOME/workbench.sqlite)")
    p.set_defaults(func=cmd_runs_check)
    p = runs.add_parser("salvage", help="copy what is intact of a damaged store into a new store file")
    p.add_argument("--out", required=True, help="the new store file (must not exist)")
    p.add_argument("--store", help="the damaged store (default: $WORKBENCH_STORE or $WORKBENCH_HOME/workbench.sqlite)")
    p.set_defaults(func=cmd_runs_salvage)


def cmd_runs_list(args: argparse.Namespace) -> None:
    """The newest runs, one line each, with their input shortened."""
    from workbench.store import Store

    with Store() as store:
        frame = store.runs(model=args.model, limit=args.limit)
    if frame.empty:
        print(f"no runs of model {args.model!r} in {store.path}" if args.model else f"no runs yet in {store.path}")
        return
    frame["input"] = [
        ref if isinstance(ref, str) and ref else one_line(text if text is not None else str(messages), 50)
        for ref, text, messages in zip(frame["prompt_ref"], frame["input_text"], frame["input_messages"],
                                       strict=True)
    ]
    frame["origin"] = [describe_origin(origin, trusted) for origin, trusted in zip(frame["origin"], frame["trusted"],
                                                                                    strict=True)]
    print(frame[["id", "created_at", "model", "model_kind", "input_mode", "n_samples", "seed", "origin", "input"]]
          .to_string(index=False))


def describe_origin(origin: str, trusted: object) -> str:
    """'local', or an import's origin with whether it answers `sample` calls."""
    return origin if origin == "local" else f"{origin} ({'trusted' if trusted else 'untrusted'})"


def cmd_runs_show(args: argparse.Namespace) -> None:
    """One run: model and engine, input, config, environments, usage, events, batch jobs and samples."""
    from workbench.sampler import Sampler
    from workbench.store import Store, skipped_note

    with Store() as store:
        run = store.run(args.run_id)
        samples = store.samples(run["id"])
        environments = store.environments(samples["environment_id"])
        events = store.run_events(run["id"])
        jobs = store.batches(run["id"])
        usage = Sampler(store=store, progress=False).run_usage(run["id"])
    print(f"run {run['id']} created {run['created_at']}, origin {describe_origin(run['origin'], run['trusted'])}"
          + (f" from {run['imported_from']}" if run["imported_from"] else ""))
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
    note = skipped_note(samples)
    if note:
        print(note)


def cmd_runs_export(args: argparse.Namespace) -> None:
    """Write one run as a bundle (Parquet, CSV or JSONL) for a colleague."""
    from workbench.home import exports_dir
    from workbench.store import Store

    with Store() as store:
        run_id = store.resolve_run_id(args.run_id)
        out = Path(args.out) if args.out else exports_dir() / "runs" / f"{run_id}.{args.format}"
        left_out: list[str] = []
        path = store.export_run(run_id, out, args.format, left_out=left_out)
    print(f"exported run {run_id} to {path}")
    if left_out:
        print(f"warning: left out {len(left_out)} unreadable row{'s' if len(left_out) != 1 else ''} that reading skips "
              f"too ({'; '.join(left_out[:3])}{'; ...' if len(left_out) > 3 else ''}); `workbench runs check` lists "
              "them and `workbench sample` draws them again", file=sys.stderr)


def cmd_runs_import(args: argparse.Namespace) -> None:
    """Verify a run bundle and load it as its own run; samples already present are kept."""
    from workbench.store import Store

    with Store() as store:
        result = store.import_bundle(args.file, trust=args.trust)
    print(f"imported run {result.run_id}: {result.added} samples added, {result.present} already present")
    print(f"verified: {'; '.join(result.verified)}")
    if result.differing:
        print(f"warning: {result.differing} rows differ from the samples already stored for this run "
              "(the stored ones are kept)")
    print(f"origin {result.origin} (now trusted)" if result.newly_trusted
          else f"origin {describe_origin(result.origin, result.trusted)}")
    if not result.trusted:
        print("not trusted: read, compare and plot it; `sample` with the same model, input, config and seed draws "
              "its own samples (import with --trust to reuse these)")
    elif result.local_run_id and result.local_run_id != result.run_id:
        print(f"the local run {result.local_run_id} has the same cache key and keeps answering `sample`; "
              "this import is there to read and compare")
    else:
        print("trusted: `sample` with the same model, input, config and seed reuses these samples "
              "(and draws any missing ones into this run)")


def cmd_runs_check(args: argparse.Namespace) -> None:
    """SQLite's full integrity check of the store file, then row checks; problems exit with status 2."""
    from workbench.errors import StoreError
    from workbench.home import store_path
    from workbench.store import Store
    from workbench.store.health import audit_rows, integrity_problems, table_list_problem, unsalvageable_message

    path = Path(args.store).expanduser() if args.store else store_path()
    if not path.is_file():
        raise StoreError(f"no store file at {path}")
    problems = integrity_problems(path)
    if problems:
        print(f"{path}: the file is damaged (SQLite integrity_check):")
        for problem in problems:
            print(f"  {problem}")
        table_list_damage = table_list_problem(path)
        if table_list_damage is not None:
            raise StoreError(unsalvageable_message(path, table_list_damage))
        raise StoreError(f"{path} is damaged; `workbench runs salvage --store {path} --out NEW.sqlite` copies what "
                         "is intact into a new file")
    with Store(path) as store:
        problems = audit_rows(store)
    if problems:
        print(f"{path}: the file is sound, but {len(problems)} problem{'s' if len(problems) != 1 else ''} in its rows:")
        for problem in problems:
            print(f"  {problem}")
        raise StoreError(f"{path}: {len(problems)} run{'s' if len(problems) != 1 else ''} with row problems (listed "
                         "above); unreadable rows are skipped when read and drawn again by `workbench sample`")
    print(f"{path}: ok")


def cmd_runs_salvage(args: argparse.Namespace) -> None:
    """Copy every readable row of a (damaged) store into a new store file and say what was lost."""
    from workbench.home import store_path
    from workbench.store.salvage import salvage

    source = Path(args.store).expanduser() if args.store else store_path()
    report = salvage(source, Path(args.out).expanduser())
    print(report.describe())
    print(f"use it with WORKBENCH_STORE={report.target} (or move it to {source} once you have kept the old file)")
