"""The run store: SQLite with append-only migrations, every sample committed as soon as it exists,
run bundles to share runs with colleagues (verified on import, trusted only when the user says so),
and a health check on open with salvage for a damaged file."""

from workbench.store.bundles import BUNDLE_FORMAT, EXPORT_FORMATS, ImportResult
from workbench.store.database import BUSY_TIMEOUT_MS, Store, open_store, skipped_note
from workbench.store.ids import new_id, utc_now
from workbench.store.records import RunRecord

__all__ = ["BUNDLE_FORMAT", "BUSY_TIMEOUT_MS", "EXPORT_FORMATS", "ImportResult", "RunRecord", "Store", "new_id",
           "open_store", "skipped_note", "utc_now"]
