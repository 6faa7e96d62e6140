"""Core commands: train, summary."""

from __future__ import annotations

import json
import sys

import click

from ..errors import ConfigError
from ..records.record import RunStatus
from ..report.wording import classic_line
from .app import (
    cli,
    create_output_folder,
    log,
    open_store,
    output_folder,
    progress_to_stderr,
    require_tensorboard,
    tensorboard_log,
)
from .app import progress as progress_log
from .options import data_options, model_options, run_options, train_options


@cli.command()
@click.argument("model", required=False)
@model_options(model_file=True)
@data_options
@run_options
@train_options(
    "epochs",
    "lr",
    "momentum",
    "nesterov",
    "batch_size",
    "optimizer",
    "weight_decay",
    "schedule",
    "patience",
    "augment",
    "compile",
)
@click.option(
    "--val", "use_val", is_flag=True, help="Evaluate on a 10% validation split; test once at the end."
)
@click.option("--rerun", is_flag=True, help="Train even if this exact config already finished in the store.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch (default: torch's, 1 to 256). Recorded: the result depends on it bitwise; "
    "sweeps run on 1 (their --threads).",
)
def train(model, model_opts, data_opts, run, hp, use_val, rerun, threads):
    """Train one MODEL and record it in the store. Every epoch is checkpointed beside the store
    (STORE-checkpoints/): the same command after an interruption (Ctrl-C, kill) resumes from
    the last saved epoch, with the result of an uninterrupted run."""
    from ..api import train as train_and_record
    from ..data.registry import load_dataset
    from ..engine.callbacks import LambdaCallback
    from ..store.sqlite import check_store_path

    config = _train_config(model, model_opts, data_opts, run, hp, use_val, threads)
    store_path, out, as_json, tensorboard = run.store_path, run.out, run.as_json, run.tensorboard
    if out:
        output_folder(out, store_path)
    check_store_path(store_path)
    require_tensorboard(tensorboard)
    data = load_dataset(config.dataset, data_opts.data_dir)
    check_train_size(config.train_size, data)
    board = tensorboard_log(tensorboard)
    label = "Val" if use_val else "Test"
    epochs = config.epochs
    bar = sys.stderr.isatty() and not as_json  # the API's tqdm bar, on stderr, only on a terminal
    progress_to_stderr(as_json)

    def epoch_line(loop, index, m):
        with _outside_bar():
            progress_log.info(classic_line(m.epoch, epochs, m.train_error, m.test_error, label))

    callbacks = [LambdaCallback(on_epoch_metrics=epoch_line), *([board] if board is not None else [])]
    with open_store(store_path) as store:  # checkpointed every epoch: the same command resumes
        record = train_and_record(
            config, data, store=store, progress=bar, reuse=not rerun, callbacks=callbacks
        )
    result = {**record.to_dict(), "reused": record.reused}  # the record as the JSON it is shown and saved as
    if board is not None:
        board.close()
    if result.get("reused"):
        log.info(f"(already in {store_path}: shown from the store; --rerun trains again)")
        if not as_json:
            for e in result["epochs"]:
                click.echo(classic_line(e["epoch"], epochs, e["train_error"], e["test_error"], label))
    summary = {k: result[k] for k in ("config", "status", "epochs", "seconds", "reason", "test_error")}
    if out:
        _save_summary(out, config, summary)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_outcome(result, config.patience, label)
    if result["status"] == RunStatus.FAILED:
        sys.exit(1)


def _train_config(model, model_opts, data_opts, run, hp, use_val: bool, threads: int | None):
    """The `TrainConfig` the options describe, validated, its schedule checked against ``--lr``
    and ``--epochs``, and its threads pinned (every core, recorded: part of the run's identity,
    as `depthlab.train` does)."""
    from ..api import pinned_threads
    from ..engine.config import TrainConfig

    model = model_opts.model(model, data_opts.dataset)
    config = TrainConfig(
        model=model,
        model_args=model_opts.overrides(),
        dataset=data_opts.dataset_for(model),
        train_size=data_opts.train_size,
        eval_split="val" if use_val else "test",
        **hp.fields(),
        seed=run.seed,
        device=run.device,
        precision=run.precision,
        threads=threads,
    )
    config.validate()
    check_schedule(config, lr_given=_given("lr"))
    return pinned_threads(config)


def _save_summary(out, config, summary: dict) -> None:
    """``--out``: the run's summary as ``train-MODEL-HASH.json`` in the output folder."""
    from ..report.outputs import safe_child, write_text_atomic

    folder = create_output_folder(out)
    name = f"train-{config.model_name}-{config.hash()}.json"
    write_text_atomic(safe_child(folder, name), json.dumps(summary, indent=2))


def _print_outcome(result: dict, patience, label: str) -> None:
    """The run's last line for a person: its status, time and test error (with the reason when it
    did not finish), and after an early stop which epoch's weights were restored."""
    status = result["status"]
    tail = f" ({result['reason']})" if result.get("reason") and status != RunStatus.DONE else ""
    test = f", test error {100 * result['test_error']:.2f}%" if result.get("test_error") is not None else ""
    click.echo(f"{status} in {result['seconds']:.1f}s{test}{tail}")
    if result.get("stopped_early"):
        best = min(result["epochs"], key=lambda e: e["test_error"]) if result["epochs"] else None
        last = result["epochs"][-1]["epoch"] if result["epochs"] else None
        click.echo(
            f"stopped early after epoch {last:03d} (--patience {patience}: {last - best['epoch']} "
            f"epoch(s) without improvement); restored the best weights, from epoch {best['epoch']:03d} "
            f"({label.lower()} error {100 * best['test_error']:.2f}%)"
            if best is not None
            else f"stopped early ({result.get('reason')}); restored the best weights"
        )


def check_train_size(train_size: int | None, data) -> None:
    """--train-size above the dataset's training images is an error, not a silent "all"."""
    if train_size is not None and train_size > len(data.train_y):
        raise ConfigError(
            f"--train-size {train_size:,} is more than the {len(data.train_y):,} training images of "
            f"{data.name}"
        )


def _given(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not its default)."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def check_schedule(config, *, lr_given: bool) -> None:
    """Inputs that would be silently bent: ``--lr`` with a piecewise schedule (whose lrs are
    absolute: refused), and a schedule longer than ``--epochs`` (warned, naming what is cut)."""
    from ..engine.schedule import parse_schedule

    sched = parse_schedule(config.schedule)
    if sched.kind == "piecewise":
        if lr_given:
            raise ConfigError(
                f"--lr does not apply with the piecewise schedule {config.schedule!r}: its lrs are "
                "absolute; drop --lr (or use multistep:/cosine, which scale --lr)"
            )
        cut, start = [], 0.0
        for length, lr in sched.segments:
            end = start + length
            if end > config.epochs:
                cut.append(f"{lr:g} for epochs {max(start, config.epochs):g}-{end:g}")
            start = end
        if cut:
            log.warning(
                f"warning: the schedule {config.schedule!r} runs {start:g} epochs but --epochs is "
                f"{config.epochs}: cut {'; '.join(cut)}"
            )
    elif sched.kind == "multistep":
        late = [m for m in sched.milestones if m >= config.epochs]
        if late:
            log.warning(
                f"warning: the schedule {config.schedule!r} has milestone(s) {','.join(map(str, late))} "
                f"at or after --epochs {config.epochs}: they never apply"
            )


def _outside_bar():
    """A context in which a line can be printed without cutting through the tqdm bar (the bar is
    cleared, then redrawn below the line); a plain context without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return tqdm.external_write_mode()


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
    if not isinstance(model, str):  # a factory: at its smallest depth unless --depth says otherwise
        overrides.setdefault("depth", model.depth_step)
    info = check_dataset_name(data_opts.dataset_for(model))
    if isinstance(model, str):  # a net too large to build is refused with its estimate, as train refuses it
        import torch

        from ..engine.memory import check_memory
        from ..models import resolve_model

        check_memory(
            model, resolve_model(model, **overrides)[1], tuple(info.input_shape), 1, torch.device("cpu")
        )
    net = create_model(model, info.input_shape, 10, **overrides)
    rows = layer_summary(net, info.input_shape)
    click.echo(f"{'Layer':28} {'Type':12} {'Output shape':18} {'Param #':>10}")
    click.echo("-" * 72)
    for name, kind, shape, n in rows:
        click.echo(f"{name:28} {kind:12} {str(list(shape)):18} {n:>10,}")
    click.echo("-" * 72)
    click.echo(f"Total parameters: {count_parameters(net):,}")
