"""Theory commands: ``depthlab theory`` (mean-field predictions, phase diagram, measured overlay)
and ``depthlab phase`` (the measured side over a sigma_w2 grid on real MNIST: the largest
trainable depth of plain `stages` nets, or with ``--family mlp`` the wide-MLP train-accuracy
heatmap of Schoenholz et al. 2017, resumable cell by cell in the store). The maths is
`depthlab.theory`; the measuring is `depthlab.analysis.phase` and `depthlab.analysis.mlp_phase`."""

from __future__ import annotations

import json
import math

import click

from ..depth_frontier.protocol import FrontierConfig, parse_lrs
from ..errors import ConfigError
from ..grids import GRID_GRAMMAR, parse_grid
from ..theory import MAX_VARIANCE
from .app import cli, create_output_folder, log, output_folder
from .options import Values, option_from_field, option_group, run_options

ACTS = ("tanh", "relu", "elu")
MAX_THEORY_GRID = 100_000  # a sigma_w2 range with more points is a typo (and would not fit in memory)
MAX_CHECK_DEPTH = 3_000  # theory --check-widths builds real nets of --check-depth layers
MAX_CHECK_WIDTH = 64  # theory --check-widths builds real nets: 16 x 64 = 1,024 channels in the last stage
MAX_REFINE = 10  # phase --refine: bisection rounds between a trainable and an untrainable depth
DEFAULT_MLP_OUT = "depthlab-out/phase-mlp"  # phase --family mlp writes here without --out


def check_theory_args(act: str, sigma_b2: float) -> None:
    """The mean-field activation and bias variance, refused in one line when they have no theory."""
    if act not in ACTS:
        raise ConfigError(f"unknown activation {act!r}; choose one of: {', '.join(ACTS)}")
    if not math.isfinite(sigma_b2) or sigma_b2 < 0:
        raise ConfigError(f"--sigma-b2 must be a finite non-negative number, got {sigma_b2}")
    if sigma_b2 > MAX_VARIANCE:
        raise ConfigError(f"--sigma-b2 must be at most {MAX_VARIANCE:g}, got {sigma_b2:g}")


def theory_grid(
    text: str, what: str = "--sigma-w2", noun: str = "sigma_w2 value", *, upper: float = MAX_VARIANCE
) -> list[float]:
    """A sigma_w2 (or width) grid (`parse_grid`), in the order given, each value at most ``upper``."""
    return list(parse_grid(text, what, noun, max_count=MAX_THEORY_GRID, upper=upper))


def depth_list(text: str) -> list[int]:
    """``--depths``: positive whole numbers (`parse_grid`), sorted, each once."""
    return sorted(set(parse_grid(text, "--depths", "depth", whole=True)))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def theory_report(
    act: str,
    sigma_b2: float,
    sigma_w2s: list[float],
    *,
    depth: int | None = None,
    measured=(),
    out=None,
    note: str | None = None,
) -> tuple[dict, str | None]:
    """Compute the grid, write the table/CSV/JSON/plot to ``out``; return the JSON object and
    the folder written to (None without ``out``)."""
    from .. import theory
    from ..analysis.phase import MEASUREMENT_COLUMNS, measurement_rows, plot_phase_diagram
    from ..report.figures import save_figure
    from ..report.outputs import safe_child, write_text_atomic
    from ..report.tables import write_csv

    points = theory.phase_grid(act, sigma_b2, sigma_w2s)
    critical = theory.critical_sigma_w2(act, sigma_b2)
    summary = {
        "act": act,
        "sigma_b2": sigma_b2,
        "critical_sigma_w2": critical,
        "grid": [p.to_json() for p in points],
    }
    if depth is not None:
        w2, b2 = theory.critical_init(act, depth)
        summary["critical_init"] = {"depth": depth, "q_star": 1.0 / depth, "sigma_w2": w2, "sigma_b2": b2}
    if measured:
        summary["measured"] = [m.to_json() for m in measured]
    if out:
        folder = create_output_folder(out)
        stem = f"theory-{act}-b{sigma_b2:g}"
        headers = ["sigma_w2", "q_star", "chi_1", "c_star", "chi_c", "xi", "max_depth", "phase"]
        write_csv(
            safe_child(folder, f"{stem}.csv"), headers, [[getattr(p, h) for h in headers] for p in points]
        )
        write_text_atomic(safe_child(folder, f"{stem}.json"), json.dumps(summary, indent=2))
        save_figure(
            plot_phase_diagram(
                points, act=act, sigma_b2=sigma_b2, critical=critical, measured=measured, note=note
            ),
            safe_child(folder, f"phase-{act}-b{sigma_b2:g}.png"),
        )
        if measured:
            write_csv(
                safe_child(folder, f"measured-{act}-b{sigma_b2:g}.csv"),
                MEASUREMENT_COLUMNS,
                measurement_rows(measured),
            )
        return summary, str(folder)
    return summary, None


def print_theory(summary: dict, folder: str | None = None) -> None:
    """``theory`` (and stages ``phase``) for a person: the critical sigma_w2, the mean-field grid
    as a table, the measured overlay and init checks when present, and where the files went."""
    from ..report.tables import format_table

    crit = summary["critical_sigma_w2"]
    click.echo(
        f"mean-field theory, act {summary['act']}, sigma_b2 {summary['sigma_b2']:g}: critical sigma_w2 = "
        f"{'none found' if crit is None else f'{crit:.4f}'}"
    )
    if "critical_init" in summary:
        ci = summary["critical_init"]
        click.echo(
            f"critical init for depth {ci['depth']} (q* = 1/{ci['depth']}): sigma_w2 = {ci['sigma_w2']:.6g}, "
            f"sigma_b2 = {ci['sigma_b2']:.3g}"
        )

    def depth(g, key):  # JSON turned infinities into null; at criticality they are infinite
        return math.inf if g[key] is None and g["phase"] == "critical" else g[key]

    rows = [
        [
            g["sigma_w2"],
            g["q_star"],
            g["chi_1"],
            g["c_star"],
            depth(g, "xi"),
            depth(g, "max_depth"),
            g["phase"],
        ]
        for g in summary["grid"]
    ]
    click.echo(
        format_table(
            ["sigma_w2", "q*", "chi_1", "c*", "xi", "6 xi", "phase"], [[_fmt(v) for v in r] for r in rows]
        )
    )
    _echo_measured(summary)
    _echo_init_agreement(summary)
    if folder:
        click.echo(f"wrote table, JSON and phase diagram to {folder}")


def _echo_measured(summary: dict) -> None:
    """The measured overlay (when there is one): each sigma_w2's largest trainable and first
    failing depth beside the predicted 6 xi."""
    from ..report.tables import format_table

    if summary.get("measured"):
        click.echo("measured (largest trainable depth / first failing depth):")
        click.echo(
            format_table(
                ["sigma_w2", "max trainable", "first failing", "predicted 6 xi"],
                [
                    [
                        m["sigma_w2"],
                        _fmt(m["max_trainable_depth"]),
                        _fmt(m["first_failing_depth"]),
                        _fmt(_predicted(summary, m["sigma_w2"])),
                    ]
                    for m in summary["measured"]
                ],
            )
        )


def _echo_init_agreement(summary: dict) -> None:
    """``theory --check-widths`` (when given): chi_1 and E[phi^2] of the theory beside those
    measured on real nets at init."""
    from ..report.tables import format_table

    if summary.get("init_agreement"):
        click.echo("theory vs real nets at init (one MNIST batch, 3 seeds, inside one stage):")
        click.echo(
            format_table(
                [
                    "sigma_w2",
                    "width",
                    "stage",
                    "channels",
                    "chi_1 theory",
                    "chi_1 measured",
                    "E[phi^2] theory",
                    "E[phi^2] measured",
                ],
                [
                    [
                        r["sigma_w2"],
                        r["width"],
                        r["stage"],
                        r["channels"],
                        r["chi_1_theory"],
                        r["chi_1_measured"],
                        r["phi2_theory"],
                        r["phi2_measured"],
                    ]
                    for r in summary["init_agreement"]
                ],
            )
        )


def _predicted(summary: dict, sigma_w2: float):
    from .. import theory

    return theory.mean_field_point(summary["act"], sigma_w2, summary["sigma_b2"]).max_depth


def _emit(summary: dict, folder: str | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
    else:
        print_theory(summary, folder)


@cli.command()
@click.option("--act", default="tanh", show_default=True, help="tanh, relu or elu.")
@click.option("--sigma-b2", type=float, default=0.05, show_default=True, help="Bias variance.")
@click.option(
    "--sigma-w2",
    "sigma_w2_text",
    default="lin:0.5:4:71",
    show_default=True,
    help=f"sigma_w2 grid: {GRID_GRAMMAR}.",
)
@click.option("--depth", type=int, default=None, help="Also print the critical init for this depth.")
@click.option("--store", "store_path", default=None, help="Overlay measured frontiers found in this store.")
@click.option(
    "--measured",
    "measured_csv",
    default=None,
    help="Overlay measured points from a CSV (sigma_w2, max_trainable_depth[, first_failing_depth]).",
)
@click.option("--width", type=float, default=None, help="With --store: only runs of this width multiplier.")
@click.option(
    "--check-widths",
    default=None,
    help=f"Compare chi_1 and E[phi^2] with real nets at init for these width multipliers, e.g. 1,2,4: "
    f"{GRID_GRAMMAR}.",
)
@click.option(
    "--check-depth",
    type=int,
    default=36,
    show_default=True,
    help="Depth of the nets --check-widths builds (6 to 3,000).",
)
@click.option("--data-dir", default=None, help="Data root for --check-widths.")
@click.option("--out", default=None, help="Folder for the table, JSON and phase diagram.")
@click.option(
    "--force",
    is_flag=True,
    help="Write into an --out folder that holds another command's results or files depthlab did not write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def theory(
    act,
    sigma_b2,
    sigma_w2_text,
    depth,
    store_path,
    measured_csv,
    width,
    check_widths,
    check_depth,
    data_dir,
    out,
    force,
    as_json,
):
    """Mean-field predictions for a plain net: q*, chi_1, correlation depth xi and the
    trainable depth 6 xi over a sigma_w2 grid, the critical sigma_w2, and a phase diagram."""
    from ..analysis.phase import measurements_from_store, read_measurements_csv
    from ..store.sqlite import Store, check_store_path

    check_theory_args(act, sigma_b2)
    sigma_w2s = theory_grid(sigma_w2_text)
    if depth is not None and depth <= 0:
        raise ConfigError(f"--depth must be positive, got {depth}")
    from ..engine.memory import MAX_DEPTH

    if depth is not None and depth > MAX_DEPTH:
        raise ConfigError(f"--depth must be at most {MAX_DEPTH:,}, got {depth:,}")
    if width is not None and not (math.isfinite(width) and width > 0):
        raise ConfigError(f"--width must be positive, got {width}")
    if check_depth < 6 or check_depth % 3:
        raise ConfigError(f"--check-depth must be a multiple of 3 and at least 6, got {check_depth}")
    if out:
        output_folder(out, store_path)  # checked before anything is computed or written
    measured = []
    if measured_csv:
        measured += read_measurements_csv(measured_csv)
    if store_path:
        check_store_path(store_path, must_exist=True)
        with Store(store_path, reading=True) as store:
            measured += measurements_from_store(store, act, sigma_b2, width=width)
    widths = (
        theory_grid(check_widths, "--check-widths", "width", upper=MAX_CHECK_WIDTH) if check_widths else []
    )
    if check_depth > MAX_CHECK_DEPTH:  # it builds real nets of that depth, several per width
        raise ConfigError(f"--check-depth must be at most {MAX_CHECK_DEPTH:,}, got {check_depth:,}")
    summary, folder = theory_report(act, sigma_b2, sigma_w2s, depth=depth, measured=measured, out=out)
    if widths:
        summary["init_agreement"] = init_agreement_rows(
            act, sigma_b2, sigma_w2s, widths, check_depth, data_dir
        )
    _emit(summary, folder, as_json)


def init_agreement_rows(act, sigma_b2, sigma_w2s, widths, depth, data_dir) -> list[dict]:
    """`phase.init_agreement` for each sigma_w2, width and stage (first and last)."""
    import dataclasses

    from ..analysis.phase import init_agreement
    from ..data.registry import load_dataset

    data = load_dataset("mnist", data_dir)
    rows = []
    for w2 in sigma_w2s:
        for width in widths:
            for stage in (0, 2):
                a = init_agreement(act, w2, sigma_b2, width, data, depth=depth, stage=stage)
                rows.append({"stage": stage + 1, **dataclasses.asdict(a)})
    return rows


FAMILIES = ("stages", "mlp")


def phase_grid_options(f):
    """What the phase sweep measures, as one `Values` parameter ``grid``. Defaults that depend
    on --family are None here and resolved per family (`_stages_defaults`, `PhaseGridConfig`)."""
    return option_group(
        "grid",
        Values,
        click.option(
            "--family",
            type=click.Choice(FAMILIES),
            default="stages",
            show_default=True,
            help="stages: the measured frontier of plain stages CNNs; mlp: the wide-MLP trainability "
            "heatmap of Schoenholz et al. 2017 (train accuracy per sigma_w2 and depth).",
        ),
        click.option("--act", default="tanh", show_default=True, help="tanh, relu or elu."),
        click.option(
            "--sigma-b2", type=float, default=0.05, show_default=True, help="Bias variance of the init."
        ),
        click.option(
            "--sigma-w2",
            "sigma_w2_text",
            default=None,
            help=f"The sigma_w2 values to measure: {GRID_GRAMMAR} (default 1,2.5,4; mlp lin:1:4:13).",
        ),
        click.option(
            "--depths",
            "depths_text",
            default=None,
            help="stages: depth ladder, walked up until a depth fails (multiples of 3; default "
            "6,12,24,48,96); mlp: the depths of the grid (default 10,20,...,100).",
        ),
        click.option(
            "--refine",
            type=int,
            default=None,
            help="stages: bisection steps between the last trainable and first failing depth (default 1).",
        ),
        click.option(
            "--lrs",
            "lrs_text",
            default=None,
            help="stages: learning rates (tried in the frontier's order: from the one that trained the "
            f"last depth; default 0.03,0.1): {GRID_GRAMMAR}.",
        ),
        click.option(
            "--width",
            type=float,
            default=None,
            help="stages: channel width multiplier (default 2); mlp: hidden units (default 300).",
        ),
        click.option(
            "--steps",
            type=int,
            default=None,
            help="mlp: SGD steps per cell (default 200; longer budgets are a new grid in the store).",
        ),
    )(f)


def phase_budget_options(f):
    """Each trial's budget and criterion, as one `Values` parameter ``budget``."""
    return option_group(
        "budget",
        Values,
        option_from_field(
            FrontierConfig, "epochs", default=None, help="stages: budget per trial (default 3)."
        ),
        click.option(
            "--train-size",
            type=int,
            default=None,
            help="Training images (default stages 10000; mlp all, used to train and to measure accuracy).",
        ),
        click.option(
            "--test-size",
            type=int,
            default=None,
            help="stages: evaluate on a fixed subset of N test images (as `frontier` does; default 2000).",
        ),
        option_from_field(
            FrontierConfig,
            "threshold",
            default=None,
            help="Trainable when the error drops below this (default stages 0.2; mlp 0.6: train "
            "accuracy above 0.4).",
        ),
    )(f)


STAGES_DEFAULTS = dict(
    sigma_w2_text="1,2.5,4",
    depths_text="6,12,24,48,96",
    refine=1,
    lrs_text="0.03,0.1",
    width=2.0,
    epochs=FrontierConfig().epochs,
    train_size=10_000,
    test_size=2000,
)
MLP_ONLY = ("steps",)
STAGES_ONLY = ("refine", "lrs_text", "epochs", "test_size")


def _resolve_family_flags(grid: Values, budget: Values) -> None:
    """Reject flags of the other family; fill in this family's defaults (stages) in place."""
    flag = {"lrs_text": "--lrs", "test_size": "--test-size"}
    given = {**grid.given(), **budget.given()}
    wrong = STAGES_ONLY if grid.family == "mlp" else MLP_ONLY
    for name in wrong:
        if name in given:
            raise ConfigError(
                f"{flag.get(name, '--' + name.replace('_', '-'))} does not apply to --family {grid.family}"
            )
    if grid.family == "stages":
        for values in (grid, budget):
            for name, default in STAGES_DEFAULTS.items():
                if hasattr(values, name) and getattr(values, name) is None:
                    setattr(values, name, default)


@cli.command()
@phase_grid_options
@phase_budget_options
@click.option("--data-dir", default=None)
@run_options(
    take=("seed", "device", "precision", "store", "out", "json"),
    out_help="Folder for the measured CSV and the phase diagram.",
)
def phase(grid, budget, data_dir, run):
    """Measure the largest trainable depth of plain `stages` nets with init scaled:W2,B2 over a
    sigma_w2 grid on real MNIST, and overlay it on the mean-field prediction; or (--family mlp)
    the train-accuracy heatmap of wide tanh MLPs over (sigma_w2, depth) against xi_c."""
    _resolve_family_flags(grid, budget)
    if grid.family == "mlp":
        return phase_mlp(grid, budget, data_dir, run)
    if budget.threshold is None:
        budget.threshold = FrontierConfig().threshold
    from ..data.registry import load_dataset
    from ..store.sqlite import check_store_path

    sigma_w2s, ladder, lrs = _check_stages_flags(grid, budget, run)
    if run.out:
        output_folder(run.out, run.store_path)
    check_store_path(run.store_path)
    data = load_dataset("mnist", data_dir)
    measured = _measure_stages(grid, budget, run, sigma_w2s, ladder, lrs, data)
    from ..theory import default_sigma_w2_grid

    act, sigma_b2 = grid.act, grid.sigma_b2
    note = (
        f"measured: stages {act}, width x{grid.width:g}, scaled:W2,{sigma_b2:g}, MNIST {budget.train_size} "
        f"images, {budget.epochs} epochs, SGD m0.9, lrs {grid.lrs_text}, error < {budget.threshold:g}"
    )
    report_grid = sorted(set(default_sigma_w2_grid() + sigma_w2s))
    summary, folder = theory_report(act, sigma_b2, report_grid, measured=measured, out=run.out, note=note)
    if not run.as_json:
        summary["grid"] = [g for g in summary["grid"] if g["sigma_w2"] in sigma_w2s]
    _emit(summary, folder, run.as_json)


def _check_stages_flags(grid: Values, budget: Values, run) -> tuple[list[float], list[int], list[float]]:
    """Refuse a stages ``phase``'s bad flags (one line each) and build every trial's config
    before the store is opened; returns the sigma_w2 grid, the depth ladder and the lrs."""
    from ..analysis.phase import phase_configs

    check_theory_args(grid.act, grid.sigma_b2)
    sigma_w2s = theory_grid(grid.sigma_w2_text)
    ladder = depth_list(grid.depths_text)
    lrs = list(parse_lrs(grid.lrs_text))
    if not 0 <= grid.refine <= MAX_REFINE:
        raise ConfigError(f"--refine must be from 0 to {MAX_REFINE}, got {grid.refine}")
    if not 0 < budget.threshold < 1:
        raise ConfigError(f"--threshold must be in (0, 1), got {budget.threshold}")
    if not grid.width > 0:  # its upper bound: the model's (StagesSpec)
        raise ConfigError(f"--width must be positive, got {grid.width}")
    if budget.epochs <= 0 or budget.train_size <= 0 or budget.test_size <= 0:
        raise ConfigError("--epochs, --train-size and --test-size must be positive")
    phase_configs(
        grid.act,
        grid.sigma_b2,
        sigma_w2s,
        ladder,
        lrs,
        width=grid.width,
        epochs=budget.epochs,
        train_size=budget.train_size,
        test_size=budget.test_size,
        threshold=budget.threshold,
        seed=run.seed,
        device=run.device,
        precision=run.precision,
    )  # every trial, before the store
    return sigma_w2s, ladder, lrs


def _measure_stages(grid: Values, budget: Values, run, sigma_w2s, ladder, lrs, data):
    """Measure (or replay from the store) the largest trainable depth at each sigma_w2, with the
    fixed thread count of a sweep's trials."""
    from ..analysis.phase import measure_phase
    from ..engine.config import SWEEP_THREADS
    from ..engine.device import thread_scope
    from ..store.sqlite import Store

    with Store(run.store_path) as store, thread_scope(SWEEP_THREADS):
        return measure_phase(
            grid.act,
            grid.sigma_b2,
            sigma_w2s,
            ladder,
            lrs,
            store,
            data,
            width=grid.width,
            epochs=budget.epochs,
            train_size=budget.train_size,
            test_size=budget.test_size,
            threshold=budget.threshold,
            refine=grid.refine,
            seed=run.seed,
            device=run.device,
            log=log.info,
            precision=run.precision,
        )


def mlp_grid_config(grid: Values, budget: Values, seed: int):
    """The validated `PhaseGridConfig` of the flags (unset ones keep the classic protocol)."""
    from ..analysis.mlp_phase import PhaseGridConfig

    check_theory_args(grid.act, grid.sigma_b2)
    changes = {"act": grid.act, "sigma_b2": grid.sigma_b2, "seed": seed}
    if grid.sigma_w2_text is not None:
        changes["sigma_w2s"] = tuple(theory_grid(grid.sigma_w2_text))
    if grid.depths_text is not None:
        changes["depths"] = tuple(depth_list(grid.depths_text))
    if grid.width is not None:
        if not (grid.width > 0 and float(grid.width).is_integer()):
            raise ConfigError(
                f"--width with --family mlp is the number of hidden units: a positive whole number, "
                f"got {grid.width:g}"
            )
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
    from ..analysis.mlp_phase_report import (
        agreement_lines,
        depth_seconds,
        phase_summary,
        phase_table,
        write_phase_outputs,
    )
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
    out = run.out or DEFAULT_MLP_OUT
    output_folder(out, run.store_path)
    check_store_path(run.store_path)
    data = load_dataset(config.dataset, data_dir)
    folder = create_output_folder(out)

    def progress(p: dict) -> None:
        accs = " ".join(f"{a:.2f}" for a in p["accuracies"])
        log.info(
            f"phase mlp depth {p['depth']}: {p['trained']} cells trained in {p['seconds']:.1f}s; "
            f"train accuracy {accs}"
        )

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
    click.echo(
        f"train accuracy, {config.act} width {config.width}, sigma_b2 {config.sigma_b2:g}, "
        f"{config.steps} SGD steps at lr {config.lr:g}:"
    )
    click.echo(phase_table(measured))
    for line in agreement_lines(agreement):
        click.echo(line)
    click.echo(
        f"{measured.trained} cells trained, {measured.reused} read from {run.store_path}; wrote "
        f"{', '.join(p.name for p in paths)} to {folder}/"
    )
