"""``depthlab phase --family mlp``: the wide-MLP trainability phase diagram (Schoenholz et al.
2017) over `depthlab.analysis.mlp_phase`, resumable cell by cell in the store."""

from __future__ import annotations

import json

import click

from ..errors import ConfigError
from .app import create_output_folder, log, output_folder
from .options import Values

DEFAULT_OUT = "depthlab-out/phase-mlp"


def mlp_grid_config(grid: Values, budget: Values, seed: int):
    """The validated `PhaseGridConfig` of the flags (unset ones keep the classic protocol)."""
    from ..analysis.mlp_phase import PhaseGridConfig
    from .theory_args import check_theory_args, parse_float_grid, parse_int_list

    check_theory_args(grid.act, grid.sigma_b2)
    changes = {"act": grid.act, "sigma_b2": grid.sigma_b2, "seed": seed}
    if grid.sigma_w2_text is not None:
        changes["sigma_w2s"] = tuple(parse_float_grid(grid.sigma_w2_text))
    if grid.depths_text is not None:
        changes["depths"] = tuple(parse_int_list(grid.depths_text, "--depths"))
    if grid.width is not None:
        if not (grid.width > 0 and float(grid.width).is_integer()):
            raise ConfigError(f"--width with --family mlp is the number of hidden units: a positive whole number, "
                              f"got {grid.width:g}")
        changes["width"] = int(grid.width)
    if grid.steps is not None:
        if grid.steps <= 0:
            raise ConfigError(f"--steps must be positive, got {grid.steps}")
        changes["steps"] = grid.steps
    if budget.train_size is not None:
        if budget.train_size <= 0:
            raise ConfigError(f"--train-size must be positive, got {budget.train_size}")
        changes["train_size"] = budget.train_size
    config = PhaseGridConfig(**changes)
    config.validate()
    return config


def phase_mlp(grid: Values, budget: Values, data_dir, run) -> None:
    """Validate every flag, then measure (or read back) each cell and write heatmap, CSV and JSON."""
    from ..analysis.mlp_phase import DEFAULT_THRESHOLD, measure_grid, theory_agreement
    from ..analysis.mlp_phase_report import (agreement_lines, depth_seconds, phase_summary, phase_table,
                                             write_phase_outputs)
    from ..data.registry import load_dataset
    from ..engine.device import check_precision, resolve_device
    from ..store.sqlite import Store, check_store_path

    config = mlp_grid_config(grid, budget, run.seed)
    threshold = 1.0 - DEFAULT_THRESHOLD if budget.threshold is None else budget.threshold
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold must be in (0, 1), got {threshold}")
    device = resolve_device(run.device)
    check_precision(run.precision, device)
    if run.precision != "fp32":
        raise ConfigError("--family mlp trains in fp32 only (the classic protocol)")
    out = run.out or DEFAULT_OUT
    output_folder(out, run.store_path)
    check_store_path(run.store_path)
    data = load_dataset(config.dataset, data_dir)
    folder = create_output_folder(out)

    def progress(p: dict) -> None:
        accs = " ".join(f"{a:.2f}" for a in p["accuracies"])
        log.info(f"phase mlp depth {p['depth']}: {p['trained']} cells trained in {p['seconds']:.1f}s; "
                 f"train accuracy {accs}")

    with Store(run.store_path) as store:
        measured = measure_grid(config, data, store, progress, device=device)
        seconds = depth_seconds(config, store)
    agreement = theory_agreement(measured, 1.0 - threshold)
    summary = phase_summary(measured, agreement, seconds)
    summary["threshold_error"] = threshold
    paths = write_phase_outputs(measured, summary, folder, 1.0 - threshold)
    if run.as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"train accuracy, {config.act} width {config.width}, sigma_b2 {config.sigma_b2:g}, "
               f"{config.steps} SGD steps at lr {config.lr:g}:")
    click.echo(phase_table(measured))
    for line in agreement_lines(agreement):
        click.echo(line)
    click.echo(f"{measured.trained} cells trained, {measured.reused} read from {run.store_path}; wrote "
               f"{', '.join(p.name for p in paths)} to {folder}/")
