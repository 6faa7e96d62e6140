"""Which module registers each command, and the group that imports a command's module only when
the command is used: ``depthlab --help`` and ``--version`` then start without importing torch
(the command modules build their options from `TrainConfig`, whose models need torch).

``COMMANDS`` also holds each command's one-line summary for ``depthlab --help``;
``tests/cli/test_startup.py`` checks it against the commands' own help, so it cannot drift.
"""

from __future__ import annotations

import importlib

import click

# command name -> (module under depthlab.cli, its first sentence: its summary in `depthlab --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("core", "Train one MODEL and record it in the store."),
    "runs": ("runs", "List the runs in the store, newest first."),
    "summary": ("core", "Print a layer table and the parameter count of MODEL."),
    "models": ("catalog", "List model families, presets and the axes they take."),
    "frontier": (
        "frontier",
        "Find the largest trainable depth of each model (SPEC 4: error below 20% within 3 epochs).",
    ),
    "theory": (
        "theory",
        "Mean-field predictions for a plain net: q*, chi_1, correlation depth xi and the trainable depth 6 xi over a sigma_w2 grid, the critical sigma_w2, and a phase diagram.",
    ),
    "phase": (
        "theory",
        "Measure the largest trainable depth of plain `stages` nets with init scaled:W2,B2 over a sigma_w2 grid on real MNIST, and overlay it on the mean-field prediction; or (--family mlp) the train-accuracy heatmap of wide tanh MLPs over (sigma_w2, depth) against xi_c.",
    ),
    "reproduce": (
        "experiments",
        "Run a classic experiment by NAME: its tables, plots and one sentence computed from its numbers.",
    ),
    "diagnose": (
        "diagnose",
        "Per-layer activation statistics, gradient norms and update ratios of MODEL (its conv layers; with --model-file, every Linear and conv layer of your own network) at init and during training, a layer x step heatmap, and a vanishing/exploding/healthy verdict.",
    ),
    "info": (
        "info",
        "Versions, the machine's accelerators, precision defaults, the data root and its datasets, the default store; with --devices, the devices torch can use.",
    ),
    "lr-sweep": (
        "experiments",
        "One run of MODEL per learning rate: a table of final errors and train/test error plots.",
    ),
    "lr-find": (
        "experiments",
        "Exponential learning-rate range test of MODEL (nothing is stored; weights are restored).",
    ),
    "ablate": (
        "experiments",
        "Every on/off combination of the toggles over K folds or N seeds: mean ± std of train, validation and test error and the time per fit, plus loss curves.",
    ),
}

# the order the modules register in: `experiments` imports `cifar` first, and its `reproduce`
# (the experiment registry's, forwarding the CIFAR names) replaces cifar's
MODULES = ("core", "catalog", "runs", "frontier", "theory", "cifar", "diagnose", "info", "experiments")


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use. ``group.commands`` (the full
    mapping, as tests and introspection read it) imports every command module."""

    def __init__(self, *args, **kwargs):
        self._commands: dict[str, click.Command] = {}
        self._loaded = False
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:
        self.load_all()
        return self._commands

    @commands.setter
    def commands(self, value) -> None:
        self._commands.update(value or {})

    def load_all(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in MODULES:
                importlib.import_module(f"{__package__}.{module}")

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        self._commands[name or cmd.name] = cmd

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self._commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
        return self._commands.get(cmd_name)

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(COMMANDS) | set(self._commands))

    def _summary(self, name: str) -> str:
        return COMMANDS[name][1] if name in COMMANDS else self._commands[name].get_short_help_str(1000)

    def format_commands(self, ctx, formatter) -> None:
        """The commands and their summaries, from `COMMANDS` (no command module is imported)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)  # as click.Group lays it out
        rows = [
            (name, click.Command(name, help=self._summary(name)).get_short_help_str(limit)) for name in names
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
