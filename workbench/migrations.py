"""Append-only, named schema migrations for the run store.

Never edit a migration that has shipped: add a new `mNNN_...` function below the last one.
Each runs once per store, in order, inside a transaction, and is recorded in `_migrations`.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

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
