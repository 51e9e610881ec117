"""Branch trees in the store (Loom-style prompts expanded node by node); mixed into Store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.store.ids import utc_now
from workbench.store.records import dumps, loads

if TYPE_CHECKING:
    import sqlite3


class TreeMixin:
    """Trees, their nodes and other models' scores of their edges (Store supplies `db` and `_resolve_id`)."""

    db: sqlite3.Connection

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
