"""The run store: SQLite in $WORKBENCH_HOME, every sample committed as soon as it exists.

WAL mode and a busy timeout let a notebook, the CLI and a widget thread write at once. Each
thread opens its own `Store` (a SQLite connection is not shared across threads). Samples are
unique per (run, sample index), so a resumed or concurrent run never stores a sample twice.

A run is identified by its cache key and its origin: runs drawn here are 'local', imported
bundles keep their own origin, and only trusted runs answer cache lookups (`find_run`). Opening a
store checks it (SQLite quick_check); reading never dies on a bad row: it is skipped and reported.
One rule (`checks.sample_content`) says which rows can be read; an unreadable row's index counts as
missing, and the sample drawn again for it replaces the row in place (and is recorded as a run event).
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
from workbench.store.checks import RowProblem, describe_skipped, sample_content, sample_problem
from workbench.store.health import check_on_open, open_error_message
from workbench.store.ids import new_id, utc_now
from workbench.store.migrations import MIGRATIONS
from workbench.store.records import JSON_RUN_COLUMNS, JSON_SAMPLE_COLUMNS, SAMPLE_COLUMNS, RunRecord, dumps, loads
from workbench.store.scores import ScoresMixin
from workbench.store.trees import TreeMixin
from workbench.types import Generation

BUSY_TIMEOUT_MS = 60_000


_INSERT_SAMPLE = (f"INSERT INTO samples ({', '.join(SAMPLE_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in SAMPLE_COLUMNS)}) ON CONFLICT DO NOTHING")
# What a new row replaces of an unreadable one: everything but its id, run and index (the row keeps its place).
_REPLACED_COLUMNS = tuple(c for c in SAMPLE_COLUMNS if c not in ("id", "run_id", "sample_index"))
_REPLACE_SAMPLE = f"UPDATE samples SET {', '.join(f'{c} = ?' for c in _REPLACED_COLUMNS)} WHERE id = ?"
_INDEX_CHUNK = 500  # sample indices per `IN (...)` query
# Sorts after every character an id can hold: `id >= prefix AND id < prefix + this` is a prefix range.
PAST_ANY_ID_CHARACTER = "\U0010ffff"


class Store(BundleMixin, TreeMixin, ScoresMixin):
    """One connection to the run store; open one per thread.

    Opening refuses a damaged store file (SQLite quick_check, once per process per file state) with
    the commands that inspect and salvage it.
    """

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
            check_on_open(self.db, self.path)
            self._migrate()
        except StoreError:
            self.db.close()
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            if hasattr(self, "db"):
                self.db.close()
            raise StoreError(open_error_message(self.path, exc)) from None
        self._replaced: dict[str, list[int]] = {}

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
        # Foreign keys are off while migrating (they cannot change inside a transaction) so that a
        # migration can rebuild a parent table, as SQLite's ALTER TABLE guide does; rebuilds keep ids.
        self.db.execute("PRAGMA foreign_keys = OFF")
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
        finally:
            self.db.execute("PRAGMA foreign_keys = ON")

    def applied_migrations(self) -> list[str]:
        """Names of the migrations this store has run, in order."""
        return [r[0] for r in self.db.execute("SELECT name FROM _migrations ORDER BY rowid")]

    # -- writing -------------------------------------------------------------------------

    def ensure_run(self, run: RunRecord) -> str:
        """The id of the run that answers this cache key (`find_run`), creating the local run if there is none."""
        found = self.find_run(run.cache_key)
        if found is not None:
            return found
        row = asdict(run)
        for name in JSON_RUN_COLUMNS:
            row[name] = dumps(row[name])
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        # ON CONFLICT (not OR IGNORE): uniqueness conflicts are expected, NOT NULL violations are bugs.
        self.db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING", tuple(row.values()))
        return self.local_run(run.cache_key) or run.id

    def find_run(self, cache_key: str) -> str | None:
        """The run that answers cache lookups for this key, or None (nothing is created).

        The local run answers; without one, the first trusted import (`runs import --trust`) does.
        Untrusted imports never answer: they are there to read, compare and plot.
        """
        row = self.db.execute(
            "SELECT id FROM runs WHERE cache_key = ? AND trusted = 1 ORDER BY origin != 'local', rowid LIMIT 1",
            (cache_key,),
        ).fetchone()
        return row[0] if row else None

    def local_run(self, cache_key: str) -> str | None:
        """The run drawn in this store for this cache key, or None."""
        row = self.db.execute("SELECT id FROM runs WHERE cache_key = ? AND origin = 'local'", (cache_key,)).fetchone()
        return row[0] if row else None

    def ensure_environment(self, info: dict[str, Any]) -> str:
        """The id of an environment description (library versions, device), stored once."""
        blob = json.dumps(info, sort_keys=True, separators=(",", ":"))
        env_id = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.db.execute("INSERT INTO environments (id, info) VALUES (?, ?) ON CONFLICT DO NOTHING", (env_id, blob))
        return env_id

    def add_generations(self, run_id: str, generations: Iterable[Generation], environment_id: str | None) -> int:
        """Commit finished samples at once; a sample index already stored is kept, not duplicated."""
        rows, committed_at = [], utc_now()  # one timestamp per transaction
        for g in generations:
            top = None
            if g.top_logprobs is not None:
                top = [[[t.token_id, t.token, t.logprob] for t in position] for position in g.top_logprobs]
            rows.append(
                (
                    new_id(), run_id, g.index, g.text, dumps(g.token_ids), dumps(g.tokens),
                    dumps(g.token_logprobs), dumps(top), g.finish_reason, g.stop_sequence,
                    g.prompt_tokens, g.completion_tokens, g.latency_s, dumps(g.raw), environment_id,
                    committed_at,
                )
            )
        return self._insert_sample_rows(rows)

    def _insert_sample_rows(self, rows: list[tuple[Any, ...]], transaction: bool = True) -> int:
        """Insert sample rows (SAMPLE_COLUMNS order) in one transaction (or the caller's); returns rows written.

        An index already stored for its run is kept, unless its stored row is unreadable: then the
        new row replaces it in place (how a damaged sample is drawn again), recorded as a run event.
        """
        if not rows:
            return 0
        if not transaction:
            return self._write_sample_rows(rows)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            written = self._write_sample_rows(rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return written

    def _write_sample_rows(self, rows: list[tuple[Any, ...]]) -> int:
        before = self.db.total_changes
        unreadable = self._unreadable_among(rows)
        inserts, replaced = [], []
        for row in rows:
            stored = unreadable.pop((row[1], row[2]), None)
            if stored is None:
                inserts.append(row)
                continue
            row_id, problem = stored
            self.db.execute(_REPLACE_SAMPLE, (*(row[SAMPLE_COLUMNS.index(c)] for c in _REPLACED_COLUMNS), row_id))
            replaced.append((row[1], row[2], problem))
        self.db.executemany(_INSERT_SAMPLE, inserts)
        for run_id, index, problem in replaced:
            self.add_run_event(run_id, "replaced_unreadable_row", f"sample {index}: the stored row was unreadable "
                               f"({problem}); a new sample replaced it", sample_indices=[index])
            self._replaced.setdefault(run_id, []).append(index)
        return self.db.total_changes - before

    def _unreadable_among(self, rows: list[tuple[Any, ...]]) -> dict[tuple[str, int], tuple[str, str]]:
        """Stored rows with the (run, index) of a new row that are unreadable: their id and problem."""
        wanted: dict[str, list[int]] = {}
        for row in rows:
            wanted.setdefault(row[1], []).append(row[2])
        found = {}
        for run_id, indices in wanted.items():
            for start in range(0, len(indices), _INDEX_CHUNK):
                chunk = indices[start:start + _INDEX_CHUNK]
                columns, stored = self._fetch(f"SELECT * FROM samples WHERE run_id = ? AND sample_index IN "
                                              f"({', '.join('?' for _ in chunk)})", (run_id, *chunk))
                for values in stored:
                    record = dict(zip(columns, values, strict=True))
                    problem = sample_problem(record)
                    if problem is not None:
                        found[(run_id, record["sample_index"])] = (record["id"], problem)
        return found

    def replaced_rows(self, run_id: str) -> list[int]:
        """Indices of a run whose unreadable stored row this connection replaced with a new sample, sorted."""
        return sorted(set(self._replaced.get(run_id, [])))

    # -- reading -------------------------------------------------------------------------

    def sample_indices(self, run_id: str, below: int | None = None) -> set[int]:
        """Indices stored for a run (those below `below`) in rows that can be read (an unreadable row's
        index counts as missing). Bounded by `below`, the time does not grow with the run."""
        query, params = "SELECT * FROM samples WHERE run_id = ?", (run_id,)
        if below is not None:
            query, params = query + " AND sample_index < ?", (run_id, below)
        columns, rows = self._fetch(query, params)
        index = columns.index("sample_index")
        return {row[index] for row in rows if sample_problem(dict(zip(columns, row, strict=True))) is None}

    def count_samples(self, run_id: str) -> int:
        """Rows stored for a run (readable or not): one index lookup, however large the store."""
        return self.db.execute("SELECT COUNT(*) FROM samples WHERE run_id = ?", (run_id,)).fetchone()[0]

    def unreadable_rows(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored rows that reading skips: sample index and problem, by index."""
        columns, rows = self._fetch("SELECT * FROM samples WHERE run_id = ? ORDER BY sample_index", (run_id,))
        found = []
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            problem = sample_problem(record)
            if problem is not None:
                found.append({"sample_index": record["sample_index"], "problem": problem})
        return found

    def resolve_run_id(self, run_id: str) -> str:
        """A full run id from a full id or a unique prefix (as `runs list` shows)."""
        return self._resolve_id("runs", "run", run_id, "workbench runs list")

    def _resolve_id(self, table: str, what: str, prefix: str, listing: str) -> str:
        """The one id in `table` that starts with `prefix`, or an error that says what to do.

        Ids are upper-case Crockford base32 (a prefix may be typed in lower case). A full id is one
        primary-key lookup; a prefix is a range of the primary key (never a LIKE scan of the table).
        """
        prefix = prefix.strip().upper()
        rows: list[Any] = []
        if prefix:
            rows = self.db.execute(f"SELECT id FROM {table} WHERE id = ?", (prefix,)).fetchall()
        if prefix and not rows:
            rows = self.db.execute(f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                                   (prefix, prefix + PAST_ANY_ID_CHARACTER)).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if not rows:
            raise StoreError(f"no {what} {prefix!r} in {self.path}; see `{listing}`")
        raise StoreError(f"{what} id prefix {prefix!r} matches several {what}s; give more characters")

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's row as a dict (JSON columns decoded); a row damaged beyond reading is a StoreError."""
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (self.resolve_run_id(run_id),)).fetchone()
        run = dict(row)
        for name in JSON_RUN_COLUMNS:
            try:
                run[name] = loads(run[name])
            except (ValueError, TypeError, RecursionError):
                raise StoreError(f"run {run['id']}: its {name} is not valid JSON (the row was damaged or edited "
                                 "by hand); `workbench runs check` lists such rows") from None
        return run

    def runs(self, model: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """One row per run, newest first, with its stored sample count (the newest `limit` runs, or all).

        The newest runs are taken first (in primary-key order) and only those are counted, each with
        one lookup in the samples' (run, index) index: the time does not grow with the store.
        """
        where, params = ("WHERE model = ? ", [model]) if model else ("", [])
        newest = f"SELECT * FROM runs {where}ORDER BY id DESC"
        if limit is not None:
            newest += " LIMIT ?"
            params.append(max(0, int(limit)))
        query = (
            "SELECT r.id, r.created_at, r.model, r.model_kind, r.model_family, r.backend, r.input_mode, "
            "r.template, r.prompt_ref, r.seed, r.input_text, r.input_messages, r.config, r.origin, r.trusted, "
            "r.imported_from, (SELECT COUNT(*) FROM samples s WHERE s.run_id = r.id) AS n_samples "
            f"FROM ({newest}) r ORDER BY r.id DESC"
        )
        return pd.read_sql_query(query, self.db, params=tuple(params))

    def samples(self, run_id: str, n: int | None = None) -> pd.DataFrame:
        """The tidy samples of one run (one row per sample, run columns repeated), ordered by index.

        Rows that cannot be read are left out and listed in `frame.attrs["skipped_rows"]` (sample
        index and problem); `skipped_note(frame)` says it in one line. The frame is built column by
        column from the rows as they are read.
        """
        run = self.run(run_id)
        where = "run_id = ?"
        params: tuple[Any, ...] = (run["id"],)
        if n is not None:
            where += " AND sample_index < ?"
            params += (n,)
        columns, rows = self._fetch(f"SELECT * FROM samples WHERE {where} ORDER BY sample_index", params)
        data: dict[str, list[Any]] = {name: [] for name in columns}
        skipped = []
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            try:
                content = sample_content(record)  # the one rule; it decodes the JSON columns once
            except RowProblem as exc:
                skipped.append({"sample_index": record["sample_index"], "problem": str(exc)})
                continue
            record.update((name, content[name]) for name in JSON_SAMPLE_COLUMNS)
            for name in columns:
                data[name].append(record[name])
        del rows  # the columns hold the same values: no second copy while the frame is built
        frame = pd.DataFrame({name: _column(values, name in JSON_SAMPLE_COLUMNS) for name, values in data.items()})
        frame["logprob"] = frame["token_logprobs"].map(_total_logprob)
        for name in ("model", "model_kind", "model_family", "backend", "dtype", "input_mode", "template",
                     "prompt_ref", "seed"):
            frame[name] = run[name]
        for name in ("temperature", "top_p", "top_k", "max_tokens"):
            frame[name] = run["config"].get(name)
        frame.attrs["skipped_rows"] = skipped  # in index order
        frame.attrs["run_id"] = run["id"]
        return frame

    def samples_from_any_thread(self, run_id: str, n: int | None = None) -> pd.DataFrame:
        """`samples`, also after this connection was closed or from another thread than the one that
        opened it (a SampleRun's frame is built when first asked for): then a new connection reads it."""
        try:
            return self.samples(run_id, n)
        except sqlite3.ProgrammingError:
            if not self.path.exists():  # opening would create an empty store there
                raise StoreError(f"the store {self.path} is gone, so run {run_id}'s samples cannot be read") from None
            with Store(self.path) as store:
                return store.samples(run_id, n)

    def _fetch(self, query: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows; text that is not UTF-8 (a damaged cell) is read with replacement characters."""
        try:
            cursor = self.db.execute(query, params)
            rows = cursor.fetchall()
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
            self.db.text_factory = lambda raw: raw.decode("utf-8", "replace")
            try:
                cursor = self.db.execute(query, params)
                rows = cursor.fetchall()
            finally:
                self.db.text_factory = str
        return [d[0] for d in cursor.description], [tuple(r) for r in rows]

    def environments(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Environment descriptions by id."""
        wanted = [i for i in set(ids) if i]
        if not wanted:
            return {}
        rows = self.db.execute(
            f"SELECT id, info FROM environments WHERE id IN ({', '.join('?' for _ in wanted)})", wanted
        )
        found = {}
        for env_id, info in rows:
            try:
                found[env_id] = json.loads(info)
            except (TypeError, ValueError, RecursionError):
                found[env_id] = {"unreadable": "this environment row is not valid JSON"}
        return found

    # -- run events and batch jobs ------------------------------------------------------

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
        frame["sample_indices"] = frame["sample_indices"].map(_loads_or_none)
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

def skipped_note(frame: pd.DataFrame) -> str | None:
    """One line about the rows `Store.samples` had to skip, or None when every row was read."""
    skipped = frame.attrs.get("skipped_rows") or []
    return describe_skipped(skipped, frame.attrs.get("run_id", "?")) if skipped else None


def _column(values: list[Any], keep_objects: bool) -> pd.Series | list[Any]:
    """A frame column: decoded JSON stays as Python objects (lists, dicts), one per row."""
    return pd.Series(values, dtype=object) if keep_objects else values


def _loads_or_none(value: Any) -> Any:
    """A JSON cell shown for information only: None when it does not parse."""
    try:
        return loads(value)
    except (TypeError, ValueError, RecursionError):
        return None


def _total_logprob(logprobs: Any) -> float | None:
    """A sample's logprob; None when some token's logprob is unknown."""
    if not logprobs or not all(isinstance(lp, int | float) and not isinstance(lp, bool) for lp in logprobs):
        return None
    return float(sum(logprobs))


def open_store(path: str | Path | None = None) -> Store:
    """Open (and create or migrate) the run store; default `$WORKBENCH_HOME/workbench.sqlite`."""
    return Store(path)

