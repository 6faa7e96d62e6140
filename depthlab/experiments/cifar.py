"""The CIFAR-10 experiments of SPEC §2.4 as a Python API (the CLI's ``reproduce`` calls these).

- `run_resnet_cifar`: He et al.'s recipe for resnet-cifar (6n+2 layers) and our test error
  next to the paper's.
- `run_resnet18_shortcuts`: ``plain18`` against ``resnet18`` (Adam 0.01, 30 epochs), loss curves.
- `run_cifar_lr_bn`: the ``cifar-cnn`` lessons on learning rate, momentum and batch norm, each
  run's finding computed from its own numbers.

Each function trains through `depthlab.sweep.runner.run_recorded` (a finished config is never trained
twice; every epoch goes to the store), checkpoints every epoch when given a folder, and returns
plain dicts; printing goes through the ``echo`` callable (by default the ``depthlab.progress``
logger, which the CLI prints).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.dataset import Dataset, resolve_data_root
from ..data.registry import DATASETS
from ..engine.callbacks import LambdaCallback
from ..engine.checkpoints import checkpoint_file
from ..engine.config import TrainConfig
from ..engine.loop import LoopCallback
from ..errors import ConfigError
from ..models.catalog import CIFAR_DATASETS
from ..records.record import RunStatus
from ..report.figures import EPOCH_AXIS, new_axes, save_figure
from ..report.outputs import safe_child
from ..report.tables import format_table, write_csv
from ..report.wording import classic_line, percent
from ..store.sqlite import Store
from .parts import progress

# He et al. 2015, table 6 (CIFAR-10 test error, %), by n.
PAPER_TEST_ERROR = {3: 8.75, 5: 7.51, 7: 7.17, 9: 6.97, 18: 6.43}


WARMUP_ITERATIONS = 400  # resnet110: lr 0.01 for about the first 400 iterations


Echo = Callable[[str], None]


def default_cifar_dataset(data_dir=None) -> str:
    """``cifar10`` when its files exist under the data root, else the ``cifar10-jpeg`` stand-in
    when that exists, else ``cifar10`` (whose loader then names the files it expected)."""
    root = resolve_data_root(data_dir)
    if (root / "cifar-10-batches-py").is_dir() or (root / "cifar-10-python.tar.gz").is_file():
        return "cifar10"
    if (root / "CIFAR10-JPEG" / "cifar10-jpeg-q75.zip").is_file():
        return "cifar10-jpeg"
    return "cifar10"


def check_cifar_dataset(name: str) -> None:
    if name not in CIFAR_DATASETS:
        raise ConfigError(f"the CIFAR experiments run on {', '.join(CIFAR_DATASETS)}, not {name!r}")
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}")


def check_resumable(configs: list[TrainConfig], folder) -> None:
    """Fail (one clear line) on a corrupted or foreign checkpoint *before* anything is trained
    or written to the store; a missing checkpoint is fine (that run starts from scratch)."""
    from ..engine.checkpoints import load_checkpoint

    for config in configs:
        path = checkpoint_file(folder, config)
        if path is not None and path.exists():
            state = load_checkpoint(path)
            if state.get("config_hash") != config.hash():
                raise ConfigError(
                    f"checkpoint {path} belongs to a different configuration; "
                    "delete it or run without --resume"
                )


class Throughput(LoopCallback):
    """Training images/s of each epoch, timed from the end of its first step to the end of its
    last (so the first step's one-off costs and the evaluation are not counted). On CUDA,
    ``sync`` (``torch.cuda.synchronize``) runs at those two points only, so the figure counts
    finished work rather than queued kernels."""

    def __init__(self, batch_size: int, train_images: int, sync: Callable[[], None] | None = None):
        self.batch_size, self.train_images, self.sync = batch_size, train_images, sync
        self.first: float | None = None
        self.rates: list[float] = []
        self.fresh = False  # a rate was measured since the last `take_fresh`

    def on_step_end(self, loop, step: int) -> None:
        self.step(step, loop.setup.steps_per_epoch)

    def step(self, step: int, total: int) -> None:
        if self.sync is not None and (step == 1 or step == total):
            self.sync()
        now = time.perf_counter()
        if step == 1:
            self.first = now
        if step == total and total > 1 and self.first is not None:
            self.rates.append((self.train_images - self.batch_size) / max(now - self.first, 1e-9))
            self.fresh = True

    def take_fresh(self) -> float | None:
        """The rate of the epoch that just ended, or None (e.g. an epoch restored from a checkpoint)."""
        fresh, self.fresh = self.fresh, False
        return self.rates[-1] if fresh else None


def train_images(config: TrainConfig, data: Dataset) -> int:
    n = len(data.train_x) if config.train_size is None else min(config.train_size, len(data.train_x))
    if config.eval_split == "val":
        n -= max(1, int(round(n * config.val_fraction)))
    return n


def run_one(
    config: TrainConfig,
    data: Dataset,
    store: Store | None,
    *,
    experiment: str,
    label: str,
    echo: Echo = progress,
    checkpoint_dir=None,
    resume: bool = False,
    compile_model: bool = False,
    rerun: bool = False,
) -> dict:
    """Train one config through the store, printing the classic line and images/s per epoch;
    returns the run's record as a report dict (`RunResult.to_dict`, ``reused``, ``images_per_second``)."""
    import torch

    from ..engine.device import resolve_device
    from ..sweep.runner import run_recorded

    cuda = resolve_device(config.device).type == "cuda"
    meter = Throughput(
        config.batch_size, train_images(config, data), torch.cuda.synchronize if cuda else None
    )
    eval_label = "Val" if config.eval_split == "val" else "Test"

    def epoch_line(loop, index, m):
        measured = meter.take_fresh()
        rate = f", {measured:,.0f} img/s" if measured else ""
        echo(
            f"[{label}] {classic_line(m.epoch, config.epochs, m.train_error, m.test_error, eval_label)}"
            f" (loss {m.loss:.4f}, lr {m.lr:.4g}{rate})"
        )

    options = dict(
        checkpoint_path=checkpoint_file(checkpoint_dir, config), resume=resume, compile_model=compile_model
    )
    record = run_recorded(
        config,
        store,
        data,
        kind="reproduce",
        experiment=experiment,
        callbacks=[meter, LambdaCallback(on_epoch_metrics=epoch_line)],
        reuse=not rerun,
        train_options=options,
    )
    if record.reused:
        echo(f"[{label}] already in the store: shown from there (--rerun trains again)")
    # the report's row: the stored record's JSON, whether it was reused, and the measured speed
    return {
        **record.to_dict(),
        "reused": record.reused,
        "images_per_second": (sum(meter.rates) / len(meter.rates)) if meter.rates else None,
    }


def _plot(
    curves: list[tuple[str, list[float]]], ylabel: str, title: str, path: Path, log: bool = False
) -> Path:
    fig, ax = new_axes(figsize=(6, 4), dpi=100)
    for name, ys in curves:
        ax.plot(range(len(ys)), ys, label=name)
    ax.set_xlabel(EPOCH_AXIS)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def resnet_cifar_config(
    n: int = 3,
    *,
    shortcut: str = "A",
    bn_impl: str = "torch",
    dataset: str = "cifar10",
    epochs: int = 200,
    patience: int | None = 50,
    train_size: int | None = None,
    batch_size: int = 128,
    warmup: bool | None = None,
    seed: int = 0,
    device: str = "auto",
) -> TrainConfig:
    """He et al.'s recipe: SGD 0.1 / momentum 0.9 / weight decay 1e-4, batch 128, lr /10 at
    epochs 100 and 150 of 200 (scaled with ``epochs``), pad-crop-flip augmentation, 45k/5k
    train/val split, early stopping on val error with the best weights restored, test once.
    ``warmup`` (default: on for n = 18, i.e. resnet110) holds lr 0.01 for ~400 iterations."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"resnet-cifar needs n >= 1 (depth 6n+2), got {n}")
    if not isinstance(epochs, int) or epochs <= 0:
        raise ConfigError(f"epochs must be a positive integer, got {epochs}")
    milestones = sorted({max(1, round(epochs * 0.5)), max(1, round(epochs * 0.75))})
    schedule = "multistep:" + ",".join(str(m) for m in milestones)
    if warmup or (warmup is None and n >= 18):
        n_train = int(round((train_size or 50_000) * 0.9))
        steps_per_epoch = max(1, -(-n_train // batch_size))
        schedule = f"hold:{min(WARMUP_ITERATIONS / steps_per_epoch, epochs):.4g}@0.01+{schedule}"
    config = TrainConfig(
        model="resnet-cifar",
        model_args={"n": n, "shortcut": shortcut, "bn_impl": bn_impl},
        dataset=dataset,
        train_size=train_size,
        eval_split="val",
        val_fraction=0.1,
        epochs=epochs,
        batch_size=batch_size,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule=schedule,
        augment=True,
        patience=patience,
        seed=seed,
        device=device,
    )
    config.validate()
    return config


def run_resnet_cifar(
    config: TrainConfig,
    data: Dataset,
    store: Store | None = None,
    *,
    echo: Echo = progress,
    out=None,
    checkpoint_dir=None,
    resume: bool = False,
    compile_model: bool = False,
    rerun: bool = False,
) -> dict:
    """Train one resnet-cifar config and print its test error next to the paper's."""
    n = config.model_args["n"]
    depth = 6 * n + 2
    echo(
        f"resnet-cifar n={n} (resnet{depth}) on {data.name}, {train_images(config, data)} training images, "
        f"schedule {config.schedule}, {config.epochs} epochs"
    )
    result = run_one(
        config,
        data,
        store,
        experiment="resnet-cifar",
        label=f"resnet{depth}",
        echo=echo,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        compile_model=compile_model,
        rerun=rerun,
    )
    headers, rows = _resnet_cifar_table(f"resnet{depth}", config, data, result)
    echo(format_table(headers, rows))
    if data.name == "cifar10-jpeg":
        echo("(measured on the JPEG stand-in: expect a little more error than on the original CIFAR-10)")
    if out is not None:
        write_csv(safe_child(Path(out), f"resnet-cifar-n{n}.csv"), headers, rows)
    return {"n": n, "depth": depth, "paper_test_error": PAPER_TEST_ERROR.get(n), **result}


def _resnet_cifar_table(
    name: str, config: TrainConfig, data: Dataset, result: dict
) -> tuple[list[str], list[list]]:
    """The headers and the one row of the table of resnet-cifar run ``name``: its errors next to
    the paper's."""
    n = config.model_args["n"]
    paper = PAPER_TEST_ERROR.get(n)
    best_val = min((e["test_error"] for e in result["epochs"]), default=None)
    rows = [
        [
            name,
            n,
            config.model_args["shortcut"],
            data.name,
            len(result["epochs"]),
            result["status"],
            percent(best_val, 2),
            percent(result["test_error"], 2),
            f"{paper:.2f}%" if paper is not None else "-",
            f"{result['images_per_second']:,.0f}" if result.get("images_per_second") else "-",
            f"{result['seconds']:.0f}",
        ]
    ]
    headers = [
        "model",
        "n",
        "shortcut",
        "dataset",
        "epochs",
        "status",
        "best val err",
        "test err",
        "paper test err",
        "img/s",
        "seconds",
    ]
    return headers, rows


def shortcuts_configs(
    *,
    dataset: str = "cifar10",
    epochs: int = 30,
    train_size: int | None = None,
    bn_impl: str = "torch",
    seed: int = 0,
    device: str = "auto",
) -> list[TrainConfig]:
    """``plain18`` and ``resnet18``: Adam lr 0.01, batch 256, 30 epochs, test error each epoch."""
    configs = [
        TrainConfig(
            model=model,
            model_args={"bn_impl": bn_impl},
            dataset=dataset,
            train_size=train_size,
            epochs=epochs,
            batch_size=256,
            optimizer="adam",
            lr=0.01,
            momentum=0.0,
            augment=False,
            seed=seed,
            device=device,
        )
        for model in ("plain18", "resnet18")
    ]
    for c in configs:
        c.validate()
    return configs


def run_resnet18_shortcuts(
    configs: list[TrainConfig],
    data: Dataset,
    store: Store | None = None,
    *,
    echo: Echo = progress,
    out=None,
    checkpoint_dir=None,
    resume: bool = False,
    compile_model: bool = False,
    rerun: bool = False,
) -> dict:
    """Train plain18 and resnet18 and plot both training-loss curves."""
    results = {}
    for config in configs:
        results[config.model] = run_one(
            config,
            data,
            store,
            experiment="resnet18-shortcuts",
            label=config.model,
            echo=echo,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            compile_model=compile_model,
            rerun=rerun,
        )
    headers, rows = _shortcuts_table(results)
    echo(format_table(headers, rows))
    for line in shortcut_findings(results):
        echo(line)
    if out is not None:
        _write_shortcuts_outputs(results, headers, rows, data.name, Path(out), echo)
    return results


def _shortcuts_table(results: dict) -> tuple[list[str], list[list]]:
    """The headers and rows (one per model) of the shortcuts table: losses, errors and speed."""
    headers = [
        "model",
        "epochs",
        "status",
        "first loss",
        "final loss",
        "final train err",
        "final test err",
        "best test err",
        "img/s",
        "seconds",
    ]
    rows = []
    for model, r in results.items():
        ep = r["epochs"]
        rows.append(
            [
                model,
                len(ep),
                r["status"],
                ep[0]["loss"] if ep else None,
                ep[-1]["loss"] if ep else None,
                percent(ep[-1]["train_error"], 2) if ep else "-",
                percent(r["test_error"], 2),
                percent(min(e["test_error"] for e in ep), 2) if ep else "-",
                f"{r['images_per_second']:,.0f}" if r.get("images_per_second") else "-",
                f"{r['seconds']:.0f}",
            ]
        )
    return headers, rows


def _write_shortcuts_outputs(
    results: dict, headers: list[str], rows: list[list], data_name: str, folder: Path, echo: Echo
) -> None:
    """Write the shortcuts table as CSV and plot both training-loss curves into ``folder``."""
    write_csv(safe_child(folder, "resnet18-shortcuts.csv"), headers, rows)
    path = _plot(
        [(m, [e["loss"] for e in r["epochs"]]) for m, r in results.items()],
        "training loss",
        f"plain18 vs resnet18 on {data_name} (Adam 0.01)",
        safe_child(folder, "resnet18-shortcuts.png"),
        log=True,
    )
    echo(f"plot: {path}")


def shortcut_findings(results: dict) -> list[str]:
    """What the two runs show, computed from their numbers."""
    plain, res = results.get("plain18"), results.get("resnet18")
    if not plain or not res or not plain["epochs"] or not res["epochs"]:
        return []
    lp, lr_ = plain["epochs"][-1]["loss"], res["epochs"][-1]["loss"]
    target = lp  # the epoch at which resnet18 first reached plain18's final loss
    reached = next((e["epoch"] + 1 for e in res["epochs"] if e["loss"] <= target), None)
    lines = [
        f"final training loss: plain18 {lp:.4f}, resnet18 {lr_:.4f} "
        f"({'resnet18 lower' if lr_ < lp else 'plain18 lower or equal'})"
    ]
    if reached is not None:
        lines.append(
            f"resnet18 reached plain18's final loss ({lp:.4f}) after {reached} of {len(res['epochs'])} epochs"
        )
    return lines


@dataclass(frozen=True)
class Lesson:
    key: str
    model: str
    lr: float
    momentum: float
    batch_size: int
    epochs: int
    what: str


LR_BN_LESSONS = (
    Lesson("sgd-lr0.001", "cifar-cnn", 0.001, 0.0, 1024, 10, "plain SGD, small lr"),
    Lesson("sgd-lr0.9", "cifar-cnn", 0.9, 0.0, 1024, 5, "plain SGD, large lr"),
    Lesson("momentum-lr0.001", "cifar-cnn", 0.001, 0.9, 1024, 10, "small lr with momentum 0.9"),
    Lesson("cnn-lr0.01", "cifar-cnn", 0.01, 0.9, 256, 50, "no BN, lr 0.01"),
    Lesson("bn-lr0.01", "cifar-cnn-bn", 0.01, 0.9, 256, 50, "BN, lr 0.01"),
    Lesson("bn-lr0.05", "cifar-cnn-bn", 0.05, 0.9, 256, 50, "BN, higher lr 0.05"),
)


def lr_bn_configs(
    *,
    dataset: str = "cifar10",
    max_epochs: int | None = None,
    train_size: int | None = None,
    bn_impl: str = "torch",
    seed: int = 0,
    device: str = "auto",
    only: list[str] | None = None,
) -> list[tuple[Lesson, TrainConfig]]:
    """The six runs (SPEC §2.4 budgets; ``max_epochs`` caps each run's epochs for a quick look,
    ``only`` keeps the named runs, e.g. ``["bn-lr0.01", "bn-lr0.05"]``)."""
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs <= 0):
        raise ConfigError(f"--max-epochs must be a positive integer, got {max_epochs}")
    keys = [lesson.key for lesson in LR_BN_LESSONS]
    unknown = [k for k in (only or []) if k not in keys]
    if unknown:
        raise ConfigError(f"unknown cifar-lr-bn run {unknown[0]!r}; choose among: {', '.join(keys)}")
    pairs = []
    for lesson in LR_BN_LESSONS:
        if only and lesson.key not in only:
            continue
        epochs = lesson.epochs if max_epochs is None else min(lesson.epochs, max_epochs)
        lesson = replace(lesson, epochs=epochs)
        config = TrainConfig(
            model=lesson.model,
            model_args={"bn_impl": bn_impl},
            dataset=dataset,
            train_size=train_size,
            epochs=epochs,
            batch_size=lesson.batch_size,
            optimizer="sgd",
            lr=lesson.lr,
            momentum=lesson.momentum,
            seed=seed,
            device=device,
        )
        config.validate()
        pairs.append((lesson, config))
    return pairs


def run_cifar_lr_bn(
    pairs: list[tuple[Lesson, TrainConfig]],
    data: Dataset,
    store: Store | None = None,
    *,
    echo: Echo = progress,
    out=None,
    checkpoint_dir=None,
    resume: bool = False,
    compile_model: bool = False,
    rerun: bool = False,
) -> dict:
    """Train the lessons' runs in order, then print a table and what each run shows."""
    results: dict[str, dict] = {}
    for lesson, config in pairs:
        echo(
            f"--- {lesson.key}: {lesson.model}, {lesson.what}, batch {lesson.batch_size}, "
            f"momentum {lesson.momentum}, {lesson.epochs} epochs"
        )
        results[lesson.key] = run_one(
            config,
            data,
            store,
            experiment="cifar-lr-bn",
            label=lesson.key,
            echo=echo,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            compile_model=compile_model,
            rerun=rerun,
        )
    headers, rows = _lr_bn_table(pairs, results)
    echo(format_table(headers, rows))
    findings = lr_bn_findings(results)
    for line in findings:
        echo(line)
    if out is not None:
        folder = Path(out)
        write_csv(safe_child(folder, "cifar-lr-bn.csv"), headers, rows)
        _plot_lr_bn(pairs, results, data.name, folder, echo)
    return {"results": results, "findings": findings}


def _lr_bn_table(pairs: list[tuple[Lesson, TrainConfig]], results: dict) -> tuple[list[str], list[list]]:
    """The headers and rows (one per lesson, in order) of the cifar-lr-bn table."""
    headers = [
        "run",
        "model",
        "lr",
        "momentum",
        "batch",
        "epochs",
        "status",
        "final train err",
        "final test err",
        "best test err",
        "img/s",
        "seconds",
    ]
    rows = []
    for lesson, _config in pairs:
        r = results[lesson.key]
        ep = r["epochs"]
        finite = [e["test_error"] for e in ep if e["test_error"] == e["test_error"]]
        rows.append(
            [
                lesson.key,
                lesson.model,
                lesson.lr,
                lesson.momentum,
                lesson.batch_size,
                len(ep),
                r["status"],
                percent(ep[-1]["train_error"], 2) if ep else "-",
                percent(ep[-1]["test_error"], 2) if ep else "-",
                percent(min(finite), 2) if finite else "-",
                f"{r['images_per_second']:,.0f}" if r.get("images_per_second") else "-",
                f"{r['seconds']:.0f}",
            ]
        )
    return headers, rows


def _plot_lr_bn(
    pairs: list[tuple[Lesson, TrainConfig]], results: dict, data_name: str, folder: Path, echo: Echo
) -> None:
    """Plot the test-error curves of the lessons into ``folder``, one figure per batch size."""
    for group, keys in (
        ("batch1024", [p[0].key for p in pairs if p[0].batch_size == 1024]),
        ("batch256", [p[0].key for p in pairs if p[0].batch_size == 256]),
    ):
        curves = [(k, [e["test_error"] for e in results[k]["epochs"]]) for k in keys if results[k]["epochs"]]
        if curves:
            path = _plot(
                curves,
                "test error",
                f"cifar-cnn lessons, {group} ({data_name})",
                safe_child(folder, f"cifar-lr-bn-{group}.png"),
            )
            echo(f"plot: {path}")


def _train_errors(result: dict | None) -> list[float]:
    return [e["train_error"] for e in result["epochs"]] if result else []


def _first_epoch_below(errors: list[float], threshold: float) -> int | None:
    return next((i + 1 for i, e in enumerate(errors) if e <= threshold), None)


def lr_bn_findings(results: dict) -> list[str]:
    """One sentence per lesson, every verdict computed from the runs' own numbers."""
    return _learning_rate_findings(results) + _batch_norm_findings(results)


def _learning_rate_findings(results: dict) -> list[str]:
    """The plain-SGD lessons: a small lr, a large lr, and momentum at the small lr."""
    lines: list[str] = []
    slow, big, mom = (results.get(k) for k in ("sgd-lr0.001", "sgd-lr0.9", "momentum-lr0.001"))
    chance = 0.9
    if slow and slow["epochs"]:
        e = _train_errors(slow)
        drop = (e[0] - e[-1]) / max(len(e) - 1, 1)
        lines.append(
            f"sgd lr 0.001: train error {percent(e[0], 2)} -> {percent(e[-1], 2)} in {len(e)} epochs "
            f"({100 * drop:.2f} points per epoch after the first)"
            f"{': slow, still far from converged' if e[-1] > 0.5 else ''}."
        )
    if big:
        e = _train_errors(big)
        if big["status"] == RunStatus.DIVERGED:
            lines.append(f"sgd lr 0.9: diverged ({big.get('reason')}).")
        elif e:
            jumps = [abs(b - a) for a, b in zip(e, e[1:])]
            stuck = e[-1] >= chance - 0.02
            lines.append(
                f"sgd lr 0.9: train error per epoch {', '.join(percent(x, 2) for x in e)}"
                f"{' (at chance: the lr is too large to learn)' if stuck else ''}"
                f"{f'; largest epoch-to-epoch jump {100 * max(jumps):.1f} points' if jumps else ''}."
            )
    if slow and mom and slow["epochs"] and mom["epochs"]:
        es, em = _train_errors(slow), _train_errors(mom)
        reached = _first_epoch_below(em, es[-1])
        lines.append(
            f"momentum 0.9 at lr 0.001: final train error {percent(em[-1], 2)} vs {percent(es[-1], 2)} without "
            f"({'faster' if em[-1] < es[-1] else 'not faster'})"
            + (
                f"; it reached plain SGD's {len(es)}-epoch error after {reached} epoch(s)."
                if reached
                else "."
            )
        )
    return lines


def _batch_norm_findings(results: dict) -> list[str]:
    """The batch-norm lessons: BN against no BN at lr 0.01, then BN at the higher lr 0.05."""
    lines: list[str] = []
    cnn, bn, bn_hi = (results.get(k) for k in ("cnn-lr0.01", "bn-lr0.01", "bn-lr0.05"))
    if cnn and bn and cnn["epochs"] and bn["epochs"]:
        ec, eb = _train_errors(cnn), _train_errors(bn)
        reached = _first_epoch_below(eb, ec[-1])
        tc = min(e["test_error"] for e in cnn["epochs"])
        tb = min(e["test_error"] for e in bn["epochs"])
        lines.append(
            f"BN at lr 0.01: final train error {percent(eb[-1], 2)} vs {percent(ec[-1], 2)} without BN; best test "
            f"error {percent(tb, 2)} vs {percent(tc, 2)}"
            + (
                f"; BN reached the no-BN run's final train error after {reached} of {len(ec)} epochs."
                if reached
                else "."
            )
        )
    if bn and bn_hi and bn["epochs"]:
        if bn_hi["status"] == RunStatus.DIVERGED or not bn_hi["epochs"]:
            lines.append(
                f"BN at lr 0.05: {bn_hi['status']} ({bn_hi.get('reason')}): BN did not tolerate lr 0.05 here."
            )
        else:
            eh, eb = _train_errors(bn_hi), _train_errors(bn)
            th = min(e["test_error"] for e in bn_hi["epochs"])
            tb = min(e["test_error"] for e in bn["epochs"])
            falling = all(b < a for a, b in zip(eh, eh[1:]))
            verdict = (
                "ahead of" if eh[-1] < eb[-1] else "behind"
            ) + f" the lr-0.01 run after {len(eh)} epochs"
            lines.append(
                f"BN at lr 0.05: final train error {percent(eh[-1], 2)} (lr 0.01: {percent(eb[-1], 2)}), best test error "
                f"{percent(th, 2)} (lr 0.01: {percent(tb, 2)}), first-epoch loss {bn_hi['epochs'][0]['loss']:.2f} "
                f"(lr 0.01: {bn['epochs'][0]['loss']:.2f}): at 5x the lr it trains without diverging "
                f"but is {verdict}"
                + ("; its train error fell in every epoch (still learning)." if falling else ".")
            )
    return lines
