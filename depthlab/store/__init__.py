"""The SQLite run store: every run's config, status, epochs and result."""

from .sqlite import FINISHED, RunRow, Store, check_store_path, checkpoint_dir_for, snapshot_store


__all__ = ["FINISHED", "RunRow", "Store", "check_store_path", "checkpoint_dir_for", "snapshot_store"]
