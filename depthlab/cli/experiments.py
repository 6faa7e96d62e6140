"""Experiment commands: lr-sweep, lr-find, ablate, reproduce (a thin layer over
`depthlab.experiments`). Every flag is validated before the store is opened."""

from __future__ import annotations

import json
import time

import click

from ..errors import ConfigError
from ..grids import GRID_GRAMMAR
from . import cifar as _cifar
from .app import (
    cli,
    create_output_folder,
    output_folder,
    progress,
    progress_to_stderr,
    require_tensorboard,
    tensorboard_log,
    trial_runner,
)
from .core import check_train_size
from .options import (
    Values,
    data_options,
    executor_options,
    model_options,
    option_group,
    run_options,
    train_options,
)


def _out_folder(out: str | None, default: str):
    from ..report.outputs import default_output_dir

    return create_output_folder(out or default_output_dir(_store_of_context(), default))


def _store_of_context() -> str | None:
    return click.get_current_context().params.get("store_path")


def _show_part(part, folder, stem, as_json) -> list[str]:
    paths = [str(p) for p in part.write(folder, stem)]
    if not as_json:
        click.echo(f"\n== {part.title} ==")
        click.echo(part.format_table())
        for note in part.notes:
            click.echo(f"({note})")
    return paths


def _check_store(store_path):
    from ..store.sqlite import check_store_path

    check_store_path(store_path)


def _prepare(
    configs,
    data_dir,
    store_path,
    out: str | None,
    default: str,
    tensorboard: str | None = None,
    datasets: dict | None = None,
) -> tuple:
    """After the flags are validated (``configs``): check the store path, the output folder and
    TensorBoard, then load every dataset the runs need, so that bad data fails before any store
    or folder is created (a --train-size above the data's size included); only then create the output
    folder. Returns (folder, datasets)."""
    from ..data.registry import load_dataset

    output_folder(out, store_path, default)
    require_tensorboard(tensorboard)
    if store_path is not None:
        _check_store(store_path)
    datasets = {} if datasets is None else datasets
    for config in configs:
        if config.dataset not in datasets:
            datasets[config.dataset] = load_dataset(config.dataset, data_dir)
        check_train_size(config.train_size, datasets[config.dataset])  # as train and frontier do
    return _out_folder(out, default), datasets


def _run_one_part(part, experiment: str, stem: str, data_opts, run, spec):
    """Check every flag (``part.configs``), the paths and the data before the store or a folder
    is touched; then run ``part`` against the store (on the executor of ``spec``) and show it.
    Returns (result, paths)."""
    from ..experiments.catalogue import fusable_size
    from ..experiments.parts import Context

    progress_to_stderr(run.as_json)  # the runs' progress lines (the depthlab.progress logger)
    ctx = Context(data_dir=data_opts.data_dir, experiment=experiment, epoch_lines=True)
    configs = part.configs(ctx)
    folder, _ = _prepare(
        configs, data_opts.data_dir, run.store_path, run.out, stem, run.tensorboard, ctx.datasets
    )
    ctx.tensorboard = tensorboard_log(run.tensorboard)
    with trial_runner(
        spec,
        configs[0].device,
        run.store_path,
        fusable_size(part, ctx),
        data_dir=data_opts.data_dir,
        sequential=True,
    ) as (store, runner):
        ctx.store, ctx.runner = store, runner
        result = part.run(ctx)
    if ctx.tensorboard is not None:
        ctx.tensorboard.close()
    return result, _show_part(result, folder, experiment, run.as_json)


def _base(model: str, model_opts, data_opts, run, **hyper) -> dict:
    """The `TrainConfig` fields every run of an experiment command shares."""
    return dict(
        model=model,
        model_args=model_opts.overrides(model),
        dataset=data_opts.dataset_for(model),
        train_size=data_opts.train_size,
        **hyper,
        seed=run.seed,
        device=run.device,
        precision=run.precision,
    )


@cli.command("lr-sweep")
@click.argument("model", required=False)
@model_options(toggles=True, model_file=True)
@data_options
@run_options
@click.option("--lrs", required=True, help=f"Learning-rate grid: {GRID_GRAMMAR}.")
@train_options(
    "epochs",
    "batch_size",
    "momentum",
    "optimizer",
    "weight_decay",
    "schedule",
    schedule=dict(
        help="constant | multistep:M1,M2[:gamma] | cosine (scaled by each lr); a piecewise one needs one lr."
    ),
)
@executor_options
def lr_sweep_cmd(model, model_opts, data_opts, run, lrs, hp, spec):
    """One run of MODEL per learning rate: a table of final errors and train/test error plots."""
    from ..experiments.configs import parse_lrs
    from ..experiments.sweeps import Sweep

    model = model_opts.model(model, data_opts.dataset)
    base = _base(model, model_opts, data_opts, run, **hp.fields())
    sweep = Sweep(
        "lr-sweep",
        base,
        parse_lrs(lrs),
        title=f"{model} lr sweep (batch {hp.batch_size}, momentum {hp.momentum:g}, {hp.epochs} epochs)",
    )
    part, paths = _run_one_part(sweep, "lr-sweep", f"lr-sweep-{model}", data_opts, run, spec)
    best = part.best("test_error")
    if run.as_json:
        click.echo(json.dumps({"rows": part.rows, "best_lr": best and best["lr"], "files": paths}))
    else:
        if best:
            click.echo(f"best lr {best['lr']:g}: final test error {100 * best['test_error']:.2f}%")
        click.echo(f"wrote {', '.join(paths)}")


def range_test_options(f):
    """The range test's flags as one `Values` parameter ``range_test``."""
    return option_group(
        "range_test",
        Values,
        click.option(
            "--min-lr", type=float, default=1e-5, show_default=True, help="Learning rate of the first step."
        ),
        click.option(
            "--max-lr",
            type=float,
            default=10.0,
            show_default=True,
            help="Learning rate of the last step (the range grows geometrically in between).",
        ),
        click.option(
            "--steps", type=int, default=100, show_default=True, help="Mini-batches in the range test."
        ),
        click.option(
            "--smoothing", type=float, default=0.98, show_default=True, help="EMA factor of the loss."
        ),
        click.option(
            "--diverge",
            type=float,
            default=4.0,
            show_default=True,
            help="Stop once the smoothed loss exceeds this multiple of its minimum.",
        ),
        click.option(
            "--burn-in",
            type=int,
            default=None,
            help="First steps that neither stop the test nor count for the suggestion "
            "(0 to half of --steps) [default: a tenth of --steps].",
        ),
    )(f)


@cli.command("lr-find")
@click.argument("model", required=False)
@model_options(toggles=True, model_file=True)
@data_options
@run_options(
    take=("seed", "device", "precision", "out", "json"),
    out_help="Folder for the plot and JSON (default depthlab-out/depthlab/lr-find-MODEL).",
)
@range_test_options
@train_options("batch_size", "momentum", "optimizer", "weight_decay")
def lr_find_cmd(model, model_opts, data_opts, run, range_test, hp):
    """Exponential learning-rate range test of MODEL (nothing is stored; weights are restored).

    Suggestion: the lr at the minimum of the smoothed loss divided by 10."""
    from ..experiments.configs import make_config
    from ..experiments.lr_find import check_lr_range, lr_find
    from ..experiments.parts import draw_plot
    from ..report.figures import save_figure
    from ..report.outputs import safe_child, write_text_atomic

    r, out, as_json = range_test, run.out, run.as_json
    min_lr, max_lr = r.min_lr, r.max_lr
    check_lr_range(min_lr, max_lr, r.steps, r.smoothing, r.diverge, r.burn_in)
    model = model_opts.model(model, data_opts.dataset)
    config = make_config(_base(model, model_opts, data_opts, run, **hp.fields(), lr=min_lr))
    folder, datasets = _prepare([config], data_opts.data_dir, None, out, f"lr-find-{model}")
    data = datasets[config.dataset]
    started = time.perf_counter()
    found = lr_find(
        config,
        data,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=r.steps,
        smoothing=r.smoothing,
        diverge=r.diverge,
        burn_in=r.burn_in,
    )
    seconds = time.perf_counter() - started
    png = save_figure(draw_plot(found.plot()), safe_child(folder, "lr-find.png"))
    trace = safe_child(folder, "lr-find.json")
    write_text_atomic(trace, json.dumps({**found.to_dict(), "config": config.canonical()}, indent=1))
    if as_json:
        click.echo(
            json.dumps(
                {k: v for k, v in found.to_dict().items() if k not in ("lrs", "losses", "smoothed")}
                | {
                    "steps_run": len(found.lrs),
                    "flat": found.flat,
                    "seconds": round(seconds, 2),
                    "plot": str(png),
                    "files": [str(png), str(trace)],
                }
            )
        )
        return
    _echo_lr_find(found, min_lr, seconds)
    click.echo(f"wrote {png.name}, {trace.name} to {folder}/")


def _echo_lr_find(found, min_lr: float, seconds: float) -> None:
    """The human-readable lr-find report: how far the test ran, the lowest and steepest points of
    the smoothed loss, the suggestion, and warnings when the suggestion cannot be trusted."""
    click.echo(f"{len(found.lrs)} steps from lr {min_lr:g}: {found.stopped} ({seconds:.1f}s)")
    if found.suggestion is None:
        click.echo("too few steps before divergence to suggest a learning rate; lower --min-lr")
    else:
        click.echo(
            f"lowest smoothed loss {min(found.smoothed):.3f} at lr {found.min_loss_lr:.3g}; "
            f"steepest descent at lr {found.steepest_lr:.3g}"
            if found.steepest_lr
            else f"lowest smoothed loss {min(found.smoothed):.3f} at lr {found.min_loss_lr:.3g}"
        )
        click.echo(f"suggested lr: {found.suggestion:.3g}  (rule: {found.rule})")
        if found.flat:
            click.echo(
                f"warning: the smoothed loss fell by only {100 * found.drop:.2f}%: nothing in the range "
                "learned within the test's steps, so this suggestion is noise (more --steps, or the model "
                "may not train at all)"
            )
        if found.min_loss_lr == found.lrs[-1] and not found.stopped.startswith("diverged"):
            click.echo("(the loss was still falling at --max-lr: widen the range)")


def ablation_options(f):
    """What the ablation varies and how often, as one `Values` parameter ``ablation``."""
    return option_group(
        "ablation",
        Values,
        click.option(
            "--toggle",
            "toggles",
            multiple=True,
            required=True,
            help="A switch to turn off and on (repeatable): bn, skip, or any boolean model parameter.",
        ),
        click.option(
            "--folds", type=int, default=None, help="K-fold splits (validation = one fold; default 3)."
        ),
        click.option(
            "--seeds", type=int, default=None, help="N seeds on one fixed 2/3-1/3 split instead of folds."
        ),
        click.option(
            "--weight-decay",
            "l2",
            type=float,
            default=0.0,
            show_default=True,
            help="Weight decay, e.g. 1e-5 (the optimiser's; for adam the classic coupled L2 penalty).",
        ),
        click.option(
            "--l2", "l2_old", type=float, default=None, hidden=True, help="Old name of --weight-decay."
        ),
    )(f)


@cli.command("ablate")
@click.argument("model", required=False)
@model_options(toggles=True, model_file=True)
@data_options
@run_options
@ablation_options
@train_options(
    "epochs",
    "lr",
    "momentum",
    "batch_size",
    "optimizer",
    "schedule",
    "patience",
    patience=dict(
        help="Early stopping: stop after N epochs without improvement of the validation "
        "error; the best epoch's weights are restored."
    ),
)
@executor_options
def ablate_cmd(model, model_opts, data_opts, run, ablation, hp, spec):
    """Every on/off combination of the toggles over K folds or N seeds: mean ± std of train,
    validation and test error and the time per fit, plus loss curves."""
    from ..experiments.sweeps import Ablation

    model = model_opts.model(model, data_opts.dataset)
    toggles, folds, seeds, l2 = ablation.toggles, ablation.folds, ablation.seeds, ablation.l2
    if ablation.l2_old is not None:  # the old spelling still works
        l2 = ablation.l2_old
    if folds is not None and seeds is not None:
        raise ConfigError("--folds and --seeds exclude each other")
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    from ..engine.config import MAX_FOLDS, MAX_SEEDS

    if seeds is not None and seeds > MAX_SEEDS:
        raise ConfigError(f"--seeds must be at most {MAX_SEEDS:,}, got {seeds:,}")
    if folds is not None and folds > MAX_FOLDS:
        raise ConfigError(f"--folds must be at most {MAX_FOLDS:,}, got {folds:,}")
    if l2 < 0:
        raise ConfigError(f"--weight-decay must be non-negative, got {l2}")
    if (model_opts.bn is not None and "bn" in toggles) or (model_opts.no_skip and "skip" in toggles):
        raise ConfigError("a switch cannot be both fixed (--bn/--no-bn/--no-skip) and toggled")
    base = _base(model, model_opts, data_opts, run, **hp.fields(), weight_decay=l2)
    repeats = f"{seeds} seeds" if seeds else f"K={folds or 3} folds"
    part = Ablation(
        "ablate",
        base,
        tuple(toggles),
        folds=None if seeds else (folds or 3),
        seeds=seeds,
        title=f"{model} ablation ({repeats})",
    )
    result, paths = _run_one_part(part, "ablate", f"ablate-{model}", data_opts, run, spec)
    if run.as_json:
        click.echo(json.dumps({"rows": result.rows, "files": paths}))
    else:
        click.echo(f"wrote {', '.join(paths)}")


# Experiments with their own command-line flags (the CIFAR-10 ones: --n, --shortcut, --resume,
# ...) keep their command; `depthlab reproduce NAME ...` forwards NAME and every flag to it.
CLI_EXPERIMENTS: dict[str, click.Command] = {}


def register_cli_experiment(names, command: click.Command) -> None:
    """Route ``depthlab reproduce NAME`` for each of ``names`` to ``command`` (which takes NAME
    as its first argument and its own flags)."""
    for name in names:
        CLI_EXPERIMENTS[name] = command


class ReproduceCommand(click.Command):
    """``reproduce``: registry experiments here, command-line experiments forwarded."""

    def make_context(self, info_name, args, parent=None, **extra):
        target = next((CLI_EXPERIMENTS[a] for a in args if a in CLI_EXPERIMENTS), None)
        if target is not None:
            return target.make_context(info_name, args, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


register_cli_experiment(_cifar.CIFAR_EXPERIMENTS, _cifar.reproduce)


@cli.command("reproduce", cls=ReproduceCommand)
@click.argument("name", required=False)
@click.option("--quick", is_flag=True, help="A reduced budget that finishes in minutes on 2 CPU cores.")
@click.option("--list", "list_", is_flag=True, help="List the experiments and exit.")
@click.option("--data-dir", default=None, help="Data root (default: $DEPTHLAB_DATA, else ./data).")
@run_options(
    take=("device", "precision", "store", "out", "json"),
    out_help="Folder for tables and plots (default depthlab-out/<store stem>/reproduce-NAME, -quick with --quick).",
)
@option_group(
    "budget",
    Values,
    click.option(
        "--epochs", type=int, default=None, help="A reduced budget: every run trains N epochs (labelled)."
    ),
    click.option(
        "--train-size",
        type=int,
        default=None,
        help="A reduced budget: every run uses a fixed subset of N training images (labelled).",
    ),
)
@executor_options
def reproduce_cmd(name, quick, list_, data_dir, run, budget, spec):
    """Run a classic experiment by NAME: its tables, plots and one sentence computed from its
    numbers. Finished runs are read back from the store (an interrupted run resumes)."""
    from ..experiments.catalogue import EXPERIMENTS, check_budget, fusable_runs, plan, reproduce
    from ..experiments.sweeps import Frontier
    from ..report.outputs import write_text_atomic

    if list_ or not name:
        for exp in EXPERIMENTS.values():
            click.echo(f"{exp.name:20} {exp.question}")
        for other in CLI_EXPERIMENTS:
            click.echo(f"{other:20} (own flags: depthlab reproduce {other} --help)")
        return
    if name not in EXPERIMENTS:
        choices = sorted(EXPERIMENTS) + sorted(CLI_EXPERIMENTS)
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(choices)}")
    budget = check_budget(budget.fields())
    device, precision, store_path, out, as_json = (
        run.device,
        run.precision,
        run.store_path,
        run.out,
        run.as_json,
    )
    configs = plan(name, quick=quick, device=device, budget=budget, precision=precision)
    folder, datasets = _prepare(
        configs, data_dir, store_path, out, f"reproduce-{name}{'-quick' if quick else ''}"
    )
    progress_to_stderr(as_json)  # the runs' progress lines (the depthlab.progress logger)
    budget_label = ",".join([" quick"] * quick + [f" {k.replace('_', ' ')} {v}" for k, v in budget.items()])
    searches = any(isinstance(p, Frontier) for p in EXPERIMENTS[name].parts)
    count = f"{len(configs)} models to search" if searches else f"{len(configs)} runs"
    progress.info(f"{name}{' (reduced budget:' + budget_label + ')' if budget_label else ''}: {count}")
    group = fusable_runs(name, quick=quick, device=device, budget=budget, precision=precision)
    with trial_runner(spec, device, store_path, group, data_dir=data_dir, sequential=True) as (store, runner):
        result = reproduce(
            name,
            store,
            quick=quick,
            data_dir=data_dir,
            device=device,
            budget=budget,
            datasets=datasets,
            runner=runner,
            precision=precision,
            epoch_lines=True,
        )
    paths = []
    for label, part in result.parts.items():
        paths += _show_part(part, folder, label, as_json)
    write_text_atomic(folder / "reproduce.json", json.dumps(result.to_dict(), indent=1))
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "files": paths}))
        return
    if budget_label:
        click.echo(f"\n(REDUCED BUDGET:{budget_label}; not the full protocol)")
    click.echo(f"\n{result.conclusion}")
    click.echo(f"({result.seconds:.0f}s; tables and plots in {folder})")
