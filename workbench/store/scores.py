"""Cached candidate scores (the forward passes behind exact distributions); mixed into Store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from workbench.store.ids import utc_now
from workbench.store.records import dumps

if TYPE_CHECKING:
    import sqlite3


class ScoresMixin:
    """Candidate scores by key (Store supplies `db`)."""

    db: sqlite3.Connection

    def cached_scores(self, key: str) -> dict[str, Any] | None:
        """The scores stored under `key`, or None; a damaged row counts as missing (it is scored again)."""
        row = self.db.execute("SELECT scores FROM candidate_scores WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except (ValueError, TypeError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def put_scores(self, key: str, model: str, scores: dict[str, Any]) -> None:
        """Store scores under `key` (a key already stored is replaced: the scores are the same by construction)."""
        self.db.execute("INSERT OR REPLACE INTO candidate_scores (key, model, scores, created_at) "
                        "VALUES (?, ?, ?, ?)", (key, model, dumps(scores), utc_now()))
