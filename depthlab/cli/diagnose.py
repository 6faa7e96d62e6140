"""``depthlab diagnose MODEL --depth K`` (or ``--model-file nets.py:build``): gradient-flow
diagnostics on real data."""

from __future__ import annotations

import json

import click

from ..errors import ConfigError
from .app import cli, create_output_folder, output_folder
from .options import Values, data_options, model_options, option_group, run_options, train_options


def watch_options(f):
    """What diagnose records, as one `Values` parameter ``watch``."""
    return option_group(
        "watch",
        Values,
        click.option("--steps", type=int, default=50, show_default=True, help="Training steps to watch."),
        click.option("--every", type=int, default=None, help="Record every N steps (default: steps/10)."),
        click.option(
            "--compare-depths",
            default=None,
            help="Depths for the gradient-vs-layer chart at init, e.g. 6,12,24 (default: about K/4, K/2, "
            "K, 2K).",
        ),
    )(f)


@cli.command()
@click.argument("model", required=False)
@model_options(model_file=True)
@watch_options
@train_options(
    "lr",
    "momentum",
    "batch_size",
    "compile",
    compile=dict(help="torch.compile the model (worth it on a GPU)."),
)
@data_options(dataset_help=None, data_dir_help=None, train_size_default=10_000)
@run_options(
    take=("seed", "device", "precision", "out", "json"),
    out_help="Folder for the plots and the JSON (default: depthlab-out/depthlab/diagnose).",
)
def diagnose(model, model_opts, watch, hp, data_opts, run):
    """Per-layer activation statistics, gradient norms and update ratios of MODEL (its conv
    layers; with --model-file, every Linear and conv layer of your own network) at init and
    during training, a layer x step heatmap, and a vanishing/exploding/healthy verdict."""
    from ..analysis import diagnostics
    from ..data.registry import check_dataset_name, load_dataset
    from ..models import default_dataset
    from ..report.figures import save_figure
    from ..report.outputs import safe_child

    steps, lr, batch_size, train_size = watch.steps, hp.lr, hp.batch_size, data_opts.train_size
    dataset, seed, device = data_opts.dataset, run.seed, run.device
    model, overrides, k = _resolve_model(model, model_opts, dataset)
    every = _check_watch_flags(steps, watch.every, train_size)
    dataset = dataset or default_dataset(model)
    depths = _comparison_depths(
        model, overrides, k, watch.compare_depths, check_dataset_name(dataset).input_shape
    )
    _validate_train_config(model, overrides, dataset, data_opts, hp, run)
    out = output_folder(run.out, getattr(run, "store_path", None))
    data = load_dataset(dataset, data_opts.data_dir)  # bad data fails before the output folder is created
    folder = create_output_folder(out)

    diag = diagnostics.diagnose(
        model,
        overrides,
        steps=steps,
        every=every,
        lr=lr,
        momentum=hp.momentum,
        batch_size=batch_size,
        train_size=train_size,
        dataset=dataset,
        data=data,
        seed=seed,
        device=device,
        compile=hp.compile,
        precision=run.precision,
    )
    stem = f"diagnose-{diag.model}-d{k}"
    save_figure(diagnostics.plot_heatmap(diag), safe_child(folder, f"{stem}-heatmap.png"))
    profiles = (
        diagnostics.depth_profiles(
            model, depths, overrides, data=data, batch_size=batch_size, seed=seed, device=device
        )
        if depths
        else {}
    )
    summary = _write_depth_chart_and_summary(diag, profiles, folder, stem)
    if run.as_json:
        click.echo(json.dumps(summary))
        return
    _echo_summary(diag, k, steps, lr)
    click.echo(
        f"wrote {stem}-heatmap.png{', ' + stem + '-depths.png' if profiles else ''} and {stem}.json to {folder}"
    )


def _validate_train_config(model, overrides: dict, dataset: str, data_opts, hp, run) -> None:
    """Refuse the watched training's settings (one line) the way `depthlab train` would, before
    any data is loaded or folder created."""
    from ..engine.config import TrainConfig

    TrainConfig(
        model=model,
        model_args=overrides,
        dataset=dataset,
        train_size=data_opts.train_size,
        epochs=1,
        batch_size=hp.batch_size,
        lr=hp.lr,
        momentum=hp.momentum,
        seed=run.seed,
        device=run.device,
        precision=run.precision,
    ).validate()


def _resolve_model(model, model_opts, dataset):
    """The model (a preset name or a checked factory), its overrides and its depth; a factory
    without --depth is looked at at its smallest depth."""
    from ..models import model_config

    model = model_opts.model(model, dataset)  # a factory is checked at --depth (or its smallest depth)
    overrides = model_opts.overrides()
    if not isinstance(model, str):
        overrides.setdefault("depth", model.depth_step)
    return model, overrides, model_config(model, **overrides).get("depth")


def _check_watch_flags(steps: int, every: int | None, train_size: int | None) -> int:
    """Refuse out-of-range --steps/--every/--train-size (one line each); returns --every, by
    default a tenth of --steps."""
    from ..engine.config import MAX_STEPS

    if steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}")
    if steps > MAX_STEPS:
        raise ConfigError(f"--steps must be at most {MAX_STEPS:,}, got {steps:,}")
    if every is not None and every <= 0:
        raise ConfigError(f"--every must be positive, got {every}")
    if every is not None and every > max(steps, 1):
        raise ConfigError(f"--every must be at most --steps ({steps:,}), got {every:,}")
    every = every or max(1, steps // 10)
    if train_size is not None and train_size <= 0:
        raise ConfigError(f"--train-size must be positive, got {train_size}")
    return every


def _comparison_depths(
    model, overrides: dict, k: int | None, compare_depths: str | None, input_shape
) -> list[int]:
    """The depths of the gradient-vs-layer chart: --compare-depths, each checked (a factory must
    build at it), or else depths near K (for a factory, only those it builds)."""
    from ..analysis import diagnostics
    from ..engine.memory import MAX_DEPTH
    from ..grids import parse_grid
    from ..models import model_config

    if not compare_depths:
        depths = diagnostics.nearby_depths(model, k, overrides) if k else []
        if not isinstance(model, str):  # the factory's business: only the depths it builds
            depths = [d for d in depths if not _build_error(model, overrides, d, input_shape)]
        return depths
    depths = sorted(set(parse_grid(compare_depths, "--compare-depths", "depth", whole=True)))
    for d in depths:
        if d > MAX_DEPTH:
            raise ConfigError(f"--compare-depths must be at most {MAX_DEPTH:,}, got {d:,}")
        model_config(model, **{**overrides, "depth": d})
        if not isinstance(model, str) and (error := _build_error(model, overrides, d, input_shape)):
            raise ConfigError(f"--compare-depths {d}: {error}")
    return depths


def _write_depth_chart_and_summary(diag, profiles: dict, folder, stem: str) -> dict:
    """Save the depth-profile chart (when there are profiles) and the JSON summary in
    ``folder``; returns the summary."""
    from ..analysis import diagnostics
    from ..report.figures import save_figure
    from ..report.outputs import safe_child, write_text_atomic

    if profiles:
        save_figure(
            diagnostics.plot_depth_profiles(profiles, model=diag.model, layer_kind=diag.layer_kind),
            safe_child(folder, f"{stem}-depths.png"),
        )
    summary = diag.to_json()
    summary["depth_profiles"] = {
        str(d): {key: [float(v) for v in p[key]] for key in ("grad_norm", "signal_norm")}
        for d, p in profiles.items()
    }
    write_text_atomic(safe_child(folder, f"{stem}.json"), json.dumps(summary))
    return summary


def _echo_summary(diag, k, steps: int, lr: float) -> None:
    """The human-readable report: a table of (at most about 12) layers at initialisation, the
    last recorded step's loss and gradient norms, and the verdict."""
    from ..report.tables import format_table

    init_rows = [
        [
            i + 1,
            name,
            diag.act_mean[0, i],
            diag.act_std[0, i],
            diag.grad_norm[0, i],
            diag.signal_norm[0, i],
            diag.update_ratio[0, i],
        ]
        for i, name in enumerate(diag.layers)
    ]
    step_of = max(1, len(init_rows) // 12)
    shown = init_rows[::step_of] + ([init_rows[-1]] if (len(init_rows) - 1) % step_of else [])
    kind = "conv" if diag.layer_kind == "conv" else "Linear/conv"
    click.echo(
        f"{diag.model} depth {k}: {len(diag.layers)} {kind} layers, {steps} steps at lr {lr:g} "
        f"({diag.seconds:.1f}s); at initialisation:"
    )
    click.echo(
        format_table(["layer", "module", "act mean", "act std", "|dL/dW|", "|dL/dh|", "update/weight"], shown)
    )
    last = len(diag.steps) - 1
    click.echo(
        f"after {int(diag.steps[last])} steps: loss {diag.loss[last]:.4g}, |dL/dW| first/last layer "
        f"{diag.grad_norm[last, 0]:.3g} / {diag.grad_norm[last, -1]:.3g}"
        + (" (diverged)" if diag.diverged else "")
    )
    click.echo(diag.verdict.line())


def _build_error(factory, overrides: dict, depth: int, input_shape) -> str | None:
    """Why ``factory`` fails at ``depth`` (one line), or None when it builds."""
    from ..models import FactoryError, create_model

    try:
        create_model(factory, input_shape, 10, **{**overrides, "depth": depth})
    except FactoryError as exc:
        return str(exc)
    return None
