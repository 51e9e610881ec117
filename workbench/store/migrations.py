"""Append-only, named schema migrations for the run store.

Never edit a migration that has shipped: add a new `mNNN_...` function below the last one.
Each runs once per store, in order, inside a transaction, and is recorded in `_migrations`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register a migration; its function name is its permanent identity."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_runs_and_samples(db: sqlite3.Connection) -> None:
    # A run is one cache cell: (model identity, rendered input, config, seed). Asking for more
    # samples of the same cell extends the same run with new sample indices.
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,              -- time-sortable
            cache_key TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,              -- registry name at the time of the run
            model_identity TEXT NOT NULL,     -- JSON: backend, weights, dtype, endpoint
            model_kind TEXT,                  -- base | tuned
            model_family TEXT,
            backend TEXT NOT NULL,
            endpoint TEXT,
            dtype TEXT,
            input_mode TEXT NOT NULL,         -- completion | chat
            input_text TEXT,                  -- exactly what a text backend received
            input_messages TEXT,              -- JSON messages for chat backends
            template TEXT NOT NULL,           -- raw | chat-template | transcript:<name> | ...
            prompt_ref TEXT,                  -- e.g. collection/prompt-id, when from the library
            config TEXT NOT NULL,             -- JSON: the full SamplingConfig
            seed INTEGER NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]'   -- JSON list
        )
        """
    )
    # Library versions and device per process that wrote samples: samples point at one row.
    db.execute(
        """
        CREATE TABLE environments (
            id TEXT PRIMARY KEY,              -- hash of the JSON below
            info TEXT NOT NULL                -- JSON: workbench, torch, transformers, SDK versions, device
        )
        """
    )
    db.execute(
        """
        CREATE TABLE samples (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            sample_index INTEGER NOT NULL,
            text TEXT NOT NULL,
            token_ids TEXT,                   -- JSON lists, aligned
            tokens TEXT,
            token_logprobs TEXT,
            top_logprobs TEXT,                -- JSON, per position [[token_id, token, logprob], ...]
            finish_reason TEXT NOT NULL,      -- eos | stop | length
            stop_sequence TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_s REAL,
            raw TEXT,                         -- JSON: what the engine or server reported back
            environment_id TEXT REFERENCES environments(id),
            created_at TEXT NOT NULL,
            UNIQUE (run_id, sample_index)
        )
        """
    )
    db.execute("CREATE INDEX samples_by_run ON samples(run_id, sample_index)")
    db.execute("CREATE INDEX runs_by_model ON runs(model, created_at)")


@migration
def m002_branch_trees(db: sqlite3.Connection) -> None:
    # A branch tree (Loom-style): a prompt expanded node by node. Rows are only ever added (or a
    # chunk's count raised when more samples are drawn), so expanding a node never rewrites its
    # ancestors.
    db.execute(
        """
        CREATE TABLE trees (
            id TEXT PRIMARY KEY,              -- time-sortable
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,              -- the model that built the tree (its root input below)
            prompt TEXT NOT NULL,             -- JSON: how to render the prompt for any model (text, messages, library ref)
            prompt_ref TEXT,                  -- collection/prompt-id, when from the library
            root_input TEXT NOT NULL,         -- JSON: the rendered input of `model` (mode, text, messages, template)
            params TEXT NOT NULL DEFAULT '{}' -- JSON
        )
        """
    )
    db.execute(
        """
        CREATE TABLE tree_nodes (
            tree_id TEXT NOT NULL REFERENCES trees(id),
            node_id INTEGER NOT NULL,         -- 0 is the root
            parent_id INTEGER,                -- NULL for the root
            depth INTEGER NOT NULL,           -- edges from the root
            model TEXT NOT NULL,              -- the model that made this edge
            method TEXT NOT NULL,             -- root | topk | chunk
            edge_key TEXT NOT NULL,           -- what makes a child unique under its parent for its model and method
            edge_text TEXT NOT NULL,
            token_ids TEXT NOT NULL,          -- JSON: the edge's token ids for `model`
            logprob REAL NOT NULL,            -- log P(edge | root + path to the parent) under `model`
            cum_logprob REAL NOT NULL,        -- sum of logprobs from the root
            rank INTEGER,                     -- topk: 0 = most likely
            count INTEGER,                    -- chunk: how many of the n samples were this chunk
            finish_reason TEXT,               -- eos | stop | length (chunks), eos (a top-k end token)
            params TEXT NOT NULL DEFAULT '{}',-- JSON: k, or n/m/seed/config/run_id; conditioning
            created_at TEXT NOT NULL,
            PRIMARY KEY (tree_id, node_id),
            UNIQUE (tree_id, parent_id, model, method, edge_key)
        )
        """
    )
    # Another model's probability of an existing edge, conditioned on the path text (it tokenises it itself).
    db.execute(
        """
        CREATE TABLE tree_scores (
            tree_id TEXT NOT NULL REFERENCES trees(id),
            node_id INTEGER NOT NULL,
            model TEXT NOT NULL,
            logprob REAL,                     -- NULL where the edge cannot be scored as text (an end token)
            token_ids TEXT,                   -- JSON: the edge as this model tokenised it
            created_at TEXT NOT NULL,
            PRIMARY KEY (tree_id, node_id, model),
            FOREIGN KEY (tree_id, node_id) REFERENCES tree_nodes(tree_id, node_id)
        )
        """
    )
    db.execute("CREATE INDEX trees_by_model ON trees(model, created_at)")


@migration
def m003_run_events_and_batches(db: sqlite3.Connection) -> None:
    # What happened while a run was drawn (retries, rate limits, short replies, cost stops): the
    # run record shows them, so a flaky server is visible next to the samples it produced.
    db.execute(
        """
        CREATE TABLE run_events (
            id TEXT PRIMARY KEY,              -- time-sortable
            run_id TEXT NOT NULL REFERENCES runs(id),
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,               -- retry | rate_limited | fatal | short_choices | max_cost | batch
            attempt INTEGER,
            wait_s REAL,
            sample_indices TEXT,              -- JSON list
            message TEXT                      -- scrubbed of secrets
        )
        """
    )
    db.execute("CREATE INDEX run_events_by_run ON run_events(run_id, created_at)")
    # Provider batch jobs (OpenAI Batch API, Anthropic Message Batches): the id is stored with
    # the run, so polling resumes after a restart and results land as ordinary samples.
    db.execute(
        """
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,              -- the provider's batch id
            run_id TEXT NOT NULL REFERENCES runs(id),
            provider TEXT NOT NULL,           -- openai | anthropic
            model TEXT NOT NULL,
            sample_indices TEXT NOT NULL,     -- JSON list of the indices the batch draws
            status TEXT NOT NULL,             -- the provider's last reported status
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            finished_at TEXT,
            info TEXT                         -- JSON: request counts, file ids, errors (no secrets)
        )
        """
    )
    db.execute("CREATE INDEX batches_by_run ON batches(run_id)")


@migration
def m004_run_origin_and_trust(db: sqlite3.Connection) -> None:
    # A run's identity is its cache key AND where it came from: runs drawn here are 'local'; an
    # imported bundle's run is 'bundle:<hash of its header's run fields>', kept apart from any
    # local run of the same key. Only trusted runs (local ones, or imports the user vouched for
    # with `runs import --trust`) answer cache lookups. SQLite cannot drop the old UNIQUE
    # (cache_key) in place, so the table is rebuilt (the store runs migrations with foreign keys
    # off and checks them before committing); ids, and so every sample's run_id, are kept.
    db.execute(
        """
        CREATE TABLE runs_new (
            id TEXT PRIMARY KEY,              -- time-sortable
            cache_key TEXT NOT NULL,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,              -- registry name at the time of the run
            model_identity TEXT NOT NULL,     -- JSON: backend, weights, dtype, endpoint
            model_kind TEXT,                  -- base | tuned
            model_family TEXT,
            backend TEXT NOT NULL,
            endpoint TEXT,
            dtype TEXT,
            input_mode TEXT NOT NULL,         -- completion | chat
            input_text TEXT,                  -- exactly what a text backend received
            input_messages TEXT,              -- JSON messages for chat backends
            template TEXT NOT NULL,           -- raw | chat-template | transcript:<name> | ...
            prompt_ref TEXT,                  -- e.g. collection/prompt-id, when from the library
            config TEXT NOT NULL,             -- JSON: the full SamplingConfig
            seed INTEGER NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',  -- JSON list
            origin TEXT NOT NULL DEFAULT 'local',  -- local | bundle:<16 hex>
            trusted INTEGER NOT NULL DEFAULT 1,    -- 1: answers cache lookups (local runs always)
            imported_from TEXT,               -- the bundle file an imported run first came from
            UNIQUE (cache_key, origin)
        )
        """
    )
    columns = ("id, cache_key, created_at, model, model_identity, model_kind, model_family, backend, endpoint, dtype, "
               "input_mode, input_text, input_messages, template, prompt_ref, config, seed, tags")
    db.execute(f"INSERT INTO runs_new ({columns}) SELECT {columns} FROM runs ORDER BY rowid")
    db.execute("DROP TABLE runs")
    db.execute("ALTER TABLE runs_new RENAME TO runs")
    db.execute("CREATE INDEX runs_by_model ON runs(model, created_at)")


@migration
def m005_flat_store_indexes(db: sqlite3.Connection) -> None:
    # samples_by_run duplicated the index SQLite builds for UNIQUE (run_id, sample_index): the same
    # columns twice (about 40 MB per million samples), written on every insert. Every read of a
    # run's samples uses the UNIQUE index instead. `runs list --model` takes a model's newest runs
    # in id order (ids are time-sortable), which (model, id) answers without sorting all its runs.
    db.execute("DROP INDEX IF EXISTS samples_by_run")
    db.execute("DROP INDEX IF EXISTS runs_by_model")
    db.execute("CREATE INDEX runs_by_model ON runs(model, id)")


@migration
def m006_candidate_scores(db: sqlite3.Connection) -> None:
    # Exact distributions score every candidate answer in a forward pass. The scores depend only on
    # the model identity, the rendered input, the candidates, temperatures and terminators (the key),
    # so they are kept like samples: a figure, a notebook or `workbench demo` asked again answers
    # from the store instead of loading the model.
    db.execute("CREATE TABLE candidate_scores (key TEXT PRIMARY KEY, model TEXT NOT NULL, scores TEXT NOT NULL, "
               "created_at TEXT NOT NULL)")
