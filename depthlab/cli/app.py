"""The ``depthlab`` command group, its messages (the ``depthlab`` logger), the executor and
store helpers commands share, and the entry point. The shared flags are in `depthlab.cli.options`.

Every user error prints one line ``depthlab: error: ...`` on stderr and exits with status 2.
Bad flag values are checked before the store is opened, so a bad command never touches it.
A full or read-only disk (an output file or the store) is also one line and exit status 2; every
output is written atomically, so the previous file is intact. SIGTERM, like Ctrl-C, prints one
line (exit 143; Ctrl-C 130).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import click

from ..errors import ConfigError, UserError, counting_ctrl_c
from .commands import LazyGroup

# Names importable from here as well as from `depthlab.cli.options`: `executor_options` here is
# `options.executor_flags` (separate parameters, for `executor_spec`); commands use
# `options.executor_options`, which hands them the validated spec.
# They are read from `options` on first use: it imports `TrainConfig` (torch), and `depthlab --help`
# must not.
_FROM_OPTIONS = {
    "executor_options": "executor_flags",
    "executor_spec": "executor_spec",
    "int_or_keyword": "int_or_keyword",
    "model_overrides": "model_overrides",
}


def __getattr__(name: str):
    if name not in _FROM_OPTIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import options

    return getattr(options, _FROM_OPTIONS[name])


# ---------------------------------------------------------------------------------------------
# Messages: the ``depthlab`` logger


log = logging.getLogger("depthlab")  # notices: stderr
progress = logging.getLogger("depthlab.progress")  # per-run progress lines: stdout (stderr under --json)


class EchoHandler(logging.Handler):
    """Log records printed as plain lines the way ``click.echo`` prints them (to the streams in
    use when the record is emitted): progress lines on stdout, unless `progress_to_stderr` was
    asked (a command that prints JSON on stdout), everything else on stderr."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.progress_err = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err = (
                self.progress_err
                or record.levelno >= logging.WARNING
                or not (record.name == progress.name or record.name.startswith(progress.name + "."))
            )
            click.echo(self.format(record), err=err)
        except Exception:  # pragma: no cover  (a closed stream)
            self.handleError(record)


def _handler() -> EchoHandler | None:
    return next((h for h in log.handlers if isinstance(h, EchoHandler)), None)


@contextlib.contextmanager
def terminal_logging():
    """While inside (one command line): the ``depthlab`` logger prints INFO and up through an
    `EchoHandler`, plain messages, not passed on to the root logger. Outside, library use stays
    quiet unless the caller configures logging. Nested uses share the outer handler."""
    handler = _handler()
    if handler is not None:
        yield handler
        return
    handler = EchoHandler()
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def progress_to_stderr(flag: bool = True) -> None:
    """Send progress lines to stderr (``--json``: stdout holds one JSON object)."""
    handler = _handler()
    if handler is not None:
        handler.progress_err = flag


@contextlib.contextmanager
def trial_runner(
    spec, device: str, store_path: str, group: int, *, data=None, data_dir=None, sequential: bool = False
):
    """`depthlab.sweep.open_runner` on ``store_path`` (the one place a sweep's executor, store
    and runner are opened, for the Python API too): yields ``(store, runner)``; with
    ``sequential`` the runner is None where the caller can run its trials itself."""
    from ..sweep.session import open_runner

    with open_runner(
        spec,
        device,
        store_path,
        group,
        data=data,
        data_dir=data_dir,
        sequential=sequential,
        log_line=log.info,
    ) as opened:
        yield opened


def output_folder(out: str | None, store_path: str | None, default: str | None = None) -> str:
    """Check (creating nothing) the folder this command writes to: ``--out``, else
    `report.outputs.default_output_dir` of its store and ``default`` (the command's name); a folder that
    holds another command's results, or files depthlab did not write (a folder it never marked,
    holding more than the command's store), is refused without ``--force``. Returns the folder."""
    from ..report.outputs import check_output_dir, check_output_owner, default_output_dir

    ctx = click.get_current_context()
    command = ctx.command.name
    folder = out or default_output_dir(store_path, default or command)
    check_output_dir(folder)
    check_output_owner(
        folder, command, force=bool(ctx.params.get("force")), own=[store_path] if store_path else []
    )
    return folder


def create_output_folder(folder: str):
    """Create the folder `output_folder` checked, marked as this command's."""
    from ..report.outputs import mark_output_dir, safe_output_dir

    return mark_output_dir(safe_output_dir(folder), click.get_current_context().command.name)


def echo_err(message: str) -> None:
    """One line on stderr, outside the logger (main's error lines, printed after the command)."""
    click.echo(message, err=True)


def open_store(path: str):
    from ..store.sqlite import Store

    return Store(path)


def require_tensorboard(folder: str | None) -> None:
    """Check ``--tensorboard`` up front (exit 2 before anything runs) without creating the folder."""
    if not folder:
        return
    from ..engine.callbacks import summary_writer_class

    summary_writer_class()
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(f"--tensorboard {folder}: exists and is not a folder")


def tensorboard_log(folder: str | None):
    """``--tensorboard DIR``'s `TensorBoardLog` (checked first by `require_tensorboard`), or None."""
    if not folder:
        return None
    from ..engine.callbacks import TensorBoardLog

    return TensorBoardLog(folder)


EPILOG = """\b
Examples:
  depthlab train cnn-tanh --depth 9 --epochs 3 --lr 0.1
  depthlab frontier --models all --quick --store f.db
  depthlab runs --store f.db --status done

\b
Data root: --data-dir, else $DEPTHLAB_DATA, else ./data (depthlab info shows it and the datasets there).
Store: every run is recorded in --store (default ./depthlab.db); a finished config is shown from it,
not trained again (--rerun trains again)."""


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="depthlab")
def cli():
    """depthlab: how does depth interact with trainability?"""
    # the depthlab logger prints while the command runs (main()'s own error lines use echo_err)
    click.get_current_context().with_resource(terminal_logging())


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


def _kept_note(argv: list[str] | None, bare: bool = False) -> str:
    """What an interrupted command keeps: ``; finished runs are kept in the store`` for a command
    with ``--store``; a command without one (diagnose, lr-find, ...) keeps nothing it had not
    written yet."""
    args = sys.argv[1:] if argv is None else argv
    name = next((a for a in args if not a.startswith("-")), None)
    command = cli.get_command(None, name) if name else None
    stored = command is not None and any("--store" in getattr(p, "opts", ()) for p in command.params)
    note = (
        "finished runs are kept in the store"
        if stored
        else "nothing was recorded: this command keeps no store"
    )
    return f" ({note})" if bare else f"; {note}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    try:
        with _sigterm_unwinds(), counting_ctrl_c():
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
            echo_err(f"depthlab: terminated (SIGTERM{_kept_note(argv)})")
            return 143
        echo_err("depthlab: aborted")
        return 130
    except UserError as exc:
        echo_err(f"depthlab: error: {exc}")
        return exc.exit_code
    except Terminated:
        echo_err(f"depthlab: terminated (SIGTERM{_kept_note(argv)})")
        return 143
    except KeyboardInterrupt:
        echo_err(f"depthlab: interrupted{_kept_note(argv, bare=True)}")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # a bug: still one line, with the way to see the traceback
        from ..report.outputs import disk_problem

        problem = disk_problem(exc)  # a full or read-only disk is not a bug: one line, exit 2
        if problem is not None:
            echo_err(f"depthlab: error: {problem}")
            return 2
        if os.environ.get("DEPTHLAB_DEBUG"):
            raise
        echo_err(
            f"depthlab: internal error: {type(exc).__name__}: {exc} (set DEPTHLAB_DEBUG=1 for the traceback)"
        )
        return 1


def entry() -> None:
    sys.exit(main())
