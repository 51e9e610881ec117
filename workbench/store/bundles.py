"""Run bundles: a run with its environments and samples as Parquet, CSV (+ .run.json) or JSONL.

A bundle from a colleague is untrusted input. Import verifies before it writes anything: the run's
cache key is recomputed from its fields, every row is checked (store/checks.py), and the header's
and rows' content hashes name what changed after export. A bundle imports in one transaction, all
or nothing, as its own run: identity in the store is (cache key, origin), so an import never merges
into a run drawn here, and it answers cache lookups only when the user trusts it (`trust=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import StoreError
from workbench.store.bundle_files import read_bundle, write_bundle
from workbench.store.checks import (
    JSON_FIELDS,
    RowProblem,
    bundle_error,
    check_run_fields,
    check_sample,
    header_hash,
    origin_of,
    row_hash,
    strict_dumps,
)
from workbench.store.ids import new_id, utc_now
from workbench.store.keys import run_cache_key
from workbench.store.records import JSON_RUN_COLUMNS, SAMPLE_COLUMNS, dumps

if TYPE_CHECKING:
    import sqlite3

BUNDLE_FORMAT = "workbench-run-bundle/2"  # /2: content hashes per row and for the header
OLD_BUNDLE_FORMATS = ("workbench-run-bundle/1",)
EXPORT_FORMATS = ("parquet", "csv", "jsonl")
# Store-side run columns a bundle never carries: where a run came from is decided by the importer.
_LOCAL_RUN_COLUMNS = ("origin", "trusted", "imported_from")
_RUN_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@dataclass
class ImportResult:
    """What `import_bundle` did and verified."""

    run_id: str
    origin: str
    trusted: bool
    added: int  # rows written
    present: int  # rows whose index the run already had
    differing: int = 0  # of those, rows whose content differs from the stored row (the stored one is kept)
    verified: list[str] = field(default_factory=list)  # what was checked, one phrase each
    local_run_id: str | None = None  # the run drawn here with the same cache key, if any
    answering_run_id: str | None = None  # the run that answers `sample` for this cache key, if any
    newly_trusted: bool = False  # an untrusted import of the same origin became trusted


class BundleMixin:
    """Export and import of run bundles (mixed into Store, which supplies the database methods used here)."""

    db: sqlite3.Connection

    def export_run(self, run_id: str, path: str | Path, fmt: str | None = None,
                   left_out: list[str] | None = None) -> Path:
        """Write a run bundle (run, environments, samples with content hashes) as Parquet, CSV or JSONL.

        Rows that reading skips (the one rule of `checks.sample_content`, which `runs check` reports too)
        are left out, and described in `left_out` when a list is given; numbers JSON cannot hold (NaN,
        infinities) are written as null.
        """
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in EXPORT_FORMATS:
            raise StoreError(f"cannot export as {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
        run = self.run(run_id)
        fields = {k: v for k, v in run.items() if k not in _LOCAL_RUN_COLUMNS}
        cursor = self.db.execute("SELECT * FROM samples WHERE run_id = ? ORDER BY sample_index", (run["id"],))
        names = [d[0] for d in cursor.description]
        records = []
        for row in cursor:
            stored = dict(zip(names, row, strict=True))
            try:
                content = check_sample(stored)
            except RowProblem as exc:
                if left_out is not None:
                    left_out.append(f"sample {stored['sample_index']!r}: {exc}")
                continue
            records.append({**{k: dumps(v) if k in JSON_FIELDS else v for k, v in content.items()},
                            "row_sha256": row_hash(content)})
        environments = self.environments(r["environment_id"] for r in records)
        header = {
            "format": BUNDLE_FORMAT,
            "run": fields,
            "environments": environments,
            "exported_from": run.get("origin", "local"),
            "n_samples": len(records),
            "header_sha256": header_hash(fields, environments),
        }
        write_bundle(path, fmt, header, records)
        return path

    def import_bundle(self, path: str | Path, trust: bool = False) -> ImportResult:
        """Verify a bundle and load it as its own run (origin `bundle:<hash>`), all or nothing.

        With `trust=True` the run answers cache lookups (`sample` reuses it) where no local run of
        the same key exists; without, it is there to read, compare and plot. Importing the same
        run again merges new sample indices into it.
        """
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no such bundle file: {path}")
        header, located = read_bundle(path)
        run, environments, verified = _check_header(path, header)
        rows = self._checked_rows(path, header, located, environments, verified)
        origin = origin_of(run)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = self._write_import(path, run, origin, trust, environments, rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        result.verified = verified
        result.local_run_id = self.local_run(run["cache_key"])
        result.answering_run_id = self.find_run(run["cache_key"])
        return result

    def _checked_rows(self, path: Path, header: dict[str, Any], located: list[tuple[str, dict[str, Any]]],
                      environments: dict[str, Any], verified: list[str]) -> list[tuple[dict[str, Any], str]]:
        """Every sample row checked (and its hash compared) before anything is written."""
        hashed = header["format"] == BUNDLE_FORMAT
        if hashed and header.get("n_samples") != len(located):
            raise bundle_error(path, "header", f"says {header.get('n_samples')!r} samples but the file has "
                                               f"{len(located)} (it was cut short or edited)")
        known_environments = set(environments) | {r[0] for r in self.db.execute("SELECT id FROM environments")}
        rows, seen = [], set()
        for where, record in located:
            try:
                content = check_sample(record)
            except RowProblem as exc:
                index = record.get("sample_index")
                if exc.field != "sample_index" and isinstance(index, int) and not isinstance(index, bool):
                    where += f" (sample {index})"
                raise bundle_error(path, where, exc) from None
            index = content["sample_index"]
            if index in seen:
                raise bundle_error(path, f"{where} (sample {index})", "repeats a sample index")
            seen.add(index)
            digest = row_hash(content)
            if hashed and record.get("row_sha256") != digest:
                raise bundle_error(path, f"{where} (sample {index})", "was changed after export (its row_sha256 "
                                                                       "does not match its content)")
            env = content["environment_id"]
            if env is not None and env not in known_environments:
                raise bundle_error(path, f"{where} (sample {index})",
                                   f"environment_id {env!r} is not described in the bundle header")
            rows.append((content, digest))
        verified.append(f"{len(rows)} rows checked" + (" against their content hashes" if hashed else ""))
        return rows

    def _write_import(self, path: Path, run: dict[str, Any], origin: str, trust: bool,
                      environments: dict[str, Any], rows: list[tuple[dict[str, Any], str]]) -> ImportResult:
        """Inside the import's transaction: the run row (found or made), environments, samples."""
        found = self.db.execute("SELECT id, trusted FROM runs WHERE cache_key = ? AND origin = ?",
                                (run["cache_key"], origin)).fetchone()
        newly_trusted = False
        if found is None:
            run_id = self._insert_imported_run(path, run, origin, trust)
            trusted = trust
        else:
            run_id, trusted = found[0], bool(found[1])
            if trusted and not trust:
                raise StoreError(f"{path}: run {run_id} of this origin ({origin}) was imported with --trust; "
                                 "adding samples to it needs --trust too; nothing was imported")
            if trust and not trusted:
                self.db.execute("UPDATE runs SET trusted = 1 WHERE id = ?", (run_id,))
                trusted = newly_trusted = True
        for env_id, info in environments.items():
            self.db.execute("INSERT INTO environments (id, info) VALUES (?, ?) ON CONFLICT DO NOTHING",
                            (env_id, strict_dumps(info, sort_keys=True, separators=(",", ":"))))
        stored = self._stored_hashes(run_id)
        differing = sum(1 for content, digest in rows
                        if content["sample_index"] in stored and stored[content["sample_index"]] != digest)
        now = utc_now()
        values = [
            tuple({**{k: dumps(v) if k in JSON_FIELDS else v for k, v in content.items()}, "id": new_id(),
                   "run_id": run_id, "created_at": content["created_at"] or now}[c] for c in SAMPLE_COLUMNS)
            for content, _ in rows
        ]
        added = self._insert_sample_rows(values, transaction=False)
        return ImportResult(run_id, origin, trusted, added, len(rows) - added, differing,
                            newly_trusted=newly_trusted)

    def _insert_imported_run(self, path: Path, run: dict[str, Any], origin: str, trust: bool) -> str:
        """A new run row for an import; it keeps the exporter's run id when that id is free here."""
        run_id = run.get("id")
        if not (isinstance(run_id, str) and _RUN_ID.match(run_id)) or self.db.execute(
                "SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            run_id = new_id()
        row = {
            "id": run_id, "cache_key": run["cache_key"], "created_at": run.get("created_at") or utc_now(),
            "model": run["model"], "model_identity": run["model_identity"], "model_kind": run.get("model_kind"),
            "model_family": run.get("model_family"), "backend": run["backend"], "endpoint": run.get("endpoint"),
            "dtype": run.get("dtype"), "input_mode": run["input_mode"], "input_text": run.get("input_text"),
            "input_messages": run.get("input_messages"), "template": run["template"],
            "prompt_ref": run.get("prompt_ref"), "config": run["config"], "seed": run["seed"],
            "tags": run.get("tags") or [], "origin": origin, "trusted": int(trust),
            "imported_from": "".join(c if c.isprintable() else "?" for c in path.name),
        }
        for name in JSON_RUN_COLUMNS:
            row[name] = strict_dumps(row[name], separators=(",", ":")) if row[name] is not None else None
        self.db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                        tuple(row.values()))
        return run_id

    def _stored_hashes(self, run_id: str) -> dict[int, str]:
        """Content hashes of a run's stored, readable rows by sample index."""
        cursor = self.db.execute("SELECT * FROM samples WHERE run_id = ?", (run_id,))
        names = [d[0] for d in cursor.description]
        hashes = {}
        for row in cursor:
            try:
                content = check_sample(dict(zip(names, row, strict=True)))
            except RowProblem:
                continue
            hashes[content["sample_index"]] = row_hash(content)
        return hashes


def _check_header(path: Path, header: Any) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The header's run fields and environments, checked; what was verified, one phrase each."""
    if not isinstance(header, dict):
        raise bundle_error(path, "header", "must be a JSON object")
    fmt = header.get("format")
    if fmt not in (BUNDLE_FORMAT, *OLD_BUNDLE_FORMATS):
        raise StoreError(f"{path}: not a workbench run bundle (format {fmt!r}; expected {BUNDLE_FORMAT})")
    run, environments = header.get("run"), header.get("environments") or {}
    if not isinstance(run, dict):
        raise bundle_error(path, "header", "has no run object")
    if not isinstance(environments, dict) or not all(isinstance(v, dict) for v in environments.values()):
        raise bundle_error(path, "header", "environments must map ids to JSON objects")
    run = {k: v for k, v in run.items() if k not in _LOCAL_RUN_COLUMNS}
    verified = []
    if fmt == BUNDLE_FORMAT:
        if header.get("header_sha256") != header_hash(run, environments):
            raise bundle_error(path, "header", "was changed after export (header_sha256 does not match)")
        verified.append("header hash")
    else:
        verified.append(f"no content hashes ({fmt} bundle: changes after export cannot be detected)")
    try:
        check_run_fields(run)
        key = run_cache_key(run)
    except (RowProblem, StoreError) as exc:
        raise bundle_error(path, "header run field", exc) from None
    if key != run["cache_key"]:
        raise bundle_error(path, "header", "the run's cache_key does not match its model identity, input, config "
                                           "and seed (edited, or made by an incompatible version)")
    verified.insert(0, "cache key recomputed from the run's fields")
    return run, environments, verified
