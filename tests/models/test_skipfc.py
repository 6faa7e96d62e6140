"""The skipfc family (SPEC 2.3): shapes, the skip, BN, the reference-bug re-creations, CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

from depthlab.cli import main
from depthlab.errors import ConfigError
from depthlab.models import count_parameters, create_model
from depthlab.models.skipfc import PointwiseConv

SHAPE = (1, 32, 32)


def skipfc(**kw):
    return create_model("skipfc", SHAPE, 10, **kw)


def test_architecture_shapes():
    model = skipfc()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(7, 1, 1, 1), (12, 7, 2, 2)]
    assert model.features(torch.zeros(2, *SHAPE)).shape == (2, 12, 5, 5)
    assert tuple(model.hidden.weight.shape) == (300, 300)
    assert tuple(model.classifier.weight.shape) == (10, 300)
    assert model(torch.zeros(2, *SHAPE)).shape == (2, 10)


def test_parameter_counts():
    # conv1 7+7, conv2 7*12*4+12, hidden 300*300+300, classifier 3000+10
    assert count_parameters(skipfc()) == 14 + 348 + 90300 + 3010 == 93672
    assert count_parameters(skipfc(skip=False)) == 93672  # the skip has no parameters
    assert count_parameters(skipfc(bn=True)) == 93672 + 2 * (7 + 12)
    assert count_parameters(skipfc(bn=True, legacy_bn=True)) == 93672  # the reference's BN never trained


def test_skip_adds_the_flattened_features():
    torch.manual_seed(0)
    x = torch.randn(4, *SHAPE)
    for skip in (True, False):
        model = skipfc(skip=skip)
        z = model.features(x).flatten(1)
        h = torch.relu(model.hidden(z) + z) if skip else torch.relu(model.hidden(z))
        assert torch.allclose(model(x), model.classifier(h), atol=1e-6)


def test_pointwise_conv_equals_conv2d():
    conv = PointwiseConv(1, 7)
    x = torch.randn(3, 1, 32, 32)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias), atol=1e-6)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(conv(x_cl), F.conv2d(x, conv.weight, conv.bias), atol=1e-6)


def test_bn_eval_mode_uses_running_stats_but_legacy_bn_does_not():
    torch.manual_seed(0)
    x = torch.randn(8, *SHAPE)
    for legacy, batch_dependent in ((False, False), (True, True)):
        model = skipfc(bn=True, legacy_bn=legacy).eval()
        alone = model(x[:1])
        in_batch = model(x)[:1]
        assert (not torch.allclose(alone, in_batch, atol=1e-5)) == batch_dependent


def test_softmax_out_returns_probabilities():
    probs = skipfc(softmax_out=True)(torch.randn(5, *SHAPE))
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
    assert (probs >= 0).all()


def test_legacy_bn_needs_bn():
    with pytest.raises(ConfigError, match="legacy_bn"):
        skipfc(legacy_bn=True)


def test_cli_train_with_bool_params(data_root, tmp_path, capsys):
    rc = main(
        [
            "train",
            "skipfc",
            "-p",
            "bn=true",
            "-p",
            "skip=false",
            "--data-dir",
            str(data_root),
            "--train-size",
            "2000",
            "--epochs",
            "1",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--batch-size",
            "128",
            "--store",
            str(tmp_path / "s.db"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["config"]["dataset"] == "mnist32"
    assert out["config"]["model_args"]["bn"] is True and out["config"]["model_args"]["skip"] is False
    assert out["test_error"] < 0.5  # Adam learns something from 2000 images in one epoch


def test_cli_bad_bool_param_is_one_line(tmp_path, capsys):
    store = tmp_path / "s.db"
    assert main(["train", "skipfc", "-p", "skip=maybe", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("depthlab: error:") and len(err.strip().splitlines()) == 1
    assert not store.exists()
