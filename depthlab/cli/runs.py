"""``depthlab runs``: list a store, snapshot it, or export it for TensorBoard. Its own module, so
that listing a store does not import torch (a frontier store's criterion errors still do)."""

from __future__ import annotations

import json

import click

from ..defaults import DEFAULT_PRECISION, DEFAULT_STORE
from ..errors import ConfigError
from ..records.record import RunStatus
from ..report.tables import format_table
from ..report.wording import percent
from .app import cli, require_tensorboard

MAX_LIMIT = 10**9  # runs --limit (SQLite's LIMIT takes a 64-bit integer)


@cli.command()
@click.option(
    "--store", "store_path", default=DEFAULT_STORE, show_default=True, help="The run store to list."
)
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most N runs, newest first.")
@click.option(
    "--status",
    default=None,
    help="Only runs with this status: done, diverged, failed, running, "
    "interrupted (running, but its process is gone).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON list on stdout (errors as fractions).")
@click.option(
    "--snapshot",
    "snapshot_path",
    default=None,
    metavar="DEST",
    help="Instead of listing, copy the store (even while a sweep writes it) and its "
    "checkpoints to DEST, a store a later sweep can continue from.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --snapshot: replace an existing DEST if it is a depthlab store "
    "(and the checkpoint files in DEST-checkpoints/); nothing else.",
)
@click.option(
    "--tensorboard",
    "tensorboard",
    default=None,
    metavar="DIR",
    help="Export the store for TensorBoard instead of listing it: one folder per run (of --status, if "
    "given) with its epochs' scalars; DIR must be new or empty.",
)
def runs(store_path, limit, status, as_json, snapshot_path, force, tensorboard):
    """List the runs in the store, newest first."""
    from ..store.snapshot import snapshot_store

    if tensorboard is not None:
        return _export_tensorboard(store_path, tensorboard, status, snapshot_path)

    if snapshot_path is not None:
        info = snapshot_store(store_path, snapshot_path, force=force)
        click.echo(
            f"{snapshot_path}: {info['runs']} run(s), {info['checkpoints']} checkpoint(s), "
            f"{info['bytes'] / 1e6:.1f} MB"
        )
        return
    _check_listing_flags(force, limit, status)
    rows, total, gone, done_epochs = _read_runs(store_path, limit, status)
    criteria = _criteria(rows)
    criteria = {k: v for k, v in criteria.items() if v is not None}
    if as_json:
        click.echo(json.dumps([_run_json(r, gone, done_epochs, criteria) for r in rows]))
        return
    _echo_runs_table(rows, gone, done_epochs, criteria)
    what = f" {status}" if status else ""
    click.echo(
        f"showing {len(rows)} of {total}{what} run(s) in {store_path}"
        + (f" (--limit {limit}; --limit N shows more)" if len(rows) < total else "")
    )


def _check_listing_flags(force: bool, limit: int | None, status: str | None) -> None:
    """Refuse a listing's bad flags (one line each): --force without --snapshot, an out-of-range
    --limit, an unknown --status."""
    from ..store.sqlite import FINISHED

    if force:
        raise ConfigError("--force only goes with --snapshot DEST")
    if limit is not None and not 0 < limit <= MAX_LIMIT:
        raise ConfigError(f"--limit must be positive and at most {MAX_LIMIT:,}, got {limit:,}")
    if status is not None and status not in (RunStatus.RUNNING, "interrupted", *FINISHED):
        raise ConfigError(
            f"unknown status {status!r}; choose one of: running, interrupted, {', '.join(FINISHED)}"
        )


def _read_runs(store_path: str, limit: int | None, status: str | None):
    """The runs to list (newest first, at most ``limit``), how many match ``status`` in all, the
    ids of runs whose process is gone (interrupted), and each listed run's stored epoch count."""
    from ..store.sqlite import Store

    with Store(store_path, reading=True) as store:
        gone = store.interrupted()
        if status in ("interrupted", RunStatus.RUNNING):
            rows = [
                r for r in store.runs(status=RunStatus.RUNNING) if (r.id in gone) == (status == "interrupted")
            ]
            total = len(rows)
            rows = rows[:limit]
        else:
            rows = store.runs(limit=limit, status=status)
            total = store.count(status)
        done_epochs = {r.id: len(store.epochs(r.id)) for r in rows}
    return rows, total, gone, done_epochs


def _shown_status(run, gone) -> str:
    """The status a listing shows: a running run whose process is gone is interrupted."""
    return "interrupted" if run.id in gone else str(run.status)


def _run_json(r, gone, done_epochs: dict, criteria: dict) -> dict:
    """One run of ``runs --json`` (errors as fractions)."""
    return {
        "id": r.id,
        "hash": r.config_hash,
        "kind": r.kind,
        "model": r.model,
        "dataset": r.dataset,
        "status": _shown_status(r, gone),
        "seconds": r.seconds,
        "epochs_done": done_epochs[r.id],
        "config": r.config,
        "result": r.result,
        **({"criterion_error": criteria[r.id][1]} if r.id in criteria else {}),
    }


def _echo_runs_table(rows, gone, done_epochs: dict, criteria: dict) -> None:
    """The listing's table, one row per run (nothing when there are no runs)."""
    table = []
    for r in rows:
        err = criteria[r.id][1] if r.id in criteria else r.result.get("test_error") if r.result else None
        planned = r.config.get("epochs")
        train_size = r.config.get("train_size")
        table.append(
            [
                r.id,
                r.config_hash,
                r.kind,
                r.model,
                r.config.get("model_args", {}).get("depth", ""),
                r.config.get("lr", ""),
                _precision(r.config),
                _shown_status(r, gone),
                f"{done_epochs[r.id]}/{planned}" if planned is not None else done_epochs[r.id],
                f"{train_size:,}" if isinstance(train_size, int) else "all",
                percent(err, 1 if r.id in criteria else 2) if isinstance(err, (int, float)) else "-",
                f"{r.seconds:.1f}" if r.seconds is not None else "-",
            ]
        )
    if table:
        click.echo(
            format_table(
                (
                    "id",
                    "hash",
                    "kind",
                    "model",
                    "depth",
                    "lr",
                    "precision",
                    "status",
                    "epochs",
                    "train size",
                    _error_header(criteria, len(rows)),
                    "seconds",
                ),
                table,
            )
        )


def _export_tensorboard(store_path: str, folder: str, status: str | None, snapshot_path: str | None) -> None:
    """``runs --tensorboard DIR``: every run as TensorBoard event files (`depthlab.store.tensorboard`)."""
    from ..store.sqlite import FINISHED, Store
    from ..store.tensorboard import check_export_folder, export_tensorboard

    if snapshot_path is not None:
        raise ConfigError("--tensorboard and --snapshot are two different commands: give one")
    if status is not None and status not in (RunStatus.RUNNING, *FINISHED):
        raise ConfigError(
            f"--tensorboard exports runs by stored status: one of running, {', '.join(FINISHED)}"
        )
    require_tensorboard(folder)
    check_export_folder(folder)
    with Store(store_path, reading=True, must_exist=True) as store:
        count = export_tensorboard(store, folder, status=status)
    click.echo(f"exported {count} run(s) of {store_path} to {folder}/ (tensorboard --logdir {folder})")


def _precision(config: dict) -> str:
    """The run's precision; a run stored before precisions were recorded ran at the default."""
    if "precision" in config:
        return config["precision"]
    return DEFAULT_PRECISION


def _criteria(rows) -> dict:
    """Each frontier trial's criterion error (`frontier.criterion`, imported only when there is one)."""
    frontier = [r for r in rows if r.kind == "frontier"]
    if not frontier:
        return {}
    from ..depth_frontier.criterion import recorded_criterion_error

    return {r.id: recorded_criterion_error(r.config, r.result) for r in frontier}


def _error_header(criteria: dict, rows: int) -> str:
    """The error column's header: a frontier trial shows its criterion error (the error at the
    evaluation point that decided it, as its frontier line and tables do), others their final
    test error; with both, the header says which is which."""
    names = sorted({name for name, _ in criteria.values()})
    criterion = f"criterion error ({'/'.join(names)})" if names else ""
    if not criteria:
        return "final test error"
    return criterion if len(criteria) == rows else f"error: frontier {criterion}, else final test"
