"""Error types. Anything derived from `UserError` is the user's to fix: the CLI prints its
message on one line and exits with status 2, never a traceback. `users_code` turns the user's
code ending the process (``sys.exit``, a KeyboardInterrupt it raises) into such an error."""

import contextlib
import signal
import threading


class UserError(Exception):
    """Bad input: a wrong flag value, a missing or corrupted file, an unusable store."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid model, dataset, schedule or experiment setting."""


class DataError(UserError):
    """Data files missing, truncated or failing their checksum."""


class StoreError(UserError):
    """A store path that cannot be written or is not a depthlab store."""


class InfrastructureError(UserError):
    """The machinery failed, not the training: a worker process or Ray worker died (killed,
    out of memory), a node went away. Never a verdict: the trials are left unrecorded, for the
    next run of the same command. One line, exit status 3."""

    exit_code = 3


# ---------------------------------------------------------------------------------------------
# User code that tries to end the process


class UserCodeExit(ConfigError):
    """The user's code (a model factory, its network, a callback) tried to end the process."""


class _CtrlC:
    """SIGINTs received while `counting_ctrl_c` is active (``counting``: whether it is)."""

    counting = False
    seen = 0


def _count_and_interrupt(signum, frame):
    _CtrlC.seen += 1
    raise KeyboardInterrupt


@contextlib.contextmanager
def counting_ctrl_c():
    """While inside (the CLI's main thread, where Python's own handler is in place): SIGINT raises
    KeyboardInterrupt exactly as Python's handler does, and is counted, so that `users_code` can
    tell a real Ctrl-C from a KeyboardInterrupt that some code raised itself."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, _count_and_interrupt)
    _CtrlC.counting = True
    try:
        yield
    finally:
        _CtrlC.counting = False
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def users_code(what: str, *, interrupts: bool = True):
    """Run the user's code ``what`` (a model factory, the network it built, a callback). A
    ``SystemExit`` it raises becomes `UserCodeExit` (one line, exit 2), never an exit status of its
    own; so does (with ``interrupts``) a ``KeyboardInterrupt`` it raised itself: one during which no
    SIGINT arrived while `counting_ctrl_c` counted them. A real Ctrl-C, SIGTERM (a KeyboardInterrupt
    subclass), and every KeyboardInterrupt where SIGINTs are not counted (a notebook, a library
    caller, a worker process) propagate as they are: there it cannot be told apart from Ctrl-C.
    ``interrupts=False`` (around training, where depthlab's own code runs between the user's)
    leaves every KeyboardInterrupt an interrupt."""
    before = _CtrlC.seen if _CtrlC.counting and interrupts else None
    try:
        yield
    except SystemExit as exc:
        raise UserCodeExit(
            f"{what} called sys.exit({exc.code!r}): a model must return or raise an exception, "
            "not end the process"
        ) from None
    except KeyboardInterrupt as exc:
        if (
            type(exc) is not KeyboardInterrupt
            or before is None
            or not _CtrlC.counting
            or _CtrlC.seen != before
        ):
            raise
        raise UserCodeExit(
            f"{what} raised KeyboardInterrupt itself (no Ctrl-C was pressed): a model must return "
            "or raise an exception, not end the process"
        ) from None
