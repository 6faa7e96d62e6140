"""Core commands: train, runs, summary, models."""

from __future__ import annotations

import json
import sys

import click

from ..engine.device import DEFAULT_PRECISION
from ..errors import ConfigError
from ..records.record import RunStatus
from ..report import classic_line
from .app import cli, log, open_store, progress_to_stderr, require_tensorboard, tensorboard_writer
from .app import progress as progress_log
from .options import data_options, model_options, run_options, train_options


@cli.command()
@click.argument("model", required=False)
@model_options(model_file=True)
@data_options
@run_options
@train_options("epochs", "lr", "momentum", "nesterov", "batch_size", "optimizer", "weight_decay", "schedule",
               "patience", "augment", "compile")
@click.option("--val", "use_val", is_flag=True, help="Evaluate on a 10% validation split; test once at the end.")
@click.option("--rerun", is_flag=True, help="Train even if this exact config already finished in the store.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch (default: torch's). 1 is fastest on a busy machine; see BENCHMARKS.md.")
def train(model, model_opts, data_opts, run, hp, use_val, rerun, threads):
    """Train one MODEL and record it in the store."""
    from ..data.registry import load_dataset
    from ..engine.config import TrainConfig
    from ..report import check_output_dir
    from ..store.sqlite import check_store_path
    from ..sweep.runner import run_recorded

    model = model_opts.model(model, data_opts.dataset)
    config = TrainConfig(model=model, model_args=model_opts.overrides(), dataset=data_opts.dataset_for(model),
                         train_size=data_opts.train_size, eval_split="val" if use_val else "test", **hp.fields(),
                         seed=run.seed, device=run.device, precision=run.precision)
    config.validate()
    store_path, out, as_json, tensorboard = run.store_path, run.out, run.as_json, run.tensorboard
    if threads is not None and threads <= 0:
        raise ConfigError(f"--threads must be a positive integer, got {threads}")
    if out:
        check_output_dir(out)
    check_store_path(store_path)
    require_tensorboard(tensorboard)
    data = load_dataset(config.dataset, data_opts.data_dir)
    writer = tensorboard_writer(tensorboard)
    label = "Val" if use_val else "Test"
    epochs = config.epochs
    progress = _Progress(enabled=sys.stderr.isatty() and not as_json)
    progress_to_stderr(as_json)

    def on_epoch(m):
        progress.clear()
        progress_log.info(classic_line(m.epoch, epochs, m.train_error, m.test_error, label))
        if writer is not None:
            for key in ("train_error", "test_error", "loss", "lr"):
                writer.add_scalar(key, getattr(m, key), m.epoch)

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with open_store(store_path) as store:
        record = run_recorded(config, store, data, on_epoch=on_epoch, reuse=not rerun, on_step=progress.step)
    result = {**record.to_dict(), "reused": record.reused}  # the record as the JSON it is shown and saved as
    progress.clear()
    if writer is not None:
        writer.close()
    if result.get("reused"):
        log.info(f"(already in {store_path}: shown from the store; --rerun trains again)")
        if not as_json:
            for e in result["epochs"]:
                click.echo(classic_line(e["epoch"], epochs, e["train_error"], e["test_error"], label))
    summary = {k: result[k] for k in ("config", "status", "epochs", "seconds", "reason", "test_error")}
    if out:
        from ..report import safe_child, safe_output_dir, write_text_atomic

        folder = safe_output_dir(out)
        name = f"train-{config.model_name}-{config.hash()}.json"
        write_text_atomic(safe_child(folder, name), json.dumps(summary, indent=2))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        status = result["status"]
        tail = f" ({result['reason']})" if result.get("reason") and status != RunStatus.DONE else ""
        test = f", test error {100 * result['test_error']:.2f}%" if result.get("test_error") is not None else ""
        click.echo(f"{status} in {result['seconds']:.1f}s{test}{tail}")
    if result["status"] == RunStatus.FAILED:
        sys.exit(1)


class _Progress:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.shown = False

    def step(self, step: int, total: int) -> None:
        if self.enabled and (step % 5 == 0 or step == total):
            width = 30
            done = int(width * step / total)
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total}")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()
            self.shown = False


@cli.command()
@click.option("--store", "store_path", default="depthlab.db", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--snapshot", "snapshot_path", default=None, metavar="DEST",
              help="Instead of listing, copy the store (even while a sweep writes it) and its "
                   "checkpoints to DEST, a store a later sweep can continue from.")
@click.option("--force", is_flag=True, help="With --snapshot: replace an existing DEST if it is a depthlab store "
                                              "(and the checkpoint files in DEST-checkpoints/); nothing else.")
def runs(store_path, limit, status, as_json, snapshot_path, force):
    """List the runs in the store, newest first."""
    from ..store.snapshot import snapshot_store
    from ..store.sqlite import FINISHED, Store

    if snapshot_path is not None:
        info = snapshot_store(store_path, snapshot_path, force=force)
        click.echo(f"{snapshot_path}: {info['runs']} run(s), {info['checkpoints']} checkpoint(s), "
                   f"{info['bytes'] / 1e6:.1f} MB")
        return
    if force:
        raise ConfigError("--force only goes with --snapshot DEST")
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    if status is not None and status not in (RunStatus.RUNNING, *FINISHED):
        raise ConfigError(f"unknown status {status!r}; choose one of: running, {', '.join(FINISHED)}")
    with Store(store_path, reading=True) as store:
        rows = store.runs(limit=limit, status=status)
    if as_json:
        click.echo(json.dumps([{"id": r.id, "hash": r.config_hash, "kind": r.kind, "model": r.model,
                                "dataset": r.dataset, "status": r.status, "seconds": r.seconds,
                                "config": r.config, "result": r.result} for r in rows]))
        return
    click.echo(f"{'id':>5}  {'hash':16}  {'kind':9} {'model':18} {'depth':>5} {'lr':>8} {'precision':9} {'status':9} "
               f"{'test err':>8} {'seconds':>8}")
    for r in rows:
        depth = r.config.get("model_args", {}).get("depth", "")
        err = r.result.get("test_error") if r.result else None
        err_s = f"{100 * err:.2f}%" if isinstance(err, (int, float)) else "-"
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
        click.echo(f"{r.id:>5}  {r.config_hash:16}  {r.kind:9} {r.model:18} {str(depth):>5} "
                   f"{r.config.get('lr', ''):>8} {r.config.get('precision', DEFAULT_PRECISION):9} {r.status:9} "
                   f"{err_s:>8} {secs:>8}")
    click.echo(f"{len(rows)} run(s) in {store_path}")


@cli.command()
@click.argument("model", required=False)
@model_options(model_file=True)
@data_options(train_size=False, data_dir=False)
def summary(model, model_opts, data_opts):
    """Print a layer table and the parameter count of MODEL."""
    from ..data.registry import check_dataset_name
    from ..models import count_parameters, create_model, layer_summary

    model = model_opts.model(model, data_opts.dataset)
    overrides = model_opts.overrides()
    if not isinstance(model, str):   # a factory: at its smallest depth unless --depth says otherwise
        overrides.setdefault("depth", model.depth_step)
    info = check_dataset_name(data_opts.dataset_for(model))
    net = create_model(model, info.input_shape, 10, **overrides)
    rows = layer_summary(net, info.input_shape)
    click.echo(f"{'Layer':28} {'Type':12} {'Output shape':18} {'Param #':>10}")
    click.echo("-" * 72)
    for name, kind, shape, n in rows:
        click.echo(f"{name:28} {kind:12} {str(list(shape)):18} {n:>10,}")
    click.echo("-" * 72)
    click.echo(f"Total parameters: {count_parameters(net):,}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """List model families, presets and the axes they take."""
    import dataclasses

    from ..models import FAMILIES, PRESETS

    if as_json:
        click.echo(json.dumps({
            "families": {n: {"parameters": {f.name: f.default for f in dataclasses.fields(fam.spec_cls)},
                             "datasets": list(fam.datasets), "description": fam.description}
                         for n, fam in FAMILIES.items()},
            "presets": {n: {"family": p.family, "values": p.values, "description": p.description}
                        for n, p in PRESETS.items()}}))
        return
    for name, fam in FAMILIES.items():
        fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(fam.spec_cls))
        click.echo(f"family {name}: {fam.description}\n  parameters: {fields}\n  datasets: {', '.join(fam.datasets)}")
    click.echo("presets:")
    for name, p in PRESETS.items():
        if name in FAMILIES:
            continue
        values = ", ".join(f"{k}={v}" for k, v in p.values.items())
        click.echo(f"  {name:20} {p.family:8} {values:45} {p.description}")
    click.echo("axes (stages): act tanh|elu|relu; init normal:S|scaled:W2,B2|lecun-in|lecun-out|glorot|he|"
               "orthogonal|torch-default|delta-orthogonal[:W2,B2|:critical]|critical; norm none|bn; "
               "skip none|post|rezero|fixup; heads 1|3; width >0")


