"""The notebook-grade API: `train` and `frontier` as the command line runs them, in three lines.

    import depthlab
    result = depthlab.train(depthlab.TrainConfig(model="cnn-elu-bn", model_args={"depth": 30}, epochs=1))
    frontier = depthlab.frontier(build, store="runs.db", max_depth=12, epochs=1, train_size=5000)
    frontier.to_frame(), frontier.plot()

Both record into a store (a path or an open `Store`; None: nothing is recorded) and reuse what it
already holds exactly as the CLI does (`depthlab.sweep.runner.run_recorded`, the frontier's trial
runner), so a notebook and ``depthlab frontier --store`` share trials. ``progress`` shows a
tqdm bar (``tqdm.auto``: a widget in Jupyter, text elsewhere; nothing when tqdm is missing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from .data.dataset import Dataset
from .data.registry import check_dataset_name, load_dataset
from .depth_frontier.protocol import FrontierConfig
from .depth_frontier.results import FrontierResult
from .depth_frontier.search import find_frontiers
from .engine.config import TrainConfig
from .engine.loop import LoopCallback
from .errors import ConfigError
from .models import CLASSIC_PRESETS, PRESETS, ModelFactory, as_model
from .records.record import RunResult
from .store.sqlite import Store, checkpoint_dir_for, remove_if_empty
from .sweep.executors import ExecutorSpec
from .sweep.session import open_runner, opened_store

log = logging.getLogger("depthlab")


def train(
    config: Any,
    data: Dataset | None = None,
    *,
    store: str | os.PathLike | Store | None = None,
    progress: bool = True,
    reuse: bool = True,
    data_dir=None,
    **options: Any,
) -> RunResult:
    """Train ``config`` (a `TrainConfig`, or a model with its fields as keywords, named as the
    CLI's flags: ``train("cnn-tanh", depth=9, epochs=3, lr=0.1)``, `train_config`) and return
    its `RunResult` (``result.model`` is the trained network, ``result.to_frame()`` its epochs;
    a run read back from the store has no network: ``model`` None). With ``store`` the run is recorded there
    and a finished run of the same config is read back instead of trained (``reuse=False``
    trains again). With a store its state is also saved after every epoch beside it
    (``<store>-checkpoints/``): the same call after an interruption (Ctrl-C, a kill) continues
    from the last saved epoch, logs that it does, and ends with an uninterrupted run's result;
    the file goes once the run has ended (a failed run keeps it for the next attempt).
    ``options`` go to `run_recorded` (``monitor``, ``callbacks``: `depthlab.engine.loop.LoopCallback`s
    such as ``LambdaCallback(on_epoch_metrics=lambda loop, i, metrics: ...)``, ``kind``,
    ``experiment``). A config that leaves ``threads`` unset runs on this process's torch
    threads, recorded and hashed as such (`pinned_threads`), as ``depthlab train`` runs it."""
    run_options = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    config, options = pinned_threads(train_config(config, **options)), run_options
    from .engine.checkpoints import checkpoint_file, discard_checkpoint, resume_point
    from .records.record import RunStatus
    from .sweep.runner import run_recorded

    callbacks = list(options.pop("callbacks", ()))
    _check_factory_builds(config)
    with opened_store(store) as opened, _bar(progress, f"{config.model_name}", "step") as bar:
        folder = checkpoint_dir_for(opened.path) if opened is not None else None
        saved = checkpoint_file(folder, config)
        _add_leading_callbacks(callbacks, resume_point(saved, config.hash()), saved, bar)
        resumable = {} if saved is None else {"train_options": dict(checkpoint_path=saved, resume=True)}
        record = run_recorded(
            config,
            opened,
            data,
            data_dir=data_dir,
            reuse=reuse,
            callbacks=callbacks,
            keep_model=True,
            **resumable,
            **options,
        )
        if saved is not None and record.status != RunStatus.FAILED:
            discard_checkpoint(saved)
            remove_if_empty(folder)
        return record


def _add_leading_callbacks(callbacks: list, resumed_from: float | None, saved, bar) -> None:
    """Put in front of ``callbacks`` the step progress bar (with ``bar``), then the notice that
    the run resumes from ``saved`` (when ``resumed_from`` says it does), so they run first."""
    from .engine.callbacks import StepProgress

    if resumed_from is not None:
        callbacks.insert(
            0,
            _ResumeNotice(
                f"resuming from epoch {resumed_from:g}, saved in {saved} (an interrupted run of this config)"
            ),
        )
    if bar is not None:
        callbacks.insert(0, StepProgress(bar))


class _ResumeNotice(LoopCallback):
    """Says that a run continues from a checkpoint, once, before its restored epochs come back."""

    def __init__(self, line: str):
        self.line = line

    def on_train_start(self, loop) -> None:
        log.info(self.line)


def pinned_threads(config: TrainConfig) -> TrainConfig:
    """``config`` with its threads pinned: one that leaves them unset runs on every thread this
    process has, and says so, since CPU results depend on the count bitwise (the hash holds it
    unless it is `SWEEP_THREADS`). `train` and ``depthlab train`` run a config this way."""
    if config.threads is not None:
        return config
    import torch

    return dataclasses.replace(config, threads=torch.get_num_threads())


def frontier(
    models: Any = "all",
    store: str | os.PathLike | Store | None = None,
    progress: bool = True,
    *,
    workers: int | None = None,
    threads: int | None = None,
    executor=None,
    data: Dataset | None = None,
    data_dir=None,
    quick: bool = False,
    **fields: Any,
) -> FrontierResult:
    """The depth frontier of ``models``: a preset name, ``"all"`` (the eight classic presets),
    comma-separated presets, your own factory ``build(depth, **params)`` (a function or
    `ModelFactory`), or a list of these. ``fields`` are `FrontierConfig` fields (``max_depth=12,
    epochs=1, train_size=5000, lrs=(0.01, 0.1), model_args={"width": 2}``;
    ``optimizers=("sgd", "adam")`` searches both, each on its own grid, ``lrs={"adam": (1e-4,
    1e-3)}`` sets one; ``quick=True`` starts from `FrontierConfig.quick`). A factory's depths are multiples of its ``depth_step``
    (1 unless set), or of the field ``depth_step=N`` (any model). ``workers`` > 1 trains trials
    in that many worker processes; ``threads``: torch threads of every trial (default 1, as
    ``depthlab frontier``); ``executor`` takes a `depthlab.sweep.ExecutorSpec` (e.g.
    ``ExecutorSpec(kind="ray")``). The trials are those of ``depthlab frontier`` with the same
    flags: same hashes, same bits, reused from a store either wrote. Returns a
    `FrontierResult`: ``.to_frame()``, ``.plot()``, ``.models``."""
    names = frontier_models(models)
    make = FrontierConfig.quick if quick else FrontierConfig
    try:
        config = make(
            **{k: _as_tuples(v) if k in ("lrs", "depths", "optimizers") else v for k, v in fields.items()}
        )
    except TypeError as exc:
        raise ConfigError(f"frontier(): {exc}".replace("__init__() ", "")) from None
    config.validate()
    config.validate_models(names)
    for model in names:  # a factory that ends the process is refused before the data and the store
        if isinstance(model, ModelFactory):
            depth = min(config.depths or (config.step_for(model),))
            _check_factory_builds(config.trial_config(model, depth, config.points()[0], config.seed))
    spec = _executor_spec(workers, threads, executor)
    if data is None:
        data = load_dataset(config.dataset, data_dir)
    with _bar(progress, "frontier", "trial") as bar:

        def log(line: str) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(line[:60], refresh=False)

        return run_frontier(names, config, store, data, spec, data_dir=data_dir, log=log)


# `run_recorded`'s own keywords; every other keyword of `train` is a field of the config
RUN_OPTIONS = ("monitor", "callbacks", "kind", "experiment", "train_options")
# the CLI's model-axis flags (`--depth`, `--act`, ...): keywords that go to ``model_args``
MODEL_AXES = ("depth", "act", "init", "norm", "skip", "heads", "width")


def train_config(model: Any, **fields: Any) -> TrainConfig:
    """The `TrainConfig` of ``model`` (a preset name, a factory, or a `TrainConfig` whose fields
    ``fields`` replace) with ``fields`` named as the CLI's flags: the model axes (``depth``,
    ``act``, ``init``, ``norm``, ``skip``, ``heads``, ``width``) and ``params`` (``-p k=v``) go
    to ``model_args``, the rest are `TrainConfig` fields. One way from keywords to a config, for
    every entry point that trains."""
    if isinstance(model, TrainConfig) and not fields:
        return model
    args = _model_args(fields)
    try:
        if isinstance(model, TrainConfig):
            return dataclasses.replace(model, model_args={**model.model_args, **args}, **fields)
        return TrainConfig(model=as_model(model), model_args=args, **fields)
    except TypeError as exc:
        raise ConfigError(f"{exc}".replace("__init__() ", "").replace("TrainConfig.", "")) from None


def _model_args(fields: dict) -> dict:
    """Take the model's arguments out of ``fields``: ``model_args``, ``params`` and the model axes."""
    args = dict(fields.pop("model_args", None) or {})
    args.update(fields.pop("params", None) or {})
    args.update({k: fields.pop(k) for k in MODEL_AXES if fields.get(k) is not None})
    return args


def diagnose(model: Any, *, data: Dataset | None = None, data_dir=None, **fields: Any):
    """Per-layer gradient flow of ``model`` (a preset name or a factory) over a few SGD steps, as
    ``depthlab diagnose`` computes it: `depthlab.analysis.diagnostics.diagnose` with the model
    axes (``depth``, ``act``, ... ``params``) as keywords beside its own (``steps``, ``every``,
    ``lr``, ``momentum``, ``batch_size``, ``train_size``, ``seed``, ``device``, ``precision``).
    Returns a `Diagnostics` (``.verdict``, ``.to_frame()``). Nothing is recorded (no store)."""
    from .analysis.diagnostics import diagnose as run_diagnose

    args = _model_args(fields)
    return run_diagnose(model, args, data=data, data_dir=data_dir, **fields)


LR_RANGE = ("min_lr", "max_lr", "steps", "smoothing", "diverge", "burn_in")


def lr_find(model: Any, *, data: Dataset | None = None, data_dir=None, **fields: Any):
    """The exponential learning-rate range test of ``model`` (a preset name, a factory or a
    `TrainConfig`; its fields as keywords, as `train` takes them), as ``depthlab lr-find`` runs it:
    the range keywords (``min_lr``, ``max_lr``, ``steps``, ``smoothing``, ``diverge``,
    ``burn_in``) go to `depthlab.experiments.lr_find.lr_find`. Returns an `LRFindResult`
    (``.suggestion``). Nothing is recorded (no store); the weights are restored."""
    from .experiments.lr_find import lr_find as run_lr_find

    ranges = {k: fields.pop(k) for k in LR_RANGE if k in fields}
    return run_lr_find(train_config(model, **fields), data, data_dir=data_dir, **ranges)


def _as_tuples(value: Any) -> Any:
    """A grid field as `FrontierConfig` keeps it: lists become tuples (a mapping of optimizer to
    grid, ``lrs={"adam": [1e-4, 1e-3]}``, keeps its keys); a name (``optimizers="adam"``) is a tuple of one."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return tuple(value) if isinstance(value, (list, tuple, range)) else value


def _check_factory_builds(config: TrainConfig) -> None:
    """Build a factory's network once before any store is opened, as the command line does: one that
    tries to end the process (`errors.UserCodeExit`) is refused with nothing recorded. Any other
    failure is left to the run, which records it ``failed`` with its reason."""
    if not isinstance(config.model, ModelFactory):
        return
    config.validate()

    from .models import FactoryError, check_builds

    try:
        check_builds(config.model, check_dataset_name(config.dataset).input_shape, **config.model_args)
    except FactoryError:
        pass


def run_frontier(
    names: list,
    config: FrontierConfig,
    store: str | os.PathLike | Store | None,
    data: Dataset,
    spec: ExecutorSpec,
    *,
    data_dir=None,
    log: Callable[[str], None] | None = None,
    runner_log: Callable[[str], None] | None = None,
) -> FrontierResult:
    """The search of validated ``names`` and ``config`` on loaded ``data``, as `frontier` and
    ``depthlab frontier`` both run it: through the one runner `depthlab.sweep.open_runner`
    builds (so every trial computes on the spec's threads, and its key is the same from Python
    and from the shell). ``log`` hears each trial's line, ``runner_log`` the runner's."""
    with open_runner(
        spec, config.device, store, config.widest_grid(), data=data, data_dir=data_dir, log_line=runner_log
    ) as (opened, runner):
        return find_frontiers(names, config, opened, data, data_dir=data_dir, log=log, runner=runner)


def frontier_models(models: Any, what: str = "models") -> list:
    """The models a frontier searches, from ``"all"`` (the eight classic presets), preset names
    (one string, comma-separated, or a list), factories, or a list of these: preset names
    checked against the registry, factories as `ModelFactory`. ``what`` names the argument in
    errors (``--models`` on the command line)."""
    if isinstance(models, str) and models.strip() == "all":
        return list(CLASSIC_PRESETS)
    items = (
        models.split(",")
        if isinstance(models, str)
        else list(models)
        if isinstance(models, (list, tuple))
        else [models]
    )
    items = [m.strip() if isinstance(m, str) else m for m in items]
    items = [m for m in items if not (isinstance(m, str) and not m)]
    if not items:
        raise ConfigError(f"{what} is empty")
    for name in items:
        if isinstance(name, str) and name not in PRESETS:
            raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(sorted(PRESETS))} or all")
    return [as_model(m) for m in items]


def _executor_spec(workers: int | None = None, threads: int | None = None, executor=None) -> ExecutorSpec:
    """The validated `ExecutorSpec` of `frontier`'s ``workers``, ``threads`` and ``executor``
    (default: one trial at a time, in this process, on one thread, as ``depthlab frontier
    --workers 1``)."""
    spec = executor if executor is not None else ExecutorSpec(workers=1 if workers is None else workers)
    if not isinstance(spec, ExecutorSpec):
        raise ConfigError(f"executor must be a depthlab.sweep.ExecutorSpec, got {type(spec).__name__}")
    changes = {k: v for k, v in (("workers", workers), ("threads", threads)) if v is not None}
    spec = dataclasses.replace(spec, **changes)
    spec.validate()
    return spec


@contextlib.contextmanager
def _bar(enabled: bool, what: str, unit: str):
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    bar = tqdm(desc=what, unit=unit, leave=True)
    try:
        yield bar
    finally:
        bar.close()


__all__ = ["diagnose", "frontier", "frontier_models", "lr_find", "run_frontier", "train", "train_config"]
