"""Store health: a quick check when a store is opened, a full check of the file and of its rows (salvage:
store/salvage.py).

A store damaged on disk (a bad sector, a copy cut short, bytes written into it) must never serve
cached samples silently. Opening runs SQLite's `quick_check` once per process per file state (the
file's identity, size and modification time), so the per-thread opens of a notebook or widget stay
cheap; a damaged store is refused with the commands that inspect and salvage it, whether the damage is
found by the quick check or stops SQLite from opening the file at all (a damaged table list).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import StoreError
from workbench.store.keys import run_cache_key

if TYPE_CHECKING:
    from workbench.store.database import Store

SQLITE_MAGIC = b"SQLite format 3\x00"  # how every SQLite database file starts
_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

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


def damaged_message(path: Path, problem: str, found_by: str = "SQLite quick_check") -> str:
    """The one line that refuses a damaged store and says how to get the intact part back."""
    return (f"the run store {path} is damaged ({found_by}: {problem}); `workbench runs check --store {path}` "
            f"lists the damage and `workbench runs salvage --store {path} --out NEW.sqlite` copies what is intact "
            "into a new file; then set WORKBENCH_STORE=NEW.sqlite (or move it to the old path)")


def open_error_message(path: Path, exc: sqlite3.Error | OSError) -> str:
    """The one line for a store SQLite would not open: damage points to check and salvage, anything else to the path."""
    if isinstance(exc, sqlite3.Error) and looks_damaged(path, exc):
        return damaged_message(path, str(exc), found_by="SQLite")
    why = "it is not an SQLite database (it does not start like one)" if _not_sqlite(path) else str(exc)
    return f"cannot open the run store {path}: {why}; check the path or set WORKBENCH_STORE or WORKBENCH_HOME"


def looks_damaged(path: Path, exc: sqlite3.Error) -> bool:
    """Whether an SQLite error means a damaged SQLite file (rather than a wrong path or a file of another kind)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary not in _DAMAGE_CODES and "malformed" not in str(exc):
        return False
    return not _not_sqlite(path)


def table_list_problem(path: Path) -> str | None:
    """Why the store's table list (sqlite_schema) cannot be read, or None when it can; salvage needs it."""
    try:
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        db.execute("SELECT name, sql FROM sqlite_schema").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    return None


def unsalvageable_message(path: Path, problem: str) -> str:
    """The one line for a store whose table list is damaged: this tool cannot salvage it; SQLite's recover may."""
    if _not_sqlite(path):
        return f"{path} is not an SQLite database (it does not start like one); there is nothing to salvage"
    return (f"cannot salvage {path} (SQLite: {problem}): the table list itself is damaged; nothing can be salvaged "
            f"with this tool; try the sqlite3 command-line `.recover`: sqlite3 {path} .recover | sqlite3 NEW.sqlite")


def _not_sqlite(path: Path) -> bool:
    """A file that exists, is not empty and does not start like an SQLite database."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return False
    return bool(head) and head != SQLITE_MAGIC


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
    match their fields, and sample rows that reading skips (the one rule of `checks.sample_content`)."""
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
        unreadable = store.unreadable_rows(run_id)
        if unreadable:
            rows = f"{len(unreadable)} unreadable sample row{'s' if len(unreadable) != 1 else ''}"
            problems.append(f"run {run_id}: {rows} (skipped when read, drawn again when sampled): "
                            f"{_listed(unreadable)}")
    return problems


def _listed(unreadable: list[dict[str, object]], limit: int = 5) -> str:
    shown = "; ".join(f"sample {row['sample_index']}: {row['problem']}" for row in unreadable[:limit])
    return shown + (f"; {len(unreadable) - limit} more" if len(unreadable) > limit else "")
