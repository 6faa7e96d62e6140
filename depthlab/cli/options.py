"""Command-line options built from the config dataclasses, and grouped into option objects.

Defaults and help texts live in one place, the dataclass fields (`TrainConfig`,
`FrontierConfig`): `option_from_field` turns a field into a click option (its type, default,
help from ``metadata["help"]``, choices from ``metadata["choices"]``). `option_group` bundles
options into one object handed to the command, so that a command takes a handful of objects:

- `ModelOptions` (``model_options``): the model-axis overrides (--depth, --act, ... -p KEY=VALUE,
  and with ``toggles`` --bn/--no-bn, --no-skip);
- `DataOptions` (``data_options``, parameter ``data_opts``): --dataset, --data-dir, --train-size;
- `RunOptions` (``run_options``): --seed, --device, --precision, --store, --out, --json,
  --tensorboard (each command picks the ones it takes);
- `Values` (``train_options`` and the frontier's protocol group): hyperparameters, by field name;
- the validated `depthlab.sweep.ExecutorSpec` (``executor_options``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass

import click

from ..engine.config import TrainConfig
from ..errors import ConfigError

# ---------------------------------------------------------------------------------------------
# One option from one dataclass field


_MISSING = object()


def field_of(cls, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def field_default(cls, name: str):
    """The default of field ``name`` of dataclass ``cls``."""
    f = field_of(cls, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def field_help(cls, name: str) -> str | None:
    return field_of(cls, name).metadata.get("help")


def _click_type(cls, name: str):
    """The click type of a field: its annotation without ``| None`` (int, float, str, bool)."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return hint if hint in (int, float, str, bool) else str


def option_from_field(
    cls,
    name: str,
    *decls: str,
    default=_MISSING,
    help: str | None = None,
    show_default: bool | None = None,
    **kwargs,
):
    """A click option for field ``name`` of dataclass ``cls``: flag ``--field-name`` (or
    ``decls``), the field's type, default (``default`` replaces it, e.g. None for "the model's
    own"), help (``metadata["help"]`` unless ``help`` is given) and choices
    (``metadata["choices"]``). The parameter it fills is named after the field."""
    f = field_of(cls, name)
    decls = decls or (f"--{name.replace('_', '-')}",)
    value = field_default(cls, name) if default is _MISSING else default
    kind = _click_type(cls, name)
    options = dict(default=value, help=help if help is not None else f.metadata.get("help"))
    if kind is bool and "is_flag" not in kwargs and not any("/" in d for d in decls):
        options["is_flag"] = True
    elif "choices" in f.metadata and "type" not in kwargs:
        options["type"] = click.Choice(list(f.metadata["choices"]))
    elif kind is not str and "type" not in kwargs:
        options["type"] = kind
    if show_default is None:
        show_default = value is not None and kind is not bool
    options["show_default"] = show_default
    options.update(kwargs)
    return click.option(*decls, name, **options)


# ---------------------------------------------------------------------------------------------
# Groups of options, handed to the command as one object


def option_group(dest: str, factory, *options):
    """A decorator adding ``options`` (click.option decorators) to a command and giving the
    command, instead of one parameter per option, the single keyword ``dest``:
    ``factory(**values)`` (a dataclass, `Values`, or a function that validates, like
    `executor_spec`)."""

    def probe():  # learns the names of the parameters the options fill
        pass

    for option in options:
        probe = option(probe)
    names = {p.name for p in probe.__click_params__}

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            kwargs[dest] = factory(**{n: kwargs.pop(n) for n in names if n in kwargs})
            return f(*args, **kwargs)

        command.__click_params__ = list(getattr(f, "__click_params__", []))
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


class Values:
    """Option values by field name (the ones a command takes); `given` drops the unset ones."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def fields(self) -> dict:
        return dict(self.__dict__)

    def given(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __repr__(self) -> str:
        return f"Values({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


# ---------------------------------------------------------------------------------------------
# Model axes


@dataclass
class ModelOptions:
    """Overrides of the model's spec (only those the model's family takes are accepted)."""

    depth: int | None = None
    act: str | None = None
    init: str | None = None
    norm: str | None = None
    skip: str | None = None
    heads: int | None = None
    width: float | None = None
    params: tuple = ()
    bn: bool | None = None  # --bn/--no-bn (commands with toggles)
    no_skip: bool = False  # --no-skip
    model_file: str | None = None  # --model-file nets.py:build (your own model factory)

    def model(self, name: str | None, dataset: str | None = None):
        """MODEL, or with --model-file the factory it names, checked by building it at its smallest
        depth (a factory that fails there is bad input: one line, exit 2)."""
        if self.model_file is None:
            if name is None:
                raise ConfigError("give a MODEL (a preset name) or --model-file PATH.py:FUNCTION")
            return name
        if name is not None:
            raise ConfigError(f"give a MODEL or --model-file, not both (got {name!r})")
        from ..data.registry import check_dataset_name
        from ..models import FactoryError, ModelFactory, check_builds

        factory = ModelFactory.from_file(self.model_file)
        args = {**self.overrides(), "depth": self.depth or factory.depth_step}
        try:
            check_builds(factory, check_dataset_name(dataset or "mnist").input_shape, **args)
        except FactoryError as exc:
            raise ConfigError(f"--model-file {self.model_file}: {exc}") from None
        return factory

    def overrides(self, model: str | None = None, *, depth: bool = True) -> dict:
        """The ``model_args`` these flags ask for (``depth=False``: without --depth); with
        ``model``, --bn/--no-bn and --no-skip become that model's toggles."""
        overrides = model_overrides(
            self.depth if depth else None,
            self.act,
            self.init,
            self.norm,
            self.skip,
            self.heads,
            self.width,
            self.params,
        )
        if self.bn is not None or self.no_skip:
            from ..experiments.configs import toggle_override

            if self.bn is not None:
                overrides.update(toggle_override(model, "bn", self.bn))
            if self.no_skip:
                overrides.update(toggle_override(model, "skip", False))
        return overrides


def model_overrides(
    depth=None, act=None, init_=None, norm=None, skip=None, heads=None, width=None, params=()
) -> dict:
    overrides = dict(depth=depth, act=act, init=init_, norm=norm, skip=skip, heads=heads, width=width)
    for item in params:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"bad --param {item!r}: expected KEY=VALUE")
        overrides[key.replace("-", "_")] = value
    return {k: v for k, v in overrides.items() if v is not None}


def model_options(f=None, *, toggles: bool = False, model_file: bool = False):
    """The model-axis flags as one `ModelOptions` parameter ``model_opts``; ``toggles`` adds
    ``--bn/--no-bn`` and ``--no-skip`` (friendlier spellings of the model's toggles: skipfc
    bn=true / skip=false; stages norm=bn / skip=none; strided skip=none)."""
    if f is None:
        return functools.partial(model_options, toggles=toggles, model_file=model_file)
    options = [
        click.option(
            "--depth", type=int, default=None, help="Number of conv layers (stages: multiple of 3)."
        ),
        click.option("--act", default=None, help="Activation: tanh, elu, relu."),
        click.option(
            "--init", "init", default=None, help="Conv init, e.g. normal:0.05, lecun-in, scaled:1.76,0.05."
        ),
        click.option("--norm", default=None, help="none or bn."),
        click.option("--skip", default=None, help="none, post, rezero or fixup."),
        click.option("--heads", type=int, default=None, help="1 or 3 loss heads."),
        click.option("--width", type=float, default=None, help="Channel width multiplier."),
        click.option(
            "--param",
            "-p",
            "params",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any other model parameter, e.g. -p stack_depth=3.",
        ),
    ]
    if model_file:  # commands that take your own model: ModelOptions.model(MODEL) gives it
        options.append(
            click.option(
                "--model-file",
                "model_file",
                default=None,
                metavar="PATH.py[:FUNCTION]",
                help="Your own model: build(depth, **params) in a Python file "
                "(parameters with -p), instead of MODEL.",
            )
        )
    if toggles:
        options += [
            click.option("--bn/--no-bn", "bn", default=None, help="Turn batch norm on or off."),
            click.option(
                "--no-skip",
                "no_skip",
                is_flag=True,
                default=False,
                help="Turn the model's skip connection off (skipfc: -p skip=false; stages and strided: "
                "--skip none).",
            ),
        ]
    return option_group("model_opts", ModelOptions, *options)(f)


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class DataOptions:
    dataset: str | None = None
    data_dir: str | None = None
    train_size: int | None = None

    def dataset_for(self, model: str) -> str:
        """--dataset, else the model's own."""
        from ..models import default_dataset

        return self.dataset or default_dataset(model)


def data_options(
    f=None,
    *,
    data_dir: bool = True,
    train_size: bool = True,
    dataset_help: str | None = "Dataset name (default: the model's own).",
    data_dir_help: str | None = "Data root (default: $DEPTHLAB_DATA, else ./data).",
    train_size_default=None,
):
    """--dataset (and --data-dir, --train-size) as one `DataOptions` parameter ``data_opts``."""
    if f is None:
        return functools.partial(
            data_options,
            data_dir=data_dir,
            train_size=train_size,
            dataset_help=dataset_help,
            data_dir_help=data_dir_help,
            train_size_default=train_size_default,
        )
    from ..data.registry import DATASETS

    if dataset_help is not None:
        dataset_help = f"{dataset_help.rstrip('.')}; one of: {', '.join(DATASETS)}."
    options = [option_from_field(TrainConfig, "dataset", default=None, help=dataset_help)]
    if data_dir:
        options.append(
            click.option(
                "--data-dir",
                default=None,
                help=data_dir_help or "Data root (default: $DEPTHLAB_DATA, else ./data).",
            )
        )
    if train_size:
        options.append(option_from_field(TrainConfig, "train_size", default=train_size_default))
    return option_group("data_opts", DataOptions, *options)(f)


# ---------------------------------------------------------------------------------------------
# Run: seed, device, precision, store, output


@dataclass
class RunOptions:
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    store_path: str | None = None
    out: str | None = None
    as_json: bool = False
    tensorboard: str | None = None
    force: bool = False


RUN_OPTIONS = ("seed", "device", "precision", "store", "out", "json", "tensorboard")


def run_options(
    f=None,
    *,
    take=RUN_OPTIONS,
    out_help: str = "Folder for tables, plots and JSON.",
    device_help: str | None = None,
    store_default: str = "depthlab.db",
):
    """The run flags a command takes (``take``, of `RUN_OPTIONS`) as one `RunOptions`
    parameter ``run``; --seed, --device and --precision default to `TrainConfig`'s."""
    if f is None:
        return functools.partial(
            run_options, take=take, out_help=out_help, device_help=device_help, store_default=store_default
        )
    unknown = set(take) - set(RUN_OPTIONS)
    if unknown:
        raise ValueError(f"unknown run options {sorted(unknown)}")
    every = {
        "seed": option_from_field(TrainConfig, "seed"),
        "device": option_from_field(TrainConfig, "device", help=device_help),
        "precision": option_from_field(TrainConfig, "precision"),
        "store": click.option(
            "--store", "store_path", default=store_default, show_default=True, help="SQLite run store."
        ),
        "out": click.option("--out", default=None, help=out_help),
        "json": click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
        "tensorboard": click.option(
            "--tensorboard", default=None, help="Write per-epoch scalars to this folder."
        ),
    }
    chosen = [every[name] for name in RUN_OPTIONS if name in take]
    if "out" in take:
        chosen.append(
            click.option(
                "--force",
                is_flag=True,
                help="Write into an --out folder that holds another command's results or files depthlab did not write.",
            )
        )
    return option_group("run", RunOptions, *chosen)(f)


# ---------------------------------------------------------------------------------------------
# Training hyperparameters


def train_options(*names: str, **changes):
    """`TrainConfig` fields ``names`` as options, one `Values` parameter ``hp``.
    ``changes[name]``: keyword arguments for `option_from_field` (another help, default, ...)."""
    decls = {"compile": ("--compile",)}
    options = [option_from_field(TrainConfig, n, *decls.get(n, ()), **changes.get(n, {})) for n in names]
    return option_group("hp", Values, *options)


# ---------------------------------------------------------------------------------------------
# Executors


def int_or_keyword(text, keyword: str, flag: str) -> int | None:
    """An integer flag that also takes a keyword (``auto``, ``all``): None for the keyword (or
    no value), else the integer; anything else is a usage error naming ``flag``."""
    if text is None or str(text).strip().lower() == keyword:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a positive integer or {keyword}, got {text!r}") from None


def executor_spec(
    executor="local",
    workers=None,
    ray_address=None,
    cpus_per_trial=1.0,
    gpus_per_trial=0.0,
    fuse="auto",
    threads=None,
    *,
    default_workers: str = "auto",
):
    """The validated `depthlab.sweep.ExecutorSpec` of the `executor_options` values
    (``workers`` None: ``default_workers`` locally; Ray sizes itself)."""
    from ..sweep.executors import ExecutorSpec

    if workers is None and executor == "local":
        workers = default_workers
    count = int_or_keyword(workers, "auto", "--workers")
    group = int_or_keyword(fuse, "auto", "--fuse")
    spec = ExecutorSpec(
        kind=executor,
        workers=count,
        ray_address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        fuse=group,
        threads=threads,
    )
    spec.validate()
    return spec


def _executor_option_list(workers: str) -> list:
    return [
        click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local processes, or Ray tasks (pip install 'depthlab[ray]').",
        ),
        click.option(
            "--workers",
            default=None,
            help=f"local: trials run at once (processes); auto = one per CPU core on CPU, 1 on a GPU "
            f"[default: {workers}]. Results do not depend on it (each trial computes on --threads); "
            "with several, a run's lines come when it finishes.",
        ),
        click.option(
            "--ray-address",
            default=None,
            help="ray: auto (the running cluster) or ray://HOST:PORT; default starts a local Ray.",
        ),
        click.option(
            "--cpus-per-trial", type=float, default=1.0, show_default=True, help="ray: CPUs per trial."
        ),
        click.option(
            "--gpus-per-trial",
            type=float,
            default=0.0,
            show_default=True,
            help="ray: GPU share per trial (0.25 packs four trials on a GPU).",
        ),
        click.option(
            "--fuse",
            default="auto",
            show_default=True,
            help="Train up to N lr/seed variants of one model as one fused network (1 = off); "
            "auto = the whole lr grid on a GPU, off on CPU.",
        ),
        click.option(
            "--threads",
            type=int,
            default=None,
            help="torch threads of every trial, whatever --workers/--executor (1 to 256) [default: 1]. "
            "Results depend on it bitwise; at 1 it is left out of the config hash.",
        ),
    ]


def executor_options(f=None, *, workers: str = "auto"):
    """Where trials run: ``--executor local|ray``, ``--workers`` (default ``workers`` with the
    local executor), ``--ray-address``, CPU/GPU shares per trial and ``--fuse`` (see
    `depthlab.sweep`), handed to the command as one validated `ExecutorSpec` parameter
    ``spec`` (validated before the command runs, so before the store is opened; open it with
    `trial_runner`)."""
    if f is None:
        return functools.partial(executor_options, workers=workers)
    factory = functools.partial(executor_spec, default_workers=workers)
    return option_group("spec", factory, *_executor_option_list(workers))(f)


def executor_flags(f=None, *, workers: str = "auto"):
    """The flags of `executor_options` as separate parameters (``executor``, ``workers``, ...),
    for a command that builds the spec itself with `executor_spec`."""
    if f is None:
        return functools.partial(executor_flags, workers=workers)
    for option in reversed(_executor_option_list(workers)):
        f = option(f)
    return f
