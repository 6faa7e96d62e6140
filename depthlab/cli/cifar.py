"""``depthlab reproduce resnet-cifar | resnet18-shortcuts | cifar-lr-bn``: the CIFAR-10
experiments of SPEC §2.4 (a thin layer over `depthlab.experiments.cifar`)."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError
from ..records.record import RunStatus
from .app import cli, create_output_folder, echo_err, open_store, output_folder
from .options import Values, data_options, option_group, run_options

CIFAR_EXPERIMENTS = ("resnet-cifar", "resnet18-shortcuts", "cifar-lr-bn")


def _check_positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value}")


def recipe_options(f):
    """The CIFAR-10 recipes' own flags as one `Values` parameter ``recipe``."""
    return option_group(
        "recipe",
        Values,
        click.option(
            "--n",
            "n",
            type=int,
            default=3,
            show_default=True,
            help="resnet-cifar: blocks per stack (depth 6n+2; 3, 5, 7, 9, 18 = resnet20 ... resnet110).",
        ),
        click.option(
            "--shortcut", default="A", show_default=True, help="resnet-cifar: shortcut option A or B."
        ),
        click.option(
            "--bn-impl",
            default="torch",
            show_default=True,
            help="torch or scratch (depthlab.models.layers.BatchNorm).",
        ),
        click.option(
            "--epochs",
            type=int,
            default=None,
            help="Override the recipe's epochs (resnet-cifar 200, resnet18 30).",
        ),
        click.option(
            "--max-epochs", type=int, default=None, help="cifar-lr-bn: cap every run's epochs (a quick look)."
        ),
        click.option(
            "--only",
            default=None,
            help="cifar-lr-bn: a comma list of its runs to train, e.g. bn-lr0.01,bn-lr0.05.",
        ),
        click.option(
            "--patience",
            type=int,
            default=50,
            show_default=True,
            help="resnet-cifar: stop after N epochs without improvement of the val error (best weights "
            "are restored).",
        ),
        click.option(
            "--warmup/--no-warmup",
            default=None,
            help="resnet-cifar: lr 0.01 for ~400 iterations (default: n=18).",
        ),
    )(f)


@cli.command()
@click.argument("name")
@recipe_options
@data_options(dataset_help="cifar10 or cifar10-jpeg (default: cifar10 if present, else the JPEG stand-in).")
@run_options(take=("seed", "device", "precision", "store", "out"), out_help="Folder for tables and plots.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (CUDA speed option).")
@click.option(
    "--checkpoint-dir",
    default="depthlab-checkpoints",
    show_default=True,
    help="Where every run saves its state after each epoch.",
)
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their checkpoints.")
@click.option("--rerun", is_flag=True, help="Train even if a config already finished in the store.")
def reproduce(name, recipe, data_opts, run, compile_model, checkpoint_dir, resume, rerun):
    """Reproduce a classic CIFAR-10 experiment by NAME: resnet-cifar, resnet18-shortcuts, cifar-lr-bn."""
    from ..data.registry import load_dataset
    from ..experiments.cifar import check_cifar_dataset, default_cifar_dataset
    from ..report.outputs import safe_output_dir

    if name not in CIFAR_EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(CIFAR_EXPERIMENTS)}")
    train_size, data_dir = data_opts.train_size, data_opts.data_dir
    for flag, value in (
        ("--epochs", recipe.epochs),
        ("--max-epochs", recipe.max_epochs),
        ("--train-size", train_size),
        ("--patience", recipe.patience),
    ):
        _check_positive(flag, value)
    dataset = data_opts.dataset or default_cifar_dataset(data_dir)
    check_cifar_dataset(dataset)
    configs, pairs = _experiment_configs(name, recipe, dataset, train_size, run)
    out = run.out
    _check_destinations(out, run.store_path, checkpoint_dir, resume, configs)
    data = load_dataset(dataset, data_dir)  # bad data fails before any folder or store is created
    folder = create_output_folder(out) if out else None
    ckpt = safe_output_dir(checkpoint_dir) if checkpoint_dir else None
    options = dict(out=folder, checkpoint_dir=ckpt, resume=resume, compile_model=compile_model, rerun=rerun)
    results = _run_experiment(name, configs, pairs, data, run.store_path, options)
    if any(r["status"] == RunStatus.FAILED for r in results):
        echo_err("depthlab: some runs failed (see the store for the reason)")
        sys.exit(1)


def _experiment_configs(name: str, recipe, dataset: str, train_size, run) -> tuple[list, list]:
    """The experiment's training configs at --precision (checked against the device), and for
    cifar-lr-bn its (lesson, config) pairs (empty for the others)."""
    import dataclasses

    from ..engine.device import check_precision, resolve_device
    from ..experiments.cifar import lr_bn_configs, resnet_cifar_config, shortcuts_configs

    rc, seed, device = recipe, run.seed, run.device
    pairs = []
    if name == "resnet-cifar":
        configs = [
            resnet_cifar_config(
                rc.n,
                shortcut=rc.shortcut,
                bn_impl=rc.bn_impl,
                dataset=dataset,
                epochs=rc.epochs or 200,
                patience=rc.patience,
                train_size=train_size,
                warmup=rc.warmup,
                seed=seed,
                device=device,
            )
        ]
    elif name == "resnet18-shortcuts":
        configs = shortcuts_configs(
            dataset=dataset,
            epochs=rc.epochs or 30,
            train_size=train_size,
            bn_impl=rc.bn_impl,
            seed=seed,
            device=device,
        )
    else:
        pairs = lr_bn_configs(
            dataset=dataset,
            max_epochs=rc.max_epochs,
            train_size=train_size,
            bn_impl=rc.bn_impl,
            seed=seed,
            device=device,
            only=rc.only.split(",") if rc.only else None,
        )
        configs = [config for _, config in pairs]
    check_precision(run.precision, resolve_device(device))
    configs = [dataclasses.replace(c, precision=run.precision) for c in configs]
    pairs = [(lesson, dataclasses.replace(c, precision=run.precision)) for lesson, c in pairs]
    return configs, pairs


def _check_destinations(out, store_path, checkpoint_dir, resume: bool, configs) -> None:
    """Refuse an unusable --out, --checkpoint-dir or --store, and a --resume without the
    checkpoints it needs, before any data is read or anything is created."""
    from ..experiments.cifar import check_resumable
    from ..report.outputs import check_output_dir
    from ..store.sqlite import check_store_path

    if out:
        output_folder(out, store_path)
    if checkpoint_dir:
        check_output_dir(checkpoint_dir)
    check_store_path(store_path)
    if resume:
        check_resumable(configs, checkpoint_dir)


def _run_experiment(name: str, configs, pairs, data, store_path, options: dict) -> list[dict]:
    """Train the experiment's runs into the store; returns each run's result."""
    from ..experiments.cifar import run_cifar_lr_bn, run_resnet18_shortcuts, run_resnet_cifar

    with open_store(store_path) as store:
        if name == "resnet-cifar":
            return [run_resnet_cifar(configs[0], data, store, **options)]
        if name == "resnet18-shortcuts":
            return list(run_resnet18_shortcuts(configs, data, store, **options).values())
        return list(run_cifar_lr_bn(pairs, data, store, **options)["results"].values())
