"""``depthlab frontier``: the largest trainable depth of each model (a thin layer over
`depthlab.frontier`)."""

from __future__ import annotations

import json
import sys

import click

from ..errors import ConfigError
from .app import (
    cli,
    common_options,
    echo_err,
    executor_options,
    executor_spec,
    int_or_keyword,
    model_options,
    model_overrides,
    require_tensorboard,
    tensorboard_writer,
    trial_runner,
)


@cli.command()
@click.option("--models", default="all", show_default=True, help="Comma-separated presets, or all (the eight classic ones).")
@click.option("--max-depth", type=int, default=None, help="Deepest depth the search tries (default 300; --quick 9).")
@click.option("--depths", default=None, help="Try exactly these depths (multiples of 3) instead of searching.")
@click.option("--lrs", default=None, help="Learning-rate grid: 0.01,0.1,1 or log:LOW:HIGH:COUNT "
              "(default log:0.001:1:7, half-decades; --quick 0.01,0.1,1).")
@click.option("--epochs", type=int, default=None, help="Budget per trial (default 3; --quick 1).")
@click.option("--threshold", type=float, default=0.2, show_default=True, help="Trainable when the error drops below this.")
@click.option("--criterion", type=click.Choice(["either", "test", "train"]), default="either", show_default=True)
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds per (depth, lr); a majority must train.")
@click.option("--eval-size", default=None, help="Test images per evaluation, or all (default 2000; --quick 1000).")
@click.option("--evals-per-epoch", type=int, default=None, help="Evaluation points per epoch (default 5; --quick 4).")
@click.option("--quick", is_flag=True, help="10k training images, 1 epoch, lrs 0.01,0.1,1, max depth 9, 4 evaluations of 1,000 test images per epoch.")
@click.option("--bisection", type=click.Choice(["cost", "midpoint"]), default="cost", show_default=True,
              help="How the search splits between a trainable and a failing depth: where the expected cost is "
                   "least, or the midpoint (continue a store with the one that filled it).")
@click.option("--status", is_flag=True, help="Train nothing: show what --store already decides of this search (depths so "
              "far, each model's next trial). Reads the store only (safe while the search runs); with --out, also "
              "writes the partial table and plots there.")
@model_options
@common_options
@executor_options
def frontier(models, max_depth, depths, lrs, epochs, threshold, criterion, seeds, eval_size, evals_per_epoch, quick,
             depth, act, init_, norm, skip, heads, width, params, dataset, data_dir, train_size, seed, device,
             store_path, out, as_json, tensorboard, executor, workers, ray_address, cpus_per_trial, gpus_per_trial,
             fuse, bisection, status):
    """Find the largest trainable depth of each model (SPEC 4: error below 20% within 3 epochs)."""
    from ..data.registry import load_dataset
    from ..frontier.outputs import TABLE_HEADERS, table_rows
    from ..frontier.protocol import DEFAULT_LRS, QUICK_PROTOCOL, FrontierConfig, parse_depths, parse_lrs
    from ..frontier.search import find_frontiers
    from ..models import CLASSIC_PRESETS, PRESETS
    from ..report import check_output_dir, format_table, safe_output_dir
    from ..store.sqlite import check_store_path

    # Validate every flag before touching the store, the data or the output folder.
    if depth is not None:
        raise ConfigError("frontier searches the depth: use --depths or --max-depth, not --depth")
    names = list(CLASSIC_PRESETS) if models.strip() == "all" else [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models is empty")
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(sorted(PRESETS))} or all")
    defaults = dict(QUICK_PROTOCOL, lrs=",".join(f"{lr:g}" for lr in QUICK_PROTOCOL["lrs"]),
                    eval_size=str(QUICK_PROTOCOL["eval_size"])) if quick else dict(train_size=None, epochs=3, lrs=None, max_depth=300, eval_size="2000",
                                        evals_per_epoch=5)
    eval_size = eval_size if eval_size is not None else defaults["eval_size"]
    eval_n = int_or_keyword(eval_size, "all", "--eval-size")
    if eval_n is not None and eval_n <= 0:
        raise ConfigError(f"--eval-size must be a positive integer or all, got {eval_size!r}")
    lr_text = lrs if lrs is not None else defaults["lrs"]
    config = FrontierConfig(
        max_depth=max_depth if max_depth is not None else defaults["max_depth"],
        depths=parse_depths(depths) if depths is not None else None,
        lrs=parse_lrs(lr_text) if lr_text is not None else DEFAULT_LRS,
        epochs=epochs if epochs is not None else defaults["epochs"],
        threshold=threshold, criterion=criterion, seeds=seeds, seed=seed,
        train_size=train_size if train_size is not None else defaults["train_size"],
        eval_size=eval_n,
        evals_per_epoch=evals_per_epoch if evals_per_epoch is not None else defaults["evals_per_epoch"],
        dataset=dataset or "mnist", device=device, bisection=bisection,
        model_args=model_overrides(None, act, init_, norm, skip, heads, width, params))
    config.validate()
    config.validate_models(names)
    spec = executor_spec(executor, workers, ray_address, cpus_per_trial, gpus_per_trial, fuse)
    if status:
        show_status(names, config, store_path, as_json, out)
        return
    check_output_dir(out or "depthlab-out/frontier")
    require_tensorboard(tensorboard)
    check_store_path(store_path)
    data = load_dataset(config.dataset, data_dir)  # bad data fails before any folder or store is created
    folder = safe_output_dir(out or "depthlab-out/frontier")
    writer = tensorboard_writer(tensorboard)

    with trial_runner(spec, config.device, store_path, len(config.lrs), data=data, data_dir=data_dir) as (store,
                                                                                                         runner):
        result = find_frontiers(names, config, store, data, data_dir=data_dir, log=echo_err, runner=runner)

    write_outputs(result, folder)
    if writer is not None:
        for m in result.models:
            for d, r in sorted(m.depths.items()):
                if r.error is not None:
                    writer.add_scalar(f"frontier/{m.model}/best_error", r.error, d)
        writer.close()
    if as_json:
        click.echo(json.dumps({"models": [m.to_dict() for m in result.models]}))
    else:
        click.echo(format_table(TABLE_HEADERS, table_rows(result)))
        click.echo(f"{result.seconds:.0f}s; {sum(m.trials for m in result.models)} trials "
                   f"({sum(m.trials_reused for m in result.models)} from {store_path}); "
                   f"table, per-depth map and plots in {folder}/")
    sys.stdout.flush()


def show_status(names: list[str], config, store_path: str, as_json: bool, out: str | None) -> None:
    """``frontier --status``: the search replayed on the store's trials, nothing trained."""
    from ..engine.checkpoints import saved_epochs
    from ..frontier.search import frontier_status
    from ..report import check_output_dir, format_table, safe_output_dir
    from ..store.sqlite import Store, checkpoint_dir_for

    if out is not None:
        check_output_dir(out)
    with Store(store_path, reading=True) as store:
        result = frontier_status(names, config, store)
    if out is not None:
        write_outputs(result, safe_output_dir(out))
    progress = saved_epochs(checkpoint_dir_for(store_path))  # trials in flight, from their checkpoints
    in_flight = {m.model: progress.get(config.trial_config(m.model, *m.next_trial).hash())
                 for m in result.models if m.next_trial is not None}
    if as_json:
        click.echo(json.dumps({"models": [{**m.to_dict(), "next_trial_epochs_saved": in_flight.get(m.model)}
                                          for m in result.models]}))
        return
    rows = []
    for m in result.models:
        nxt, saved = m.next_trial, in_flight.get(m.model)
        rows.append([m.model, m.max_trainable_depth, m.lr, m.error, m.first_failing_depth, m.trials,
                     f"{m.trial_seconds:,.0f}",
                     "finished" if nxt is None else f"depth {nxt[0]} lr {nxt[1]:g} seed {nxt[2]}"
                     + (f" ({saved:g} of {config.epochs} epochs saved)" if saved is not None else ""),
                     " ".join(f"{d}{'+' if r.trainable else '-'}" for d, r in sorted(m.depths.items()))])
    click.echo(format_table(("model", "max trainable so far", "lr", "error", "first failing so far", "trials stored",
                             "trial s", "next trial", "depths (+ trains, - fails)"), rows))
    done = sum(m.next_trial is None for m in result.models)
    spent = sum(m.trial_seconds for m in result.models)
    click.echo(f"{done} of {len(result.models)} searches finished in {store_path}; {spent:,.0f} s of training in "
               "the trials they used (speculative lrs they did not need are not counted)")


def write_outputs(result, folder) -> None:
    """The table and per-depth map as CSV, everything as JSON, and the two plots."""
    from ..frontier.outputs import DEPTH_HEADERS, TABLE_HEADERS, depth_rows, save_frontier_plots, table_rows
    from ..report import write_csv, write_text_atomic

    write_csv(folder / "frontier.csv", TABLE_HEADERS, table_rows(result))
    write_csv(folder / "frontier-depths.csv", DEPTH_HEADERS, depth_rows(result))
    write_text_atomic(folder / "frontier.json", json.dumps(result.to_dict(), indent=2))
    save_frontier_plots(result, folder)
