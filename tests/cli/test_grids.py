"""One grid grammar for every grid option (issue 22): a list ``0.01,0.1``, ``log:LOW:HIGH:COUNT``
(log-spaced) or ``lin:LOW:HIGH:COUNT`` (evenly spaced; the older ``LOW:HIGH:COUNT`` is the same),
parsed by `depthlab.grids.parse_grid` for --lrs, --sigma-w2 and --check-widths."""

import json

import click
import pytest

from depthlab.cli import main
from depthlab.cli.app import cli
from depthlab.depth_frontier.protocol import parse_depths, parse_lrs
from depthlab.errors import ConfigError
from depthlab.grids import GRID_GRAMMAR, parse_grid
from depthlab.theory import default_sigma_w2_grid


def test_the_grammar():
    assert parse_grid("0.01,0.1", "--x", "value") == (0.01, 0.1)
    assert parse_grid("lin:1:4:13", "--x", "value") == tuple(1 + 0.25 * i for i in range(13))
    assert parse_grid("1:4:13", "--x", "value") == parse_grid("lin:1:4:13", "--x", "value")
    assert parse_grid("log:0.001:1:4", "--x", "value") == (0.001, 0.01, 0.1, 1.0)
    assert parse_lrs("log:0.001:1:7") == parse_grid("log:0.001:1:7", "--lrs", "learning rate")
    assert list(parse_grid("lin:0.5:4:71", "--x", "value")) == default_sigma_w2_grid()
    for bad in ("", "lin:1:4", "lin:4:1:3", "log:0:1:3", "log:1:2:1", "1,x", "0,1", "lin:1:2:3:4"):
        with pytest.raises(ConfigError, match=r"^bad --x "):
            parse_grid(bad, "--x", "value")


def test_one_parser_keeps_the_order_given_and_each_caller_sorts_for_itself():
    assert parse_grid("2,1,2", "--x", "value") == (2.0, 1.0, 2.0)
    assert parse_grid("24,6,,12,6", "--depths", "depth", whole=True) == (24, 6, 12, 6)
    assert parse_depths("24,6,12,6") == (6, 12, 24)  # the frontier's --depths: sorted, each once
    assert parse_depths("0,-3") == (-3, 0)  # its range: FrontierConfig.validate_models
    for bad, message in (
        ("6:12:3", "expected whole numbers"),
        ("6,1.5", "expected whole numbers"),
        ("", "the depth grid is empty"),
        ("0,6", "depths must be positive"),
    ):
        with pytest.raises(ConfigError, match=rf"^bad --depths .*{message}"):
            parse_grid(bad, "--depths", "depth", whole=True)
    with pytest.raises(ConfigError, match=r"^bad --x '1,5': values must be at most 4$"):
        parse_grid("1,5", "--x", "value", upper=4)
    assert parse_grid("lin:1:4:4", "--x", "value", upper=4) == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    "command,flag",
    [
        ("theory", "--sigma-w2"),
        ("theory", "--check-widths"),
        ("phase", "--sigma-w2"),
        ("phase", "--lrs"),
        ("frontier", "--lrs"),
        ("lr-sweep", "--lrs"),
    ],
)
def test_every_grid_option_states_the_grammar(command, flag):
    ctx = click.Context(cli.commands[command])
    (option,) = [p for p in cli.commands[command].params if flag in getattr(p, "opts", ())]
    help_text = " ".join(option.get_help_record(ctx)[1].split())
    assert " ".join(GRID_GRAMMAR.split()) in help_text


@pytest.mark.parametrize("grid", ["lin:1:4:13", "1:4:13", "log:1:4:13", "1,1.25,4"])
def test_theory_takes_every_form(grid, capsys):
    assert main(["theory", "--sigma-w2", grid, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["grid"]
    assert [r["sigma_w2"] for r in rows] == list(parse_grid(grid, "--sigma-w2", "sigma_w2 value"))
