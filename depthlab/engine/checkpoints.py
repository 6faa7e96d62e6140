"""Resumable checkpoints: written atomically at every epoch and evaluation point, loaded with
``weights_only=True``, and read back (read-only) to show a sweep's trials in flight."""

from __future__ import annotations

import glob
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import DataError
from ..records.record import EvaluationPoint, Monitor, StopReason, stop_reason
from ..report.outputs import safe_child

if TYPE_CHECKING:
    from .config import TrainConfig


# Version 2 added saves inside an epoch ("mid_epoch"). Version-1 files (epoch ends only) still
# load; code that only knows version 1 discards version-2 files instead of resuming them wrongly.
CHECKPOINT_FORMAT = "depthlab-train-state-2"


def _readable_format(found, fmt: str) -> bool:
    """Whether a checkpoint of format ``found`` loads as ``fmt`` ("name-version"): the same
    name at the same or an earlier version (each version only adds keys)."""
    if not isinstance(found, str):
        return False
    name, _, version = fmt.rpartition("-")
    found_name, _, found_version = found.rpartition("-")
    return (
        found_name == name
        and found_version.isdigit()
        and version.isdigit()
        and int(found_version) <= int(version)
    )


def save_checkpoint(path, state: dict, *, required: bool = True) -> None:
    """Write ``state`` with ``torch.save`` to a temp file in the same folder, then rename it over
    ``path``: a run killed mid-write leaves the previous checkpoint intact, never half a file.
    Not ``required`` (a sweep's checkpoints, which only save time), a write that fails (disk
    full, folder not writable) prints a warning and the run goes on."""
    tmp = None
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if required or not isinstance(exc, (OSError, RuntimeError)):
            raise
        print(
            f"depthlab: warning: checkpoint {path} not written ({type(exc).__name__}: {exc}); "
            "the run goes on without it",
            file=sys.stderr,
        )


def discard_checkpoint(path) -> None:
    """Delete a checkpoint and any temp file a run killed mid-write left beside it."""
    for name in [path, *glob.glob(glob.escape(os.fspath(path)) + "*.tmp")]:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def load_checkpoint(path, fmt: str = CHECKPOINT_FORMAT) -> dict:
    """Load a training checkpoint of format ``fmt`` (tensors and plain containers only:
    ``weights_only=True``); an unreadable or foreign file raises `DataError` with one clear line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"checkpoint {path} is corrupted or not a depthlab checkpoint "
            f"({type(exc).__name__}); delete it or run without --resume"
        ) from None
    if not isinstance(state, dict) or not _readable_format(state.get("format"), fmt):
        raise DataError(
            f"checkpoint {path} is not a depthlab training checkpoint; delete it or run without --resume"
        )
    return state


def checkpoint_resumable(
    path, fmt: str, config_hashes: Sequence[str], monitors: Sequence[Monitor | None]
) -> bool:
    """Whether a sweep may continue from ``path``: a readable checkpoint of format ``fmt``, of
    exactly these configs, whose runs' stopping decisions ``monitors`` (one per config) would
    all have made too, for the same reasons (`StopReason`). Criteria are not part of a config's
    hash, so a checkpoint made under another threshold or plateau rule (a run it stopped, or one it
    let go on) must not be continued."""
    try:
        state = load_checkpoint(path, fmt)
    except DataError:
        return False
    if list(state.get("config_hashes", [state.get("config_hash")])) != list(config_hashes):
        return False
    runs = state["members"] if "members" in state else [state]
    for run, monitor in zip(runs, monitors):
        points = [EvaluationPoint(**c) for c in run.get("checkpoints", [])]
        decisions = [stop_reason(monitor(p)) if monitor is not None else None for p in points]
        reason = StopReason(run["reason"]) if run.get("reason") in set(StopReason) else None
        if decisions != [None] * (len(points) - (reason is not None)) + (
            [reason] if reason is not None else []
        ):
            return False
    return True


def checkpoint_file(folder, config: TrainConfig) -> Path | None:
    """Where a config's training state is saved after each epoch (one file per config hash)."""
    return None if folder is None else safe_child(Path(folder), f"{config.model_name}-{config.hash()}.pt")


def resume_point(path, config_hash: str) -> float | None:
    """The epochs (1.4: one and 40% of the next) a single run of ``config_hash`` continues from
    the checkpoint at ``path``; None when there is none to continue. A file that cannot be
    continued (corrupted, of another config) is deleted: it would only fail the run."""
    if path is None or not os.path.exists(path):
        return None
    progress = checkpoint_progress(path)
    if progress is None or not checkpoint_resumable(path, CHECKPOINT_FORMAT, [config_hash], [None]):
        discard_checkpoint(path)
        return None
    return progress[0]


def saved_epochs(folder) -> dict[str, float]:
    """For each config hash with a checkpoint in ``folder`` (a sweep's trials in flight: the
    ``checkpoint_dir`` of `depthlab.sweep.TrialRunner`), the epochs it has saved (1.4: one
    epoch and 40% of the next, saved at an evaluation point); files that cannot be read are
    skipped. Read-only: safe while the sweep runs."""
    found: dict[str, float] = {}
    if not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        if name.endswith(".pt"):
            progress = checkpoint_progress(os.path.join(folder, name))
            if progress is not None:
                for key in progress[1]:
                    found[key] = progress[0]
    return found


def checkpoint_progress(path) -> tuple[float, list[str]] | None:
    """The epochs a checkpoint has saved (1.4: one epoch and 40% of the next) and the config
    hashes it is of; None for a file that cannot be read (being replaced, or not ours)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not (isinstance(state, dict) and isinstance(state.get("epoch"), int)):
        return None
    epochs: float = state["epoch"]
    mid = state.get("mid_epoch")
    if isinstance(mid, dict) and isinstance(mid.get("step"), int) and isinstance(mid.get("steps"), int):
        epochs = (
            math.floor(100 * (epochs + mid["step"] / max(mid["steps"], 1))) / 100
        )  # never a whole epoch early
    return epochs, [k for k in state.get("config_hashes") or [state.get("config_hash")] if isinstance(k, str)]
