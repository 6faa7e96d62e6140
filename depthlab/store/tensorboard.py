"""A store already filled, as TensorBoard event files (``depthlab runs --store S --tensorboard
DIR``): one folder per run, named by its id, model, depth and lr, holding its epochs' scalars
(the same tags ``depthlab train --tensorboard`` writes live) and its config as text. Reading only:
the store is not changed; the folder must be new or empty, so no earlier export is mixed in."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..engine.callbacks import TensorBoardLog
from ..errors import ConfigError
from ..report.outputs import safe_child
from .sqlite import Store


def check_export_folder(folder: str | Path) -> Path:
    """The export folder, refused (one line, exit 2) when it is a file or already holds something."""
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(
            f"--tensorboard {folder}: {'is not a folder' if not path.is_dir() else 'is not empty'} "
            "(an export goes into a new or empty folder)"
        )
    return path


def run_folder_name(run_id: int, model: str, config: dict) -> str:
    """``00012-cnn-tanh-d9-lr0.1``: sorted by id, readable in TensorBoard's run list."""
    args = config.get("model_args") or {}
    parts = [f"{run_id:05d}", str(model)]
    if "depth" in args:
        parts.append(f"d{args['depth']}")
    if config.get("lr") is not None:
        parts.append(f"lr{config['lr']:g}")
    return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts))


def export_tensorboard(store: Store, folder: str | Path, *, status: str | None = None) -> int:
    """Write every run of ``store`` (of ``status`` if given) to ``folder``; returns how many."""
    root = check_export_folder(folder)
    rows = store.runs(status=status)
    for row in rows:
        board = TensorBoardLog(safe_child(root, run_folder_name(row.id, row.model, row.config)))
        try:
            for epoch in store.epochs(row.id):
                board.write_epoch(epoch)
            config = json.dumps(row.config, sort_keys=True)
            board.writer.add_text("config", f"status {row.status}\n\n    {config}")
        finally:
            board.close()
    return len(rows)
