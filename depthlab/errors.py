"""Error types. Anything derived from `UserError` is the user's to fix: the CLI prints its
message on one line and exits with status 2, never a traceback."""


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
