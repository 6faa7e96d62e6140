"""The ``depthlab`` command group, the flags shared by commands, and the entry point.

Every user error prints one line ``depthlab: error: ...`` on stderr and exits with status 2.
Bad flag values are checked before the store is opened, so a bad command never touches it.
A full or read-only disk (an output file or the store) is also one line and exit status 2; every
output is written atomically, so the previous file is intact. SIGTERM, like Ctrl-C, prints one
line (exit 143; Ctrl-C 130).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import click

from ..errors import ConfigError, UserError


# ---------------------------------------------------------------------------------------------
# Shared options


def common_options(f):
    """Flags shared by every command that trains."""
    options = [
        click.option("--dataset", default=None, help="Dataset name (default: the model's own)."),
        click.option("--data-dir", default=None, help="Data root (default: $DEPTHLAB_DATA, else ./data)."),
        click.option("--train-size", type=int, default=None, help="Use a fixed random subset of N training images."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps."),
        click.option("--store", "store_path", default="depthlab.db", show_default=True, help="SQLite run store."),
        click.option("--out", default=None, help="Folder for tables, plots and JSON."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
        click.option("--tensorboard", default=None, help="Write per-epoch scalars to this folder."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def model_options(f):
    """Overrides of the model's spec (only those the model's family takes are accepted)."""
    options = [
        click.option("--depth", type=int, default=None, help="Number of conv layers (stages: multiple of 3)."),
        click.option("--act", default=None, help="Activation: tanh, elu, relu."),
        click.option("--init", "init_", default=None, help="Conv init, e.g. normal:0.05, lecun-in, scaled:1.76,0.05."),
        click.option("--norm", default=None, help="none or bn."),
        click.option("--skip", default=None, help="none, post, rezero or fixup."),
        click.option("--heads", type=int, default=None, help="1 or 3 loss heads."),
        click.option("--width", type=float, default=None, help="Channel width multiplier."),
        click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
                     help="Any other model parameter, e.g. -p stack_depth=3."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def executor_options(f=None, *, workers: str = "auto"):
    """Where trials run: ``--executor local|ray``, ``--workers`` (default ``workers`` with the
    local executor), ``--ray-address``, CPU/GPU shares per trial and ``--fuse`` (see
    `depthlab.sweep`). Turn the values into an `ExecutorSpec` with `executor_spec` (passing
    the same ``workers`` default; validated before the store is opened) and open it with
    `trial_runner`."""
    if f is None:
        return functools.partial(executor_options, workers=workers)
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local processes, or Ray tasks (pip install 'depthlab[ray]')."),
        click.option("--workers", default=None,
                     help=f"local: parallel trials (processes); auto = one per CPU core on CPU, 1 on a GPU "
                          f"[default: {workers}]."),
        click.option("--ray-address", default=None,
                     help="ray: auto (the running cluster) or ray://HOST:PORT; default starts a local Ray."),
        click.option("--cpus-per-trial", type=float, default=1.0, show_default=True, help="ray: CPUs per trial."),
        click.option("--gpus-per-trial", type=float, default=0.0, show_default=True,
                     help="ray: GPU share per trial (0.25 packs four trials on a GPU)."),
        click.option("--fuse", default="auto", show_default=True,
                     help="Train up to N lr/seed variants of one model as one fused network (1 = off); "
                          "auto = the whole lr grid on a GPU, off on CPU."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def int_or_keyword(text, keyword: str, flag: str) -> int | None:
    """An integer flag that also takes a keyword (``auto``, ``all``): None for the keyword (or
    no value), else the integer; anything else is a usage error naming ``flag``."""
    if text is None or str(text).strip().lower() == keyword:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a positive integer or {keyword}, got {text!r}") from None


def executor_spec(executor="local", workers=None, ray_address=None, cpus_per_trial=1.0, gpus_per_trial=0.0,
                  fuse="auto", *, default_workers: str = "auto"):
    """The validated `depthlab.sweep.ExecutorSpec` of the `executor_options` values
    (``workers`` None: ``default_workers`` locally; Ray sizes itself)."""
    from ..sweep.executors import ExecutorSpec

    if workers is None and executor == "local":
        workers = default_workers
    count = int_or_keyword(workers, "auto", "--workers")
    group = int_or_keyword(fuse, "auto", "--fuse")
    spec = ExecutorSpec(kind=executor, workers=count, ray_address=ray_address, cpus_per_trial=cpus_per_trial,
                        gpus_per_trial=gpus_per_trial, fuse=group)
    spec.validate()
    return spec


@contextlib.contextmanager
def trial_runner(spec, device: str, store_path: str, group: int, *, data=None, data_dir=None,
                 sequential: bool = False):
    """Open the executor of ``spec`` (first: a cluster that cannot be reached leaves no store
    behind), then the store; yield ``(store, runner)``, the runner a
    `depthlab.sweep.TrialRunner` that records into the store and keeps its trials'
    checkpoints beside it (``<store>-checkpoints``, removed when empty). ``group``: how many
    trials one fused group could hold (1: none fuse). With ``sequential`` (commands whose classic
    output streams each epoch) the runner is None when the spec asks for one local worker and
    there is nothing to fuse: the caller runs its trials itself."""
    from ..store.sqlite import Store, checkpoint_dir_for, remove_if_empty
    from ..sweep.driver import TrialRunner
    from ..sweep.executors import default_workers, describe

    fuse = spec.fuse_for(device, group)
    if sequential and spec.kind == "local" and (spec.workers or default_workers(device)) == 1 and fuse <= 1:
        with Store(store_path) as store:
            yield store, None
        return
    checkpoints = checkpoint_dir_for(store_path)
    with spec.create(device) as pool, Store(store_path) as store:
        echo_err(f"trials run on {describe(spec, pool)}" + (f", up to {fuse} fused" if fuse > 1 else ""))
        yield store, TrialRunner(pool, store, data, data_dir=data_dir, fuse=fuse, log=echo_err,
                                 checkpoint_dir=checkpoints)
    remove_if_empty(checkpoints)


def model_overrides(depth=None, act=None, init_=None, norm=None, skip=None, heads=None, width=None,
                    params=()) -> dict:
    overrides = dict(depth=depth, act=act, init=init_, norm=norm, skip=skip, heads=heads, width=width)
    for item in params:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"bad --param {item!r}: expected KEY=VALUE")
        overrides[key.replace("-", "_")] = value
    return {k: v for k, v in overrides.items() if v is not None}


def default_dataset(model: str) -> str:
    from ..models import FAMILIES, resolve_model

    family, _ = resolve_model(model)
    return FAMILIES[family.name].datasets[0]


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def open_store(path: str):
    from ..store.sqlite import Store

    return Store(path)


def require_tensorboard(folder: str | None) -> None:
    """Check ``--tensorboard`` up front (exit 2 before anything runs) without creating the folder."""
    if not folder:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:
        raise ConfigError("--tensorboard needs the tensorboard extra: pip install 'depthlab[tensorboard]'") from None
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(f"--tensorboard {folder}: exists and is not a folder")


def tensorboard_writer(folder: str | None):
    if not folder:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        raise ConfigError("--tensorboard needs the tensorboard extra: pip install 'depthlab[tensorboard]'") from None
    return SummaryWriter(folder)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="depthlab")
def cli():
    """depthlab: how does depth interact with trainability?"""


# ---------------------------------------------------------------------------------------------
# Entry point


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: it unwinds (transactions roll back, workers are
    stopped) exactly as Ctrl-C does, and is reported on one line."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds():
    """While the CLI runs, SIGTERM raises `Terminated` (only the main thread can set handlers)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    try:
        with _sigterm_unwinds():
            rv = cli.main(args=argv, prog_name="depthlab", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `depthlab train`
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return 2
    except click.UsageError as exc:
        echo_err(f"depthlab: error: {exc.format_message()}")
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (and so `Terminated`) into Abort
        if isinstance(exc.__cause__, Terminated):
            echo_err("depthlab: terminated (SIGTERM; finished runs are kept in the store)")
            return 143
        echo_err("depthlab: aborted")
        return 130
    except UserError as exc:
        echo_err(f"depthlab: error: {exc}")
        return exc.exit_code
    except Terminated:
        echo_err("depthlab: terminated (SIGTERM; finished runs are kept in the store)")
        return 143
    except KeyboardInterrupt:
        echo_err("depthlab: interrupted (finished runs are kept in the store)")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # a bug: still one line, with the way to see the traceback
        from ..report import disk_problem

        problem = disk_problem(exc)  # a full or read-only disk is not a bug: one line, exit 2
        if problem is not None:
            echo_err(f"depthlab: error: {problem}")
            return 2
        if os.environ.get("DEPTHLAB_DEBUG"):
            raise
        echo_err(f"depthlab: internal error: {type(exc).__name__}: {exc} (set DEPTHLAB_DEBUG=1 for the traceback)")
        return 1


def entry() -> None:
    sys.exit(main())
