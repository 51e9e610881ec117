"""Run bundles: a run with its environments and samples as Parquet, CSV (+ .run.json) or JSONL.

A bundle from a colleague is untrusted input: every problem is a StoreError naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import StoreError
from workbench.store.ids import new_id, utc_now
from workbench.store.records import SAMPLE_COLUMNS, RunRecord

if TYPE_CHECKING:
    import sqlite3

BUNDLE_FORMAT = "workbench-run-bundle/1"
EXPORT_FORMATS = ("parquet", "csv", "jsonl")

class BundleMixin:
    """Export and import of run bundles (mixed into Store, which supplies the database methods used here)."""

    db: sqlite3.Connection

    def export_run(self, run_id: str, path: str | Path, fmt: str | None = None) -> Path:
        """Write a run bundle (run, environments, samples) as Parquet, CSV (+ .run.json) or JSONL."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in EXPORT_FORMATS:
            raise StoreError(f"cannot export as {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
        run = self.run(run_id)
        raw = pd.read_sql_query(
            "SELECT * FROM samples WHERE run_id = ? ORDER BY sample_index", self.db, params=(run["id"],)
        )
        header = {
            "format": BUNDLE_FORMAT,
            "run": run,
            "environments": self.environments(raw["environment_id"].dropna()),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            with path.open("w") as out:
                out.write(json.dumps({"record": "header", **header}, ensure_ascii=False) + "\n")
                for record in raw.to_dict(orient="records"):
                    out.write(json.dumps({"record": "sample", **_clean(record)}, ensure_ascii=False) + "\n")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(raw, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            meta[b"workbench.bundle"] = json.dumps(header, ensure_ascii=False).encode()
            pq.write_table(table.replace_schema_metadata(meta), path)
        else:
            raw.to_csv(path, index=False)
            Path(str(path) + ".run.json").write_text(json.dumps(header, ensure_ascii=False, indent=2))
        return path

    def import_bundle(self, path: str | Path) -> tuple[str, int, int]:
        """Load an exported bundle; returns (run id, samples added, samples already present)."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no such bundle file: {path}")
        header, records = _read_bundle(path)
        if header.get("format") != BUNDLE_FORMAT or "run" not in header:
            raise StoreError(f"{path}: not a workbench run bundle (expected format {BUNDLE_FORMAT})")
        run = dict(header["run"])
        try:
            record = RunRecord(**{k: run[k] for k in RunRecord.__dataclass_fields__ if k in run})
        except TypeError as exc:
            raise StoreError(f"{path}: the run header is incomplete ({exc})") from None
        run_id = self.ensure_run(record)
        for env_id, info in (header.get("environments") or {}).items():
            self.db.execute(
                "INSERT INTO environments (id, info) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (env_id, json.dumps(info, sort_keys=True, separators=(",", ":"))),
            )
        rows = []
        for i, sample in enumerate(records):
            missing = {"sample_index", "text", "finish_reason"} - set(sample)
            if missing:
                raise StoreError(f"{path}: sample record {i + 1} lacks {', '.join(sorted(missing))}")
            values = {c: sample.get(c) for c in SAMPLE_COLUMNS}
            values["run_id"] = run_id
            values["id"] = values["id"] or new_id()
            values["created_at"] = values["created_at"] or utc_now()
            for name in ("sample_index", "prompt_tokens", "completion_tokens"):
                if not _is_missing(values[name]):
                    values[name] = int(values[name])  # CSV reads integers with gaps as floats
            rows.append(tuple(None if _is_missing(values[c]) else values[c] for c in SAMPLE_COLUMNS))
        added = self._insert_sample_rows(rows)
        return run_id, added, len(rows) - added

def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if _is_missing(value):
            out[key] = None
        elif hasattr(value, "item"):
            out[key] = value.item()  # numpy scalar -> Python
        else:
            out[key] = value
    return out


def _read_bundle(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if not lines or lines[0].get("record") != "header":
                raise StoreError(f"{path}: the first line must be the bundle header")
            header = lines[0]
            records = [{k: v for k, v in r.items() if k != "record"} for r in lines[1:]]
            return header, records
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            meta = (table.schema.metadata or {}).get(b"workbench.bundle")
            if meta is None:
                raise StoreError(f"{path}: Parquet file without workbench bundle metadata")
            return json.loads(meta), [_clean(r) for r in table.to_pandas().to_dict(orient="records")]
        if suffix == ".csv":
            sidecar = Path(str(path) + ".run.json")
            if not sidecar.is_file():
                raise StoreError(f"{path}: a CSV bundle needs its {sidecar.name} beside it")
            frame = pd.read_csv(path, dtype={"text": str, "stop_sequence": str}, keep_default_na=False,
                                na_values={c: [""] for c in SAMPLE_COLUMNS if c not in ("text",)})
            return json.loads(sidecar.read_text()), [_clean(r) for r in frame.to_dict(orient="records")]
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read the bundle ({exc})") from None
    raise StoreError(f"{path}: unknown bundle type; use .parquet, .csv or .jsonl")
