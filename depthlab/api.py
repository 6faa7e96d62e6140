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
from typing import Any, Iterator

from .data.dataset import Dataset
from .data.registry import load_dataset
from .engine.config import TrainConfig
from .errors import ConfigError
from .frontier.protocol import FrontierConfig
from .frontier.search import FrontierResult, find_frontiers
from .models import CLASSIC_PRESETS, as_model
from .records.record import RunResult
from .store.sqlite import Store, checkpoint_dir_for, remove_if_empty

log = logging.getLogger("depthlab")


def train(config: Any, data: Dataset | None = None, *, store: str | os.PathLike | Store | None = None,
          progress: bool = True, reuse: bool = True, data_dir=None, **options: Any) -> RunResult:
    """Train ``config`` (a `TrainConfig`, or a model with its fields as keywords, named as the
    CLI's flags: ``train("cnn-tanh", depth=9, epochs=3, lr=0.1)``, `train_config`) and return
    its `RunResult` (``result.model`` is the trained network, ``result.to_frame()`` its epochs;
    a run read back from the store has no network: ``model`` None). With ``store`` the run is recorded there
    and a finished run of the same config is read back instead of trained (``reuse=False``
    trains again). With a store its state is also saved after every epoch beside it
    (``<store>-checkpoints/``): the same call after an interruption (Ctrl-C, a kill) continues
    from the last saved epoch, logs that it does, and ends with an uninterrupted run's result;
    the file goes once the run has ended (a failed run keeps it for the next attempt).
    ``options`` go to `run_recorded` (``monitor``, ``on_epoch``, ``on_step``, ``kind``,
    ``experiment``)."""
    run_options = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    config, options = train_config(config, **options), run_options
    from .engine.checkpoints import checkpoint_file, discard_checkpoint, resume_point
    from .records.record import RunStatus
    from .sweep.runner import run_recorded

    on_step, on_epoch = options.pop("on_step", None), options.pop("on_epoch", None)
    with _opened(store) as opened, _bar(progress, f"{config.model_name}", "step") as bar:
        folder = checkpoint_dir_for(opened.path) if opened is not None else None
        saved = checkpoint_file(folder, config)
        resumed_from = resume_point(saved, config.hash())

        def step(i: int, total: int) -> None:
            if bar is not None:
                bar.total = total * config.epochs
                bar.update(1)
            if on_step is not None:
                on_step(i, total)

        def epoch(metrics) -> None:
            nonlocal resumed_from
            if resumed_from is not None:  # the restored epochs come back first: say so once, before them
                log.info(f"resuming from epoch {resumed_from:g}, saved in {saved} (an interrupted run of this "
                         "config)")
                resumed_from = None
            if on_epoch is not None:
                on_epoch(metrics)

        resumable = {} if saved is None else {"train_options": dict(checkpoint_path=saved, resume=True)}
        record = run_recorded(config, opened, data, data_dir=data_dir, reuse=reuse, on_step=step, on_epoch=epoch,
                              keep_model=True, **resumable, **options)
        if saved is not None and record.status != RunStatus.FAILED:
            discard_checkpoint(saved)
            remove_if_empty(folder)
        return record


def frontier(models: Any = "all", store: str | os.PathLike | Store | None = None, progress: bool = True, *,
             workers: int | None = None, executor=None, data: Dataset | None = None, data_dir=None,
             quick: bool = False, **fields: Any) -> FrontierResult:
    """The depth frontier of ``models``: a preset name, ``"all"`` (the eight classic presets),
    your own factory ``build(depth, **params)`` (a function or `ModelFactory`), or a list of
    these. ``fields`` are `FrontierConfig` fields (``max_depth=12, epochs=1, train_size=5000,
    lrs=(0.01, 0.1), model_args={"width": 2}``; ``quick=True`` starts from
    `FrontierConfig.quick`). A factory's depths are multiples of its ``depth_step`` (1 unless
    set), or of the field ``depth_step=N`` (any model). ``workers`` > 1 trains trials in that
    many worker processes; ``executor`` takes a `depthlab.sweep.ExecutorSpec` (e.g.
    ``ExecutorSpec(kind="ray")``). Returns a `FrontierResult`: ``.to_frame()``, ``.plot()``,
    ``.models``."""
    names = _models(models)
    base = FrontierConfig.quick() if quick else FrontierConfig()
    try:
        config = dataclasses.replace(base, **{k: tuple(v) if k in ("lrs", "depths") and v is not None else v
                                              for k, v in fields.items()})
    except TypeError as exc:
        raise ConfigError(f"frontier(): {exc}".replace("__init__() ", "")) from None
    config.validate_models(names)
    if data is None:
        data = load_dataset(config.dataset, data_dir)
    with _opened(store) as opened, _bar(progress, "frontier", "trial") as bar:
        def log(line: str) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(line[:60], refresh=False)

        with _runner(workers, executor, config, opened, data, data_dir) as runner:
            return find_frontiers(names, config, opened, data, data_dir=data_dir, log=log, runner=runner)


# `run_recorded`'s own keywords; every other keyword of `train` is a field of the config
RUN_OPTIONS = ("monitor", "on_epoch", "on_step", "kind", "experiment", "train_options")
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


def _models(models: Any) -> list:
    if isinstance(models, str) and models == "all":
        return list(CLASSIC_PRESETS)
    items = list(models) if isinstance(models, (list, tuple)) else [models]
    if not items:
        raise ConfigError("no models given")
    return [as_model(m) for m in items]


@contextlib.contextmanager
def _opened(store) -> Iterator[Store | None]:
    if store is None or isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


@contextlib.contextmanager
def _runner(workers: int | None, executor, config: FrontierConfig, store: Store | None, data, data_dir):
    """None (trials run here, one after the other) or a `TrialRunner` on ``executor``/``workers``."""
    if executor is None and (workers is None or workers == 1):
        yield None
        return
    from .sweep.driver import TrialRunner
    from .sweep.executors import ExecutorSpec

    spec = executor if executor is not None else ExecutorSpec(workers=workers)
    if workers is not None and executor is not None:
        spec = dataclasses.replace(spec, workers=workers)
    spec.validate()
    checkpoints = checkpoint_dir_for(store.path) if store is not None else None
    with spec.create(config.device) as pool:
        yield TrialRunner(pool, store, data, data_dir=data_dir, fuse=spec.fuse_for(config.device, len(config.lrs)),
                          checkpoint_dir=checkpoints)
    if checkpoints is not None:
        remove_if_empty(checkpoints)


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


__all__ = ["diagnose", "frontier", "lr_find", "train", "train_config"]
