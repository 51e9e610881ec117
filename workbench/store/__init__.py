"""The run store: SQLite with append-only migrations, every sample committed as soon as it exists,
and run bundles to share runs with colleagues."""

from workbench.store.bundles import BUNDLE_FORMAT, EXPORT_FORMATS
from workbench.store.database import BUSY_TIMEOUT_MS, Store, open_store
from workbench.store.ids import new_id, utc_now
from workbench.store.records import RunRecord

__all__ = ["BUNDLE_FORMAT", "BUSY_TIMEOUT_MS", "EXPORT_FORMATS", "RunRecord", "Store", "new_id", "open_store",
           "utc_now"]
