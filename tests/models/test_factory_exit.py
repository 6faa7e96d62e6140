"""Issue 29: a model factory (or the network it builds) that calls sys.exit() or raises
KeyboardInterrupt itself is bad input: one line naming it, exit 2, nothing stored. A real Ctrl-C
stays Ctrl-C (exit 130)."""

from __future__ import annotations

import signal
import threading

import pytest

import depthlab
from depthlab.cli import main
from depthlab.engine.config import TrainConfig
from depthlab.errors import UserCodeExit, counting_ctrl_c, users_code

NETS = """
import os, signal, sys, time
from torch import nn

def exits(depth):
    sys.exit(5)

def interrupts(depth):
    raise KeyboardInterrupt

class Bye(nn.Module):
    def __init__(self, when_training):
        super().__init__()
        self.when_training, self.fc = when_training, nn.Linear(784, 10)

    def forward(self, x):
        if self.training == self.when_training:
            sys.exit(7)
        return self.fc(x.flatten(1))

def exits_in_forward(depth):
    return Bye(when_training=False)

def exits_in_training(depth):
    return Bye(when_training=True)

def ctrl_c(depth):
    os.kill(os.getpid(), signal.SIGINT)   # a real SIGINT, as a user's Ctrl-C sends it
    time.sleep(5)
"""


@pytest.fixture(autouse=True)
def pythons_own_sigint_handler():
    """These tests are about the CLI in a terminal, where Python's own SIGINT handler is in place in
    the main thread: that is where a Ctrl-C is counted. A test run earlier in the same pytest worker
    can leave another handler behind (seen in CI), so put Python's in place for each test."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a real Ctrl-C is counted in the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


TRAIN = ["train", "--epochs", "1", "--train-size", "100", "--device", "cpu"]


@pytest.fixture()
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


@pytest.mark.parametrize(
    "function, message",
    [
        ("exits", "nets.exits(depth=1) called sys.exit(5): a model must return or raise an exception"),
        ("interrupts", "nets.interrupts(depth=1) raised KeyboardInterrupt itself (no Ctrl-C was pressed)"),
        (
            "exits_in_forward",
            "nets.exits_in_forward(depth=1)'s network, on a batch of zeros, called sys.exit(7)",
        ),
    ],
)
def test_a_factory_ending_the_process_is_one_line_exit_2_and_nothing_stored(
    nets, tmp_path, capsys, data_root, function, message
):
    store = tmp_path / "s.db"
    for command in (
        TRAIN,
        ["frontier", "--max-depth", "2", "--epochs", "1", "--lrs", "0.1", "--device", "cpu"],
    ):
        code = main(
            [
                *command,
                "--model-file",
                f"{nets}:{function}",
                "--depth" if command is TRAIN else "--seed",
                "1" if command is TRAIN else "0",
                "--data-dir",
                str(data_root),
                "--store",
                str(store),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, (command, err)  # was exit 5 (or 130), with no message
        assert err.startswith("depthlab: error: ") and err.count("\n") == 1 and message in err, err
    assert not store.exists()


def test_an_exit_during_training_is_one_line_exit_2(nets, tmp_path, capsys, data_root):
    """The network passes the check at build (it exits only in training mode): the run, already
    started in the store, is marked failed with the reason and the command exits 2."""
    from depthlab.store.sqlite import Store

    store = tmp_path / "s.db"
    code = main(
        [
            *TRAIN,
            "--model-file",
            f"{nets}:exits_in_training",
            "--depth",
            "1",
            "--data-dir",
            str(data_root),
            "--store",
            str(store),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "training nets.exits_in_training called sys.exit(7)" in err
    with Store(store, reading=True) as s:
        assert [r.status for r in s.runs()] == ["failed"]  # never reused: the next attempt trains again


def test_the_api_refuses_an_exiting_factory_before_the_store_is_opened(nets, tmp_path, data_root):
    from depthlab.models import ModelFactory

    factory = ModelFactory.from_file(f"{nets}:exits")
    config = TrainConfig(model=factory, model_args={"depth": 1}, epochs=1, train_size=100, device="cpu")
    with pytest.raises(UserCodeExit, match=r"nets.exits\(depth=1\) called sys.exit\(5\)"):
        depthlab.train(config, store=tmp_path / "s.db", data_dir=data_root, progress=False)
    with pytest.raises(UserCodeExit, match=r"nets.exits\(depth=1\) called sys.exit\(5\)"):
        depthlab.frontier(factory, store=tmp_path / "s.db", data_dir=data_root, progress=False, max_depth=2)
    assert not (tmp_path / "s.db").exists()


def test_a_real_ctrl_c_inside_a_factory_is_still_ctrl_c(nets, tmp_path, capsys, data_root):
    code = main(
        [
            *TRAIN,
            "--model-file",
            f"{nets}:ctrl_c",
            "--depth",
            "1",
            "--data-dir",
            str(data_root),
            "--store",
            str(tmp_path / "s.db"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 130 and "error" not in err, err
    assert not (tmp_path / "s.db").exists()


def test_keyboard_interrupts_are_told_apart_only_where_sigints_are_counted():
    with pytest.raises(UserCodeExit):  # counted, none arrived: raised by the code
        with counting_ctrl_c(), users_code("f"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):  # not counted (a notebook, a library caller)
        with users_code("f"):
            raise KeyboardInterrupt
    with pytest.raises(UserCodeExit, match=r"f called sys.exit\(None\)"):  # SystemExit: everywhere
        with users_code("f"):
            raise SystemExit
