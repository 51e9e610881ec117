"""Salvage: copy what is intact of a damaged store into a new store file.

Rows are read by rowid range from the table b-trees only (indexes may be the damaged part); a range
that raises is split down to single rows, and a row that still cannot be read is given up. Rows
whose parent did not survive (a sample whose run row was lost) are dropped and counted as lost.
A store that passes SQLite's integrity check is copied all the same (it was asked for), and the
report says salvage was not needed. A damaged table list leaves nothing to copy by table: salvage
refuses and points to the sqlite3 command line's `.recover`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import StoreError
from workbench.store.database import Store
from workbench.store.health import integrity_problems, table_list_problem, unsalvageable_message

# What salvage copies, parents before children.
SALVAGE_TABLES = ("environments", "runs", "samples", "run_events", "batches", "trees", "tree_nodes", "tree_scores",
                  "candidate_scores")
# Rows whose parent row did not survive: (table, SQL condition naming the orphans).
_ORPHANS = (
    ("samples", "run_id NOT IN (SELECT id FROM runs)"),
    ("run_events", "run_id NOT IN (SELECT id FROM runs)"),
    ("batches", "run_id NOT IN (SELECT id FROM runs)"),
    ("tree_nodes", "tree_id NOT IN (SELECT id FROM trees)"),
    ("tree_scores", "NOT EXISTS (SELECT 1 FROM tree_nodes n WHERE n.tree_id = tree_scores.tree_id "
                    "AND n.node_id = tree_scores.node_id)"),
)
_CHUNK = 256  # rowids read per query; a failing chunk is split down to single rows
_GIVE_UP_AFTER = 64  # chunks past the last readable row before an open-ended scan stops


@dataclass
class SalvageReport:
    """What `salvage` copied: rows per table, and rows it could not read (or whose parent was lost)."""

    source: Path
    target: Path
    copied: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    healthy: bool = False  # the source passed SQLite's integrity check: salvage was not needed

    def describe(self) -> str:
        """What happened, then one line per table that had rows."""
        lines = []
        if self.healthy:
            lines.append(f"{self.source} passed SQLite's integrity check: salvage was not needed (it copied "
                         "everything anyway; `workbench runs check` also checks the rows)")
        lines.append(f"salvaged {self.source} into {self.target}:")
        for table in SALVAGE_TABLES:
            copied, lost = self.copied.get(table, 0), self.lost.get(table, 0)
            if copied or lost:
                lines.append(f"  {table}: {copied} copied" + (f", {lost} lost" if lost else ""))
        if not any(self.copied.values()) and not any(self.lost.values()):
            lines.append("  nothing readable was found")
        return "\n".join(lines)


def salvage(source: Path, target: Path) -> SalvageReport:
    """Copy every readable row of a (damaged) store into a new store file, dropping rows whose parent was lost."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise StoreError(f"no store file at {source}")
    if target.exists():
        raise StoreError(f"{target} already exists; give salvage a new file name with --out")
    table_list_damage = table_list_problem(source)
    if table_list_damage is not None:
        raise StoreError(unsalvageable_message(source, table_list_damage))
    healthy = not integrity_problems(source)
    try:
        src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
        tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(unsalvageable_message(source, str(exc))) from None
    report = SalvageReport(source, target, healthy=healthy)
    try:
        with Store(target) as out:
            out.db.execute("PRAGMA foreign_keys = OFF")  # parents may be lost; orphans are removed below
            for table in SALVAGE_TABLES:
                if table in tables:
                    report.copied[table], report.lost[table] = _copy_table(src, out.db, table)
            out.db.execute("BEGIN IMMEDIATE")
            for table, orphan in _ORPHANS:
                dropped = out.db.execute(f"DELETE FROM {table} WHERE {orphan}").rowcount
                report.copied[table] = report.copied.get(table, 0) - dropped
                report.lost[table] = report.lost.get(table, 0) + dropped
            out.db.execute("UPDATE samples SET environment_id = NULL "
                           "WHERE environment_id NOT IN (SELECT id FROM environments)")
            out.db.execute("COMMIT")
            out.db.execute("PRAGMA foreign_keys = ON")
    finally:
        src.close()
    return report


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int, int]:
    """Copy the readable rows of one table (columns both stores have); returns (copied, lost)."""
    try:
        src_columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return 0, 0
    dst_columns = {r[1] for r in dst.execute(f"PRAGMA table_info({table})")}
    columns = [c for c in src_columns if c in dst_columns]
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
    insert = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
              "ON CONFLICT DO NOTHING")
    expected = _count(src, table)
    copied = failed = 0
    dst.execute("BEGIN IMMEDIATE")
    try:
        for rows, unreadable in _readable_chunks(src, table, select, expected):
            before = dst.total_changes
            dst.executemany(insert, [row[1:] for row in rows])
            copied += dst.total_changes - before
            failed += unreadable
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    lost = max(expected - copied, 0) if expected is not None else failed
    return copied, lost


def _readable_chunks(src: sqlite3.Connection, table: str, select: str,
                     expected: int | None) -> Iterator[tuple[list[tuple], int]]:
    """Rows (rowid first) by rowid range, with the count of rows that could not be read."""
    top = _max_rowid(src, table)
    if top is not None and expected is not None and top > 4 * expected + 10_000:
        top = None  # a damaged page can claim any rowid: scan until the rows run out instead
    start, quiet_chunks = 1, 0
    while (start <= top) if top is not None else (quiet_chunks < _GIVE_UP_AFTER):
        high = start + _CHUNK - 1 if top is None else min(start + _CHUNK - 1, top)
        rows, unreadable = _read_range(src, select, start, high)
        # A damaged page can end a range scan early without an error (a cell with a wrong rowid
        # looks past the range): ask for every rowid the scan did not return, one at a time.
        got = {row[0] for row in rows}
        for rowid in range(start, high + 1):
            if rowid not in got:
                found, bad = _read_range(src, select, rowid, rowid)
                rows += found
                unreadable += bad
        quiet_chunks = 0 if rows else quiet_chunks + 1
        yield rows, unreadable
        start += _CHUNK


def _read_range(src: sqlite3.Connection, select: str, low: int, high: int) -> tuple[list[tuple], int]:
    """The rows of a rowid range; a range that raises is split down to single rows, which are given up."""
    try:
        return src.execute(select, (low, high)).fetchall(), 0
    except sqlite3.DatabaseError:
        if low == high:
            return [], 1
    middle = (low + high) // 2
    first, bad_first = _read_range(src, select, low, middle)
    second, bad_second = _read_range(src, select, middle + 1, high)
    return first + second, bad_first + bad_second


def _max_rowid(src: sqlite3.Connection, table: str) -> int | None:
    try:
        return int(src.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return None


def _count(src: sqlite3.Connection, table: str) -> int | None:
    try:
        return int(src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return None
