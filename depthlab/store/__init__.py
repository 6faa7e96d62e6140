"""The SQLite run store: every run's config, status, epochs and result."""

from .snapshot import snapshot_store
from .sqlite import FINISHED, RunRow, Store, check_store_path, checkpoint_dir_for

__all__ = ["FINISHED", "RunRow", "Store", "check_store_path", "checkpoint_dir_for", "snapshot_store"]
