"""Store health: a quick check when a store is opened, a full check of the file and of its rows (salvage:
store/salvage.py).

A store damaged on disk (a bad sector, a copy cut short, bytes written into it) must never serve
cached samples silently. Opening runs SQLite's `quick_check` once per process per file state (the
file's identity, size and modification time), so the per-thread opens of a notebook or widget stay
cheap; a damaged store is refused with the commands that inspect and salvage it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import StoreError
from workbench.store.checks import readable_sample_sql
from workbench.store.keys import run_cache_key

if TYPE_CHECKING:
    from workbench.store.database import Store

_healthy: set[tuple[str, int, int, int, int]] = set()
_healthy_lock = threading.Lock()


def check_on_open(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged store (SQLite quick_check), checking each file state once per process."""
    state = _file_state(path)
    if state is None:
        return  # a new, empty store
    with _healthy_lock:
        if state in _healthy:
            return
    problems = quick_problems(db)
    if problems:
        raise StoreError(damaged_message(path, problems[0]))
    _remember_healthy(state)


def quick_problems(db: sqlite3.Connection) -> list[str]:
    """What SQLite's quick_check finds (empty when the store is sound)."""
    return _pragma_check(db, "quick_check")


def integrity_problems(path: Path, limit: int = 50) -> list[str]:
    """What SQLite's full integrity_check finds in a store file (empty when sound); never raises for damage."""
    try:
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [f"cannot open: {exc}"]
    state = _file_state(Path(path))
    try:
        problems = _pragma_check(db, f"integrity_check({int(limit)})")
    finally:
        db.close()
    if not problems and state is not None:
        _remember_healthy(state)  # integrity_check covers quick_check
    return problems


def damaged_message(path: Path, problem: str) -> str:
    """The one line that refuses a damaged store and says how to get the intact part back."""
    return (f"the run store {path} is damaged (SQLite quick_check: {problem}); `workbench runs check --store {path}` "
            f"lists the damage and `workbench runs salvage --store {path} --out NEW.sqlite` copies what is intact "
            "into a new file; then set WORKBENCH_STORE=NEW.sqlite (or move it to the old path)")


def _pragma_check(db: sqlite3.Connection, pragma: str) -> list[str]:
    try:
        rows = [str(r[0]) for r in db.execute(f"PRAGMA {pragma}")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    if rows == ["ok"]:
        return []
    # SQLite puts several findings in one row, under a "*** in database main ***" line.
    lines = [line.strip() for row in rows for line in row.splitlines()]
    return [line for line in lines if line and not line.startswith("***")]


def _remember_healthy(state: tuple[str, int, int, int, int]) -> None:
    with _healthy_lock:
        _healthy.add(state)


def _file_state(path: Path) -> tuple[str, int, int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_size == 0:
        return None
    return str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def audit_rows(store: Store) -> list[str]:
    """Row-level problems of a sound store file: run rows that cannot be read or whose cache key does not
    match their fields, and sample rows that reading skips."""
    problems = []
    for (run_id,) in store.db.execute("SELECT id FROM runs ORDER BY rowid").fetchall():
        try:
            run = store.run(run_id)
            key = run_cache_key(run)
        except StoreError as exc:
            problems.append(f"run {run_id}: {exc}")
            continue
        if key != run["cache_key"]:
            problems.append(f"run {run_id}: its cache key does not match its model identity, input, config and seed")
    unreadable = store.db.execute(
        f"SELECT run_id, COUNT(*) FROM samples WHERE NOT {readable_sample_sql()} GROUP BY run_id ORDER BY run_id")
    for run_id, count in unreadable:
        problems.append(f"run {run_id}: {count} unreadable sample row{'s' if count != 1 else ''} (skipped when read, "
                        "drawn again when sampled)")
    return problems
