"""``depthlab frontier``: the largest trainable depth of each model (a thin layer over the API:
`depthlab.api.frontier_models` parses ``--models``, `depthlab.api.run_frontier` runs the search)."""

from __future__ import annotations

import json
import sys

import click

from ..depth_frontier.protocol import QUICK_GRIDS, FrontierConfig
from ..errors import ConfigError
from . import plan
from .app import cli, create_output_folder, log, output_folder, require_tensorboard, tensorboard_log
from .core import _outside_bar, check_train_size
from .options import (
    Values,
    data_options,
    executor_options,
    field_help,
    int_or_keyword,
    model_options,
    option_from_field,
    option_group,
    run_options,
)


def _protocol_option(name: str, default_text: str | None = None, quick_text: str | None = None, **kwargs):
    """A `FrontierConfig` field as an option; one the quick protocol changes defaults to None
    (resolved in `protocol_config`) and says both defaults in its help."""
    classic, quick = FrontierConfig(), FrontierConfig.quick()
    if name in quick.changes():
        first = default_text if default_text is not None else getattr(classic, name)
        second = quick_text if quick_text is not None else getattr(quick, name)
        kwargs.update(
            default=None,
            help=f"{field_help(FrontierConfig, name).rstrip('.')} (default {first}; --quick {second}).",
        )
    return option_from_field(FrontierConfig, name, **kwargs)


def protocol_options(f):
    """The search's flags (FrontierConfig fields) as one `Values` parameter ``protocol``."""
    quick = FrontierConfig.quick()
    return option_group(
        "protocol",
        Values,
        _protocol_option("max_depth"),
        option_from_field(FrontierConfig, "depths", type=str),
        option_from_field(FrontierConfig, "depth_step"),
        option_from_field(FrontierConfig, "optimizers", type=str, default="sgd", show_default=True),
        _protocol_option(
            "lrs",
            "sgd log:0.001:1:7 in half decades, adam and adamw log:1e-5:1e-2:7",
            "sgd "
            + ",".join(f"{lr:g}" for lr in quick.lrs)
            + ", adam and adamw "
            + ",".join(f"{lr:g}" for lr in QUICK_GRIDS["adam"]),
            type=str,
            multiple=True,
            metavar="[OPTIMIZER=]GRID",
        ),
        _protocol_option("epochs"),
        option_from_field(FrontierConfig, "threshold"),
        option_from_field(FrontierConfig, "criterion"),
        option_from_field(FrontierConfig, "seeds", type=str, default="1", show_default=True),
        _protocol_option("eval_size", type=str),
        _protocol_option("evals_per_epoch"),
        option_from_field(FrontierConfig, "bisection"),
        option_from_field(
            FrontierConfig, "plateau_stop", type=str, show_default=True, metavar="EPOCH:ERROR|auto|off"
        ),
    )(f)


def _quick_help() -> str:
    q = FrontierConfig.quick()
    return (
        f"The quick protocol (FrontierConfig.quick()): {q.train_size:,} training images, {q.epochs} epoch(s), "
        f"lrs {','.join(f'{lr:g}' for lr in q.lrs)}, max depth {q.max_depth}, {q.evals_per_epoch} evaluations "
        f"of {q.eval_size:,} test images per epoch."
    )


def protocol_config(protocol: Values, quick: bool, model_opts, data_opts, run) -> FrontierConfig:
    """The `FrontierConfig` the flags ask for: `FrontierConfig.quick()` (``--quick``) or the
    classic protocol, with every flag given replacing its field (an optimizer without a grid
    from ``--lrs`` takes its default grid, or its quick one). Validated."""
    from ..depth_frontier.protocol import parse_depths, parse_optimizer_lrs, parse_optimizers, parse_seeds

    base = FrontierConfig.quick() if quick else FrontierConfig()
    eval_n = base.eval_size
    if protocol.eval_size is not None:
        eval_n = int_or_keyword(protocol.eval_size, "all", "--eval-size")
        if eval_n is not None and eval_n <= 0:
            raise ConfigError(f"--eval-size must be a positive integer or all, got {protocol.eval_size!r}")
    given = {k: v for k, v in protocol.given().items() if k in ("max_depth", "epochs", "evals_per_epoch")}
    make = FrontierConfig.quick if quick else FrontierConfig
    return make(
        **given,
        depths=parse_depths(protocol.depths) if protocol.depths is not None else None,
        depth_step=protocol.depth_step,
        optimizers=parse_optimizers(protocol.optimizers),
        lrs=parse_optimizer_lrs(protocol.lrs),
        threshold=protocol.threshold,
        criterion=protocol.criterion,
        seeds=parse_seeds(protocol.seeds),
        seed=run.seed,
        train_size=data_opts.train_size if data_opts.train_size is not None else base.train_size,
        eval_size=eval_n,
        dataset=data_opts.dataset or base.dataset,
        device=run.device,
        precision=run.precision,
        bisection=protocol.bisection,
        plateau_stop=protocol.plateau_stop,
        model_args=model_opts.overrides(depth=False),
    )


@cli.command()
@click.option(
    "--models",
    default="all",
    show_default=True,
    help="Comma-separated presets, or all (the eight classic ones).",
)
@protocol_options
@click.option("--quick", is_flag=True, help=_quick_help())
@option_group(
    "mode",
    Values,
    click.option(
        "--status",
        is_flag=True,
        help="Train nothing: show what --store already decides of this search "
        "(depths so far, each model's next trial). Reads the store only (safe while the search runs); with "
        "--out, also writes the partial table and plots there.",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Train nothing: print the plan and an estimated CPU time from "
        "per-layer costs measured on this machine (once, a few seconds; cached).",
    ),
)
@model_options(model_file=True)
@data_options
@run_options
@executor_options
def frontier(models, protocol, quick, mode, model_opts, data_opts, run, spec):
    """Find the largest trainable depth of each model (SPEC 4: error below 20% within 3 epochs)."""
    from ..api import _bar, run_frontier
    from ..data.registry import load_dataset
    from ..store.sqlite import check_store_path

    # Validate every flag before touching the store, the data or the output folder.
    if model_opts.depth is not None:
        raise ConfigError("frontier searches the depth: use --depths or --max-depth, not --depth")
    names = _frontier_names(models, model_opts, data_opts)
    config = protocol_config(protocol, quick, model_opts, data_opts, run)
    config.validate()
    config.validate_models(names)
    store_path, out = run.store_path, run.out
    if mode.status:
        show_status(names, config, store_path, run.as_json, out)
        return
    if mode.dry_run:
        full = 60_000 if config.dataset in ("mnist", "mnist32", "fashion-mnist") else 50_000
        for line in plan.plan_lines(names, config, plan.layer_costs(), config.train_size or full):
            click.echo(line)
        return
    out = output_folder(out, store_path)
    require_tensorboard(run.tensorboard)
    check_store_path(store_path)
    data_dir = data_opts.data_dir
    data = load_dataset(config.dataset, data_dir)  # bad data fails before any folder or store is created
    check_train_size(config.train_size, data)
    folder = create_output_folder(out)
    board = tensorboard_log(run.tensorboard)

    with _bar(
        sys.stderr.isatty() and not run.as_json, "frontier", "trial"
    ) as bar:  # as `train`: a terminal only
        progress = None if bar is None else FrontierProgress(bar, names, config, len(data.train_y), spec)
        result = run_frontier(
            names,
            config,
            store_path,
            data,
            spec,
            data_dir=data_dir,
            log=log.info if progress is None else progress.trial_done,
            runner_log=log.info if progress is None else progress.say,
        )

    write_outputs(result, folder)
    if board is not None:
        for m in result.models:
            for d, r in sorted(m.depths.items()):
                if r.error is not None:
                    board.scalar(f"frontier/{m.model}/best_error", r.error, d)
        board.close()
    _echo_result(result, store_path, folder, run.as_json)
    sys.stdout.flush()


def _frontier_names(models: str, model_opts, data_opts) -> list:
    """The models to search: the ``--models`` presets, or your own model (``--model-file``) and,
    when ``--models`` names any, those presets too."""
    from ..api import frontier_models

    if model_opts.model_file is None:
        return frontier_models(models, "--models")
    # your own model; with --models also those presets
    presets = [] if models.strip() == "all" else models.split(",")
    return frontier_models([model_opts.model(None, data_opts.dataset), *presets], "--models")


def _echo_result(result, store_path: str, folder, as_json: bool) -> None:
    """A finished search: the JSON of every model, or the printed table and a one-line summary."""
    from ..depth_frontier.outputs import JSON_UNITS, PRINTED_HEADERS, printed_rows
    from ..report.tables import format_table

    if as_json:
        click.echo(json.dumps({"units": JSON_UNITS, "models": [m.to_dict() for m in result.models]}))
    else:
        click.echo(format_table(PRINTED_HEADERS, printed_rows(result)))
        click.echo(
            f"{result.seconds:.0f}s; {sum(m.trials for m in result.models)} trials "
            f"({sum(m.trials_reused for m in result.models)} from {store_path}); "
            f"table, per-depth map and plots in {folder}/"
        )


# --depth cannot apply (the search chooses the depth): not offered; --depths / --max-depth are.
frontier.params = [p for p in frontier.params if p.name != "depth"]


def eta_seconds(left_costs: list[float], slots: int) -> float:
    """Seconds until the trials still planned are done: their estimated CPU seconds shared by
    ``slots`` trials running side by side (each trial runs on one thread)."""
    return sum(left_costs) / max(1, slots)


class FrontierProgress:
    """The API's tqdm bar of a frontier run: trials done, running and left (of the dry-run's
    bound, `plan.planned_trials`: every lr and seed of every probed depth), and the ETA of those
    left from the dry-run's per-trial costs. A finished trial takes its (model, depth) off the
    plan; one the plan did not hold (a bisection step) only counts as done. Left and ETA are
    bounds: a search stops a depth at its first trainable lr."""

    def __init__(self, bar, names: list, config, train_images: int, spec):
        from ..sweep.executors import default_workers

        self.bar, self.done = bar, 0
        self.left: dict[tuple[str, int], list[float]] = {}
        for model, depth, seconds in plan.planned_trials(
            names, config, plan.layer_costs(), config.train_size or train_images
        ):
            self.left.setdefault((model, depth), []).append(seconds)
        self.slots = spec.workers or default_workers(config.device)
        self.show()

    def trial_done(self, line: str) -> None:
        """One trial's line (``MODEL depth D ...``): printed above the bar, the counts moved on."""
        self.say(line)
        model, _, rest = line.partition(" depth ")
        costs = (
            self.left.get((model, int(rest.split(" ", 1)[0]))) if rest.split(" ", 1)[0].isdigit() else None
        )
        if costs:
            costs.pop()
        self.done += 1
        self.bar.update(1)
        self.show()

    @staticmethod
    def say(line: str) -> None:
        """A line printed above the bar, not through it."""
        with _outside_bar():
            log.info(line)

    def show(self) -> None:
        left = [c for costs in self.left.values() for c in costs]
        running = min(self.slots, len(left))
        self.bar.set_postfix_str(
            f"done {self.done}, running {running}, left <= {len(left)}, "
            f"ETA <= {plan._hours(eta_seconds(left, self.slots))} (dry-run cost model)"
        )


def show_status(names: list[str], config, store_path: str, as_json: bool, out: str | None) -> None:
    """``frontier --status``: the search replayed on the store's trials, nothing trained."""
    from ..depth_frontier.search import frontier_status
    from ..engine.checkpoints import saved_epochs
    from ..store.sqlite import Store, checkpoint_dir_for

    if out is not None:
        output_folder(out, store_path)
    with Store(store_path, reading=True) as store:
        result = frontier_status(names, config, store)
    if out is not None:
        write_outputs(result, create_output_folder(out))
    progress = saved_epochs(checkpoint_dir_for(store_path))  # trials in flight, from their checkpoints
    by_name = {str(n): n for n in names}  # a model factory is reported by its label
    in_flight = {
        m.model: progress.get(config.trial_config(by_name[m.model], *m.next_trial).hash())
        for m in result.models
        if m.next_trial is not None
    }
    if as_json:
        from ..depth_frontier.outputs import JSON_UNITS

        click.echo(
            json.dumps(
                {
                    "units": JSON_UNITS,
                    "models": [
                        {**m.to_dict(), "next_trial_epochs_saved": in_flight.get(m.model)}
                        for m in result.models
                    ],
                }
            )
        )
        return
    _echo_status_table(result, in_flight, config, store_path)


def _echo_status_table(result, in_flight: dict, config, store_path: str) -> None:
    """``frontier --status`` for a person: one row per model (its depths so far and next trial,
    with the epochs its checkpoint has saved) and a line of how many searches finished."""
    from ..depth_frontier.outputs import depth_label
    from ..depth_frontier.points import lr_cell, lr_words
    from ..report.tables import format_table
    from ..report.wording import percent

    rows = []
    for m in result.models:
        nxt, saved = m.next_trial, in_flight.get(m.model)
        rows.append(
            [
                m.model,
                depth_label(m),
                lr_cell(m.lr),
                percent(m.error) if m.error is not None else None,
                m.first_failing_depth,
                m.trials,
                f"{m.trial_seconds:,.0f}",
                "finished"
                if nxt is None
                else f"depth {nxt[0]} {lr_words(nxt[1])} seed {nxt[2]}"
                + (f" ({saved:g} of {config.epochs} epochs saved)" if saved is not None else ""),
                " ".join(f"{d}{'+' if r.trainable else '-'}" for d, r in sorted(m.depths.items())),
            ]
        )
    click.echo(
        format_table(
            (
                "model",
                "max trainable depth",
                "lr",
                "criterion error",
                "first failing so far",
                "trials stored",
                "trial s",
                "next trial",
                "depths (+ trains, - fails)",
            ),
            rows,
        )
    )
    done = sum(m.next_trial is None for m in result.models)
    spent = sum(m.trial_seconds for m in result.models)
    click.echo(
        f"{done} of {len(result.models)} searches finished in {store_path}; {spent:,.0f} s of training in "
        "the trials they used (speculative lrs they did not need are not counted)"
    )


def write_outputs(result, folder) -> None:
    """The table and per-depth map as CSV, everything as JSON, and the two plots."""
    from ..depth_frontier.outputs import (
        DEPTH_HEADERS,
        depth_rows,
        frontier_json,
        save_frontier_plots,
        table_headers,
        table_rows,
    )
    from ..report.outputs import write_text_atomic
    from ..report.tables import write_csv

    write_csv(folder / "frontier.csv", table_headers(result), table_rows(result))
    write_csv(folder / "frontier-depths.csv", table_headers(result, DEPTH_HEADERS), depth_rows(result))
    write_text_atomic(folder / "frontier.json", json.dumps(frontier_json(result), indent=2))
    save_frontier_plots(result, folder)
