"""The ``depthlab`` command line: a thin layer over the Python API. One module per command
group; importing this package registers them all on the ``cli`` group."""

from .app import cli, entry, main
from . import core  # noqa: F401  (registers train, runs, summary, models)
from . import frontier  # noqa: F401  (registers frontier)
from . import theory  # noqa: F401  (registers theory, phase)
from . import cifar  # noqa: F401  (registers reproduce for the CIFAR-10 experiments)
from . import diagnose  # noqa: F401  (registers diagnose)
from . import info  # noqa: F401  (registers info)
# after cifar: `reproduce` is the experiment registry's; it forwards the CIFAR names to cifar's command
from . import experiments  # noqa: F401  (registers lr-sweep, lr-find, ablate, reproduce)


__all__ = ["cli", "entry", "main"]
