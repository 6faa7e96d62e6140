"""The ``depthlab`` command line: a thin layer over the Python API. One module per command
group, each registering its commands on the ``cli`` group when imported; the group imports a
command's module on first use (`depthlab.cli.commands`), so ``depthlab --help`` starts without
torch. ``cli.commands`` imports them all."""

from .app import cli, entry, main

__all__ = ["cli", "entry", "main"]
