"""Model factories: a function ``build(depth, **params)`` from a file or a notebook, rebuilt from
its source wherever it runs, identified by its source's hash, checked when built."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from depthlab.errors import ConfigError
from depthlab.models import FactoryError, ModelFactory, create_model, model_config

NETS = """
import torch
from torch import nn

def build(depth, width=8):
    layers = [nn.Flatten(), nn.Linear(784, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))

def heads(depth):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build(depth)
        def forward(self, x):
            y = self.body(x)
            return [y, y]
    return Two()

def not_a_module(depth):
    return "a string"

def wrong_shape(depth):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))

def raises(depth):
    raise ValueError("depth must be even")

def stepped(depth):
    return build(depth)
stepped.depth_step = 3
"""


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def test_a_factory_from_a_file_builds_the_users_network(nets):
    factory = ModelFactory.from_file(f"{nets}:build")
    assert factory.name == "nets.build" and factory.depth_step == 1
    model = create_model(factory, (1, 28, 28), 10, depth=3, width="16")  # -p width=16 arrives as text
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 4
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert model_config(factory, depth=3, width="16") == {"depth": 3, "width": 16}


def test_the_function_defaults_to_build_and_depth_step_is_read(nets):
    assert ModelFactory.from_file(str(nets)).function == "build"
    assert ModelFactory.from_file(f"{nets}:stepped").depth_step == 3


def test_the_identity_is_the_source_hash_so_an_edit_changes_it(nets):
    before = ModelFactory.from_file(f"{nets}:build").identity()
    nets.write_text(NETS.replace("nn.Tanh()]", "nn.ReLU()]"))
    after = ModelFactory.from_file(f"{nets}:build").identity()
    assert before["factory"] == after["factory"] and before["source_sha256"] != after["source_sha256"]


def test_a_factory_pickles_as_its_source_and_rebuilds_anywhere(nets):
    factory = ModelFactory.from_file(f"{nets}:heads")
    nets.unlink()  # a worker on another machine has no file: the source travels
    again = pickle.loads(pickle.dumps(factory))
    out = create_model(again, (1, 28, 28), 10, depth=2)(torch.zeros(2, 1, 28, 28))
    assert isinstance(out, list) and len(out) == 2


def test_a_notebook_function_travels_with_its_own_source():
    def build(depth):  # defined here, as in a notebook cell: imports inside
        from torch import nn

        return nn.Sequential(
            nn.Flatten(), *[nn.Linear(784, 784) for _ in range(depth - 1)], nn.Linear(784, 10)
        )

    factory = ModelFactory.from_callable(build)
    assert "def build(depth)" in pickle.loads(pickle.dumps(factory)).source
    assert create_model(factory, (1, 28, 28), 10, depth=1)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize(
    "function, message",
    [
        ("not_a_module", "returned str, not a torch.nn.Module"),
        ("wrong_shape", "must return 10 logits per image (N, 10) or a list of such, got (7,) per image"),
        ("raises", "raised ValueError: depth must be even"),
    ],
)
def test_a_broken_factory_fails_with_one_line(nets, function, message):
    with pytest.raises(FactoryError) as info:
        create_model(ModelFactory.from_file(f"{nets}:{function}"), (1, 28, 28), 10, depth=2)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.py:build", "cannot read model file missing.py"),
        ("{nets}:absent", "defines no function 'absent'"),
    ],
)
def test_a_bad_model_file_is_a_config_error(nets, spec, message):
    with pytest.raises(ConfigError, match=message):
        ModelFactory.from_file(spec.format(nets=nets))


def test_a_bad_depth_or_parameter_is_a_config_error(nets):
    factory = ModelFactory.from_file(f"{nets}:build")
    with pytest.raises(ConfigError, match="positive integer depth"):
        model_config(factory, depth=0)
    with pytest.raises(ConfigError, match="must be a number, string or boolean"):
        model_config(factory, depth=2, width=[1, 2])
