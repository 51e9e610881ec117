"""The run store: SQLite in $WORKBENCH_HOME, every sample committed as soon as it exists.

WAL mode and a busy timeout let a notebook, the CLI and a widget thread write at once. Each
thread opens its own `Store` (a SQLite connection is not shared across threads). Samples are
unique per (run, sample index), so a resumed or concurrent run never stores a sample twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import StoreError
from workbench.home import store_path
from workbench.store.bundles import BundleMixin
from workbench.store.ids import new_id, utc_now
from workbench.store.migrations import MIGRATIONS
from workbench.store.records import JSON_RUN_COLUMNS, JSON_SAMPLE_COLUMNS, SAMPLE_COLUMNS, RunRecord, dumps, loads
from workbench.types import Generation

BUSY_TIMEOUT_MS = 60_000


class Store(BundleMixin):
    """One connection to the run store; open one per thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(
                f"cannot open the run store {self.path}: {exc}; check the path or set WORKBENCH_HOME"
            ) from None

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
        if all(m.__name__ in applied for m in MIGRATIONS):
            return
        # IMMEDIATE takes the write lock first, so two processes opening a new store migrate once.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            applied = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
            for fn in MIGRATIONS:
                if fn.__name__ not in applied:
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, utc_now()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def applied_migrations(self) -> list[str]:
        """Names of the migrations this store has run, in order."""
        return [r[0] for r in self.db.execute("SELECT name FROM _migrations ORDER BY rowid")]

    # -- writing -------------------------------------------------------------------------

    def ensure_run(self, run: RunRecord) -> str:
        """The id of the run with this cache key, creating it if it is new."""
        row = asdict(run)
        for name in JSON_RUN_COLUMNS:
            row[name] = dumps(row[name])
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        # ON CONFLICT (not OR IGNORE): uniqueness conflicts are expected, NOT NULL violations are bugs.
        self.db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING", tuple(row.values()))
        found = self.db.execute("SELECT id FROM runs WHERE cache_key = ?", (run.cache_key,)).fetchone()
        return found[0]

    def ensure_environment(self, info: dict[str, Any]) -> str:
        """The id of an environment description (library versions, device), stored once."""
        blob = json.dumps(info, sort_keys=True, separators=(",", ":"))
        env_id = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.db.execute("INSERT INTO environments (id, info) VALUES (?, ?) ON CONFLICT DO NOTHING", (env_id, blob))
        return env_id

    def add_generations(self, run_id: str, generations: Iterable[Generation], environment_id: str | None) -> int:
        """Commit finished samples at once; a sample index already stored is kept, not duplicated."""
        rows = []
        for g in generations:
            top = None
            if g.top_logprobs is not None:
                top = [[[t.token_id, t.token, t.logprob] for t in position] for position in g.top_logprobs]
            rows.append(
                (
                    new_id(), run_id, g.index, g.text, dumps(g.token_ids), dumps(g.tokens),
                    dumps(g.token_logprobs), dumps(top), g.finish_reason, g.stop_sequence,
                    g.prompt_tokens, g.completion_tokens, g.latency_s, dumps(g.raw), environment_id,
                    utc_now(),
                )
            )
        return self._insert_sample_rows(rows)

    def _insert_sample_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Insert sample rows in one transaction; an index already stored for its run is kept. Returns rows added."""
        if not rows:
            return 0
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                f"INSERT INTO samples ({', '.join(SAMPLE_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in SAMPLE_COLUMNS)}) ON CONFLICT DO NOTHING",
                rows,
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.db.total_changes - before

    # -- reading -------------------------------------------------------------------------

    def sample_indices(self, run_id: str) -> set[int]:
        """Indices already stored for a run."""
        return {r[0] for r in self.db.execute("SELECT sample_index FROM samples WHERE run_id = ?", (run_id,))}

    def resolve_run_id(self, run_id: str) -> str:
        """A full run id from a full id or a unique prefix (as `runs list` shows)."""
        return self._resolve_id("runs", "run", run_id, "workbench runs list")

    def _resolve_id(self, table: str, what: str, prefix: str, listing: str) -> str:
        """The one id in `table` that starts with `prefix`, or an error that says what to do."""
        rows = self.db.execute(f"SELECT id FROM {table} WHERE id LIKE ? LIMIT 2", (prefix + "%",)).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if not rows:
            raise StoreError(f"no {what} {prefix!r} in {self.path}; see `{listing}`")
        raise StoreError(f"{what} id prefix {prefix!r} matches several {what}s; give more characters")

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's row as a dict (JSON columns decoded)."""
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (self.resolve_run_id(run_id),)).fetchone()
        run = dict(row)
        for name in JSON_RUN_COLUMNS:
            run[name] = loads(run[name])
        return run

    def runs(self, model: str | None = None) -> pd.DataFrame:
        """One row per run, newest first, with its sample count."""
        query = (
            "SELECT r.id, r.created_at, r.model, r.model_kind, r.model_family, r.backend, r.input_mode, "
            "r.template, r.prompt_ref, r.seed, r.input_text, r.input_messages, r.config, "
            "COUNT(s.id) AS n_samples FROM runs r LEFT JOIN samples s ON s.run_id = r.id "
        )
        params: tuple[Any, ...] = ()
        if model:
            query += "WHERE r.model = ? "
            params = (model,)
        query += "GROUP BY r.id ORDER BY r.id DESC"
        frame = pd.read_sql_query(query, self.db, params=params)
        return frame

    def samples(self, run_id: str, n: int | None = None) -> pd.DataFrame:
        """The tidy samples of one run (one row per sample, run columns repeated), ordered by index."""
        run = self.run(run_id)
        query = "SELECT * FROM samples WHERE run_id = ?"
        params: tuple[Any, ...] = (run["id"],)
        if n is not None:
            query += " AND sample_index < ?"
            params += (n,)
        frame = pd.read_sql_query(query + " ORDER BY sample_index", self.db, params=params)
        for name in JSON_SAMPLE_COLUMNS:
            frame[name] = frame[name].map(loads)
        frame["logprob"] = frame["token_logprobs"].map(lambda lps: float(sum(lps)) if lps else None)
        for name in ("model", "model_kind", "model_family", "backend", "dtype", "input_mode", "template",
                     "prompt_ref", "seed"):
            frame[name] = run[name]
        for name in ("temperature", "top_p", "top_k", "max_tokens"):
            frame[name] = run["config"].get(name)
        return frame

    def environments(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Environment descriptions by id."""
        wanted = [i for i in set(ids) if i]
        if not wanted:
            return {}
        rows = self.db.execute(
            f"SELECT id, info FROM environments WHERE id IN ({', '.join('?' for _ in wanted)})", wanted
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    # -- branch trees ----------------------------------------------------------------------

    def create_tree(self, tree: dict[str, Any]) -> str:
        """Store a tree's header (id, model, prompt, prompt_ref, root_input, params); an id already stored is kept."""
        row = {
            "id": tree["id"], "created_at": tree.get("created_at") or utc_now(), "model": tree["model"],
            "prompt": dumps(tree["prompt"]), "prompt_ref": tree.get("prompt_ref"),
            "root_input": dumps(tree["root_input"]), "params": dumps(tree.get("params") or {}),
        }
        self.db.execute(f"INSERT INTO trees ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
                        "ON CONFLICT DO NOTHING", tuple(row.values()))
        return row["id"]

    def add_tree_nodes(self, tree_id: str, nodes: list[dict[str, Any]]) -> list[int]:
        """Add child nodes in one transaction and return their ids; a node already stored keeps its id.

        A node is the same as a stored one when (parent, model, method, edge_key) match; then only a
        chunk's count and params are refreshed (more samples drawn), nothing else is rewritten. A
        node without a `node_id` gets the next free id of its tree.
        """
        ids: list[int] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for node in nodes:
                found = self.db.execute(
                    "SELECT node_id FROM tree_nodes WHERE tree_id = ? AND parent_id IS ? AND model = ? AND method = ? "
                    "AND edge_key = ?",
                    (tree_id, node.get("parent_id"), node["model"], node["method"], node["edge_key"]),
                ).fetchone()
                if found is not None:
                    if node.get("count") is not None:
                        self.db.execute("UPDATE tree_nodes SET count = ?, params = ? WHERE tree_id = ? AND node_id = ?",
                                        (node["count"], dumps(node.get("params") or {}), tree_id, found[0]))
                    ids.append(found[0])
                    continue
                node_id = node.get("node_id")
                if node_id is None:
                    node_id = self.db.execute("SELECT COALESCE(MAX(node_id) + 1, 0) FROM tree_nodes WHERE tree_id = ?",
                                              (tree_id,)).fetchone()[0]
                row = {
                    "tree_id": tree_id, "node_id": node_id, "parent_id": node.get("parent_id"),
                    "depth": node["depth"], "model": node["model"], "method": node["method"],
                    "edge_key": node["edge_key"], "edge_text": node["edge_text"], "token_ids": dumps(node["token_ids"]),
                    "logprob": node["logprob"], "cum_logprob": node["cum_logprob"], "rank": node.get("rank"),
                    "count": node.get("count"), "finish_reason": node.get("finish_reason"),
                    "params": dumps(node.get("params") or {}), "created_at": node.get("created_at") or utc_now(),
                }
                self.db.execute(f"INSERT INTO tree_nodes ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
                                "ON CONFLICT (tree_id, node_id) DO NOTHING", tuple(row.values()))
                ids.append(int(node_id))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return ids

    def add_tree_scores(self, tree_id: str, scores: list[dict[str, Any]]) -> None:
        """Store other models' logprobs of existing edges (node_id, model, logprob, token_ids); kept once per model."""
        rows = [(tree_id, s["node_id"], s["model"], s["logprob"], dumps(s.get("token_ids")), utc_now())
                for s in scores]
        if rows:
            self.db.executemany("INSERT INTO tree_scores VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)

    def resolve_tree_id(self, tree_id: str) -> str:
        """A full tree id from a full id or a unique prefix."""
        return self._resolve_id("trees", "tree", tree_id, "workbench tree --list")

    def tree(self, tree_id: str) -> dict[str, Any]:
        """A tree's header as a dict (JSON columns decoded)."""
        row = dict(self.db.execute("SELECT * FROM trees WHERE id = ?", (self.resolve_tree_id(tree_id),)).fetchone())
        for name in ("prompt", "root_input", "params"):
            row[name] = loads(row[name])
        return row

    def tree_nodes(self, tree_id: str) -> list[dict[str, Any]]:
        """A tree's nodes in id order (JSON columns decoded)."""
        rows = [dict(r) for r in self.db.execute("SELECT * FROM tree_nodes WHERE tree_id = ? ORDER BY node_id",
                                                 (tree_id,))]
        for row in rows:
            row["token_ids"] = loads(row["token_ids"])
            row["params"] = loads(row["params"])
        return rows

    def tree_scores(self, tree_id: str) -> list[dict[str, Any]]:
        """Other models' logprobs of a tree's edges."""
        rows = [dict(r) for r in self.db.execute("SELECT * FROM tree_scores WHERE tree_id = ? ORDER BY node_id, model",
                                                 (tree_id,))]
        for row in rows:
            row["token_ids"] = loads(row["token_ids"])
        return rows

    def trees(self) -> pd.DataFrame:
        """One row per tree, newest first, with its node count."""
        return pd.read_sql_query(
            "SELECT t.id, t.created_at, t.model, t.prompt_ref, COUNT(n.node_id) AS n_nodes, MAX(n.depth) AS max_depth "
            "FROM trees t LEFT JOIN tree_nodes n ON n.tree_id = t.id GROUP BY t.id ORDER BY t.id DESC", self.db)

    # -- sharing -------------------------------------------------------------------------

    # -- run events and batch jobs ------------------------------------------------------

    def find_run(self, cache_key: str) -> str | None:
        """The id of the run with this cache key, or None (nothing is created)."""
        row = self.db.execute("SELECT id FROM runs WHERE cache_key = ?", (cache_key,)).fetchone()
        return row[0] if row else None

    def add_run_event(self, run_id: str, kind: str, message: str, attempt: int | None = None,
                      wait_s: float | None = None, sample_indices: Iterable[int] | None = None) -> None:
        """Record something that happened while drawing a run (a retry, a rate limit, a cost stop)."""
        from workbench.secrets import scrub_text

        self.db.execute(
            "INSERT INTO run_events (id, run_id, created_at, kind, attempt, wait_s, sample_indices, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id(), run_id, utc_now(), kind, attempt, wait_s,
             dumps(sorted(sample_indices)) if sample_indices is not None else None, scrub_text(message)),
        )

    def run_events(self, run_id: str) -> pd.DataFrame:
        """A run's events, oldest first (in the order they were recorded: ids made in the same
        millisecond sort at random, so the order is SQLite's rowid)."""
        frame = pd.read_sql_query(
            "SELECT created_at, kind, attempt, wait_s, sample_indices, message FROM run_events "
            "WHERE run_id = ? ORDER BY rowid", self.db, params=(self.resolve_run_id(run_id),))
        frame["sample_indices"] = frame["sample_indices"].map(loads)
        return frame

    def add_batch(self, batch_id: str, run_id: str, provider: str, model: str, sample_indices: list[int],
                  status: str, info: dict[str, Any] | None = None) -> None:
        """Remember a submitted provider batch job with its run."""
        now = utc_now()
        self.db.execute(
            "INSERT INTO batches (id, run_id, provider, model, sample_indices, status, created_at, updated_at, info) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (batch_id, run_id, provider, model, dumps(sorted(sample_indices)), status, now, now, dumps(info)),
        )

    def update_batch(self, batch_id: str, status: str, info: dict[str, Any] | None = None,
                     finished: bool = False) -> None:
        """A batch job's latest status (and when it finished)."""
        now = utc_now()
        self.db.execute(
            "UPDATE batches SET status = ?, updated_at = ?, info = COALESCE(?, info), "
            "finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
            (status, now, dumps(info), finished, now, batch_id),
        )

    def batches(self, run_id: str | None = None, unfinished: bool = False) -> list[dict[str, Any]]:
        """Stored batch jobs (of one run, or only those not finished yet), oldest first."""
        query, params = "SELECT * FROM batches WHERE 1 = 1", []
        if run_id:
            query += " AND run_id = ?"
            params.append(run_id)
        if unfinished:
            query += " AND finished_at IS NULL"
        rows = [dict(r) for r in self.db.execute(query + " ORDER BY created_at", params)]
        for row in rows:
            row["sample_indices"] = loads(row["sample_indices"])
            row["info"] = loads(row["info"])
        return rows

def open_store(path: str | Path | None = None) -> Store:
    """Open (and create or migrate) the run store; default `$WORKBENCH_HOME/workbench.sqlite`."""
    return Store(path)

