"""CIFAR-10 models, the recipes, checkpoint/resume and the ``reproduce`` command (SPEC §2.4)."""

import math

import pytest
import torch
from fakedata import tiny_cifar, write_cifar_folder
from torch import nn

from depthlab.cli import main
from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.checkpoints import load_checkpoint
from depthlab.engine.config import TrainConfig
from depthlab.engine.loop import train
from depthlab.engine.schedule import parse_schedule
from depthlab.errors import ConfigError, DataError
from depthlab.experiments.cifar import (
    PAPER_TEST_ERROR,
    check_resumable,
    checkpoint_file,
    lr_bn_configs,
    lr_bn_findings,
    resnet_cifar_config,
    shortcut_findings,
    shortcuts_configs,
)
from depthlab.models import count_parameters, create_model, model_config
from depthlab.models.cifar import ShortcutA
from depthlab.models.layers import BatchNorm

# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, overrides, params",
    [
        ("resnet20", {}, 269_722),  # He et al.: 0.27M
        ("resnet32", {}, 464_154),  # 0.46M
        ("resnet110", {}, 1_727_962),  # 1.7M
        ("resnet20", {"shortcut": "B"}, 272_474),  # + two 1x1 projections with BN
        ("resnet18", {}, 11_173_962),
        ("plain18", {}, 11_000_138),  # resnet18 minus its three projection shortcuts
        ("cifar-cnn", {}, 25_578),
        ("cifar-cnn-bn", {}, 25_674),
    ],
)
def test_parameter_counts(name, overrides, params):
    assert count_parameters(create_model(name, (3, 32, 32), 10, **overrides)) == params


@pytest.mark.parametrize(
    "name", ["resnet20", "resnet-cifar", "resnet18", "plain18", "cifar-cnn", "cifar-cnn-bn"]
)
def test_models_map_cifar_batches_to_ten_logits(name):
    model = create_model(name, (3, 32, 32), 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_cifar_depth_is_6n_plus_2_and_aliases_are_presets():
    for depth, n in ((20, 3), (32, 5), (44, 7), (56, 9), (110, 18)):
        assert model_config(f"resnet{depth}")["n"] == n
        model = create_model(f"resnet{depth}", (3, 32, 32))
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert len(convs) + len(linears) == depth  # option A: every weight layer is on the main path
    assert model_config("resnet-cifar", n=1)["n"] == 1


def test_shortcut_options_a_and_b():
    a = create_model("resnet20", (3, 32, 32))
    b = create_model("resnet20", (3, 32, 32), shortcut="B")
    assert sum(isinstance(m, ShortcutA) for m in a.modules()) == 2  # stacks 2 and 3 change shape
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in a.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in b.modules()) == 2
    x = torch.randn(4, 16, 8, 8)
    y = ShortcutA(16, 32, 2)(x)
    assert y.shape == (4, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # the input, subsampled, in the middle channels
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0


def test_plain18_has_no_shortcut_and_resnet18_projects_where_shape_changes():
    plain, res = create_model("plain18", (3, 32, 32)), create_model("resnet18", (3, 32, 32))

    def one_by_one(m):
        return sum(isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) for c in m.modules())

    assert one_by_one(plain) == 0 and one_by_one(res) == 3
    assert not any(b.use_shortcut for b in plain.modules() if hasattr(b, "use_shortcut"))


def test_kaiming_init_and_bn_starts_at_one_zero():
    model = create_model("resnet56", (3, 32, 32))
    conv = model.stacks[2][0].conv2  # 64 -> 64, fan-in 576
    assert abs(conv.weight.std().item() - math.sqrt(2 / 576)) < 0.005
    bn = model.stacks[2][0].bn2
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.bias, torch.zeros(64))


def test_scratch_batchnorm_model_computes_what_the_torch_one_does():
    torch.manual_seed(0)
    ref = create_model("resnet20", (3, 32, 32))
    ours = create_model("resnet20", (3, 32, 32), bn_impl="scratch")
    assert any(isinstance(m, BatchNorm) for m in ours.modules())
    ours.load_state_dict(ref.state_dict())  # identical parameter and buffer names
    x = torch.randn(8, 3, 32, 32)
    torch.testing.assert_close(ours.train()(x), ref.train()(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n": 0}, "n >= 1"),
        ({"n": -2}, "n >= 1"),
        ({"shortcut": "C"}, "shortcut"),
        ({"bn_impl": "mine"}, "bn_impl"),
    ],
)
def test_bad_model_parameters_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_model("resnet-cifar", (3, 32, 32), **overrides)


# --- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "plain18", "cifar-cnn", "cifar-cnn-bn"])
def test_one_training_epoch_of_each_model_on_a_tiny_cifar_set(name):
    data = tiny_cifar(n_train=32, n_test=16)
    result = train(
        TrainConfig(
            model=name, dataset="cifar10", epochs=1, batch_size=16, lr=0.01, augment=True, device="cpu"
        ),
        data,
    )
    assert result.status == "done" and len(result.epochs) == 1
    assert math.isfinite(result.epochs[0].loss) and 0 <= result.test_error <= 1


def test_cifar_models_refuse_mnist():
    with pytest.raises(ConfigError, match="runs on cifar10"):
        TrainConfig(model="resnet20", dataset="mnist").validate()


def test_hold_schedule_gives_the_warmup_lr_then_the_schedule():
    s = parse_schedule("hold:1.5@0.01+multistep:3,4")
    assert s.lr_at(0.0, 0.1, 5) == 0.01 and s.lr_at(1.49, 0.1, 5) == 0.01
    assert s.lr_at(1.5, 0.1, 5) == 0.1
    assert s.lr_at(3.0, 0.1, 5) == pytest.approx(0.01) and s.lr_at(4.5, 0.1, 5) == pytest.approx(0.001)
    for bad in ("hold:1+constant", "hold:x@0.1", "hold:1@-1", "hold:1@0.1+warmup:2"):
        with pytest.raises(ConfigError, match="malformed schedule"):
            parse_schedule(bad)


def test_resnet_cifar_recipe():
    c = resnet_cifar_config(3)
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert (c.epochs, c.schedule, c.augment, c.eval_split, c.val_fraction) == (
        200,
        "multistep:100,150",
        True,
        "val",
        0.1,
    )
    assert c.patience is not None
    warm = resnet_cifar_config(18)  # resnet110: 0.01 for ~400 iterations of 352 per epoch
    assert warm.schedule == "hold:1.136@0.01+multistep:100,150"
    assert parse_schedule(warm.schedule).lr_at(1.0, 0.1, 200) == 0.01
    with pytest.raises(ConfigError, match="n >= 1"):
        resnet_cifar_config(0)
    assert PAPER_TEST_ERROR[3] == 8.75


def test_lessons_have_the_spec_budgets_and_max_epochs_caps_them():
    full = lr_bn_configs()
    assert [(c.model, c.lr, c.momentum, c.batch_size, c.epochs) for _, c in full] == [
        ("cifar-cnn", 0.001, 0.0, 1024, 10),
        ("cifar-cnn", 0.9, 0.0, 1024, 5),
        ("cifar-cnn", 0.001, 0.9, 1024, 10),
        ("cifar-cnn", 0.01, 0.9, 256, 50),
        ("cifar-cnn-bn", 0.01, 0.9, 256, 50),
        ("cifar-cnn-bn", 0.05, 0.9, 256, 50),
    ]
    assert [c.epochs for _, c in lr_bn_configs(max_epochs=4)] == [4, 4, 4, 4, 4, 4]
    configs = shortcuts_configs()
    assert [(c.model, c.optimizer, c.lr, c.epochs, c.batch_size) for c in configs] == [
        ("plain18", "adam", 0.01, 30, 256),
        ("resnet18", "adam", 0.01, 30, 256),
    ]


def _epochs(errors, losses=None):
    return [
        {"epoch": i, "train_error": e, "test_error": e, "loss": (losses or errors)[i]}
        for i, e in enumerate(errors)
    ]


def test_findings_are_computed_from_the_numbers():
    results = {
        "sgd-lr0.001": {"status": "done", "epochs": _epochs([0.9, 0.85, 0.8])},
        "sgd-lr0.9": {"status": "diverged", "reason": "non-finite loss at epoch 0, step 3", "epochs": []},
        "momentum-lr0.001": {"status": "done", "epochs": _epochs([0.8, 0.6, 0.5])},
        "cnn-lr0.01": {"status": "done", "epochs": _epochs([0.6, 0.5, 0.45])},
        "bn-lr0.01": {"status": "done", "epochs": _epochs([0.5, 0.4, 0.35])},
        "bn-lr0.05": {"status": "done", "epochs": _epochs([0.55, 0.38, 0.3])},
    }
    text = "\n".join(lr_bn_findings(results))
    assert "90.00% -> 80.00%" in text and "diverged (non-finite loss" in text
    assert "50.00% vs 80.00% without (faster); it reached plain SGD's 3-epoch error after 1 epoch(s)" in text
    assert "BN reached the no-BN run's final train error after 2 of 3 epochs" in text
    assert "at 5x the lr it trains without diverging but is ahead of the lr-0.01 run after 3 epochs" in text
    assert "fell in every epoch" in text
    results["bn-lr0.05"] = {
        "status": "diverged",
        "reason": "non-finite loss at epoch 0, step 9",
        "epochs": [],
    }
    assert "BN at lr 0.05: diverged (non-finite loss" in "\n".join(lr_bn_findings(results))
    results["momentum-lr0.001"]["epochs"] = _epochs([0.9, 0.9, 0.9])
    assert "(not faster)" in "\n".join(lr_bn_findings(results))
    lines = shortcut_findings(
        {
            "plain18": {"epochs": _epochs([2.0, 1.5], [2.0, 1.5])},
            "resnet18": {"epochs": _epochs([1.6, 1.0], [1.6, 1.0])},
        }
    )
    assert "resnet18 lower" in lines[0] and "after 2 of 2 epochs" in lines[1]


# --- checkpoints and resume --------------------------------------------------------------------


class _Interrupt(Exception):
    pass


def _resumable_config(**kw):
    return TrainConfig(
        model="cifar-cnn-bn",
        dataset="cifar10",
        epochs=4,
        batch_size=16,
        lr=0.05,
        augment=True,
        eval_split="val",
        patience=1,
        schedule="hold:0.5@0.01+multistep:2",
        device="cpu",
        **kw,
    )


def _epoch_rows(result):
    """What a resumed run must reproduce, epoch by epoch."""
    return [(e.epoch, e.train_error, e.test_error, e.loss, e.lr) for e in result.epochs]


def test_resume_continues_an_interrupted_run_to_the_uninterrupted_result(tmp_path):
    data = tiny_cifar(n_train=80, n_test=16)
    full = train(_resumable_config(), data, checkpoint_path=tmp_path / "full.pt")

    def stop_after_epoch_1(loop, i, m):
        if m.epoch == 1:
            raise _Interrupt

    path = tmp_path / "cut.pt"
    with pytest.raises(_Interrupt):
        train(
            _resumable_config(),
            data,
            checkpoint_path=path,
            callbacks=[LambdaCallback(on_epoch_metrics=stop_after_epoch_1)],
        )
    assert load_checkpoint(path)["epoch"] == 1  # epoch 1 raised in on_epoch, after epoch 0's save
    replayed = []
    resumed = train(
        _resumable_config(),
        data,
        checkpoint_path=path,
        resume=True,
        callbacks=[LambdaCallback(on_epoch_metrics=lambda loop, i, m: replayed.append(m))],
    )
    assert _epoch_rows(resumed) == _epoch_rows(full)
    assert [m.epoch for m in replayed] == [e.epoch for e in full.epochs]  # restored epochs are replayed
    assert resumed.test_error == full.test_error and resumed.stopped_early == full.stopped_early
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    again = train(_resumable_config(), data, checkpoint_path=path, resume=True)  # a finished checkpoint
    assert _epoch_rows(again) == _epoch_rows(full) and again.test_error == full.test_error


def test_a_run_killed_inside_an_epoch_resumes_from_its_last_evaluation_point(tmp_path):
    """Checkpoints are also written at the evaluation points inside an epoch (with the epoch's
    sample order, the augmentation RNG and the running sums): killed between two of them, the
    run continues from the last one to exactly the uninterrupted result."""
    config = _resumable_config(evals_per_epoch=3)  # 5 steps per epoch: evaluations after steps 2, 3, 5
    data = tiny_cifar(n_train=80, n_test=16)
    full = train(config, data)

    def kill_at_epoch_1_step_5(loop, step):
        steps = loop.setup.steps_per_epoch
        if kill_at_epoch_1_step_5.epoch_of_step == 1 and step == 5:
            raise _Interrupt
        if step == steps:
            kill_at_epoch_1_step_5.epoch_of_step += 1

    kill_at_epoch_1_step_5.epoch_of_step = 0
    path = tmp_path / "cut.pt"
    with pytest.raises(_Interrupt):
        train(
            config, data, checkpoint_path=path, callbacks=[LambdaCallback(on_step_end=kill_at_epoch_1_step_5)]
        )
    saved = load_checkpoint(path)
    assert (saved["epoch"], saved["mid_epoch"]["step"]) == (1, 3)  # saved after epoch 1's step 3
    resumed = train(config, data, checkpoint_path=path, resume=True)
    assert _epoch_rows(resumed) == _epoch_rows(full)
    assert [vars(c) for c in resumed.evaluation_points] == [vars(c) for c in full.evaluation_points]
    assert resumed.test_error == full.test_error and resumed.stopped_early == full.stopped_early
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_is_written_atomically_and_loads_weights_only(tmp_path):
    data = tiny_cifar(n_train=32, n_test=16)
    path = tmp_path / "run.pt"
    train(_resumable_config(), data, checkpoint_path=path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp file left behind
    state = torch.load(path, weights_only=True)
    assert state["config_hash"] == _resumable_config().hash()


def test_corrupted_or_foreign_checkpoints_are_clear_errors(tmp_path):
    data = tiny_cifar(n_train=32, n_test=16)
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="corrupted"):
        train(_resumable_config(), data, checkpoint_path=path, resume=True)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(DataError, match="not a depthlab training checkpoint"):
        load_checkpoint(path)
    train(_resumable_config(seed=1), data, checkpoint_path=path)
    with pytest.raises(ConfigError, match="different configuration"):
        train(_resumable_config(), data, checkpoint_path=path, resume=True)
    checkpoint_file(tmp_path, _resumable_config()).write_bytes(
        path.read_bytes()
    )  # seed 1's state, seed 0's name
    with pytest.raises(ConfigError, match="different configuration"):
        check_resumable([_resumable_config()], tmp_path)


# --- the reproduce command ---------------------------------------------------------------------


def _run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_reproduce_bad_input_is_one_line_exit_2_and_leaves_no_store(tmp_path, capsys):
    write_cifar_folder(tmp_path / "data" / "cifar-10-batches-py", per_batch=8)
    store = tmp_path / "s.db"
    common = [
        "--data-dir",
        str(tmp_path / "data"),
        "--store",
        str(store),
        "--checkpoint-dir",
        str(tmp_path / "c"),
    ]
    for args, message in [
        (["reproduce", "resnet-cifar", "--n", "0"], "n >= 1"),
        (["reproduce", "resnet-cifar", "--shortcut", "C"], "shortcut"),
        (["reproduce", "resnet-cifar", "--dataset", "mnist"], "not 'mnist'"),
        (["reproduce", "imagenet"], "unknown experiment"),
        (["reproduce", "cifar-lr-bn", "--max-epochs", "0"], "--max-epochs"),
    ]:
        # an unknown NAME goes to the generic `reproduce`, which has no --checkpoint-dir
        code, out, err = _run(capsys, *args, *(common[:4] if args[1] == "imagenet" else common))
        assert code == 2, args
        assert err.startswith("depthlab: error:") and message in err and err.count("\n") == 1, err
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2").unlink()
    code, _, err = _run(capsys, "reproduce", "cifar-lr-bn", *common)
    assert code == 2 and "data_batch_2" in err and err.count("\n") == 1
    assert not store.exists() and not (tmp_path / "c").exists()


def test_reproduce_corrupted_checkpoint_is_exit_2_before_the_store_is_touched(tmp_path, capsys):
    write_cifar_folder(tmp_path / "data" / "cifar-10-batches-py", per_batch=8)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    first = lr_bn_configs(dataset="cifar10", max_epochs=1, train_size=16)[0][1]
    checkpoint_file(ckpt, first).write_bytes(b"truncated checkpoint")
    store = tmp_path / "s.db"
    code, _, err = _run(
        capsys,
        "reproduce",
        "cifar-lr-bn",
        "--dataset",
        "cifar10",
        "--max-epochs",
        "1",
        "--train-size",
        "16",
        "--data-dir",
        str(tmp_path / "data"),
        "--store",
        str(store),
        "--checkpoint-dir",
        str(ckpt),
        "--resume",
    )
    assert code == 2 and "corrupted" in err and err.count("\n") == 1, err
    assert not store.exists()


@pytest.mark.slow
def test_reproduce_resnet_cifar_and_shortcuts_end_to_end_on_a_generated_cifar_folder(tmp_path, capsys):
    write_cifar_folder(tmp_path / "data" / "cifar-10-batches-py", per_batch=16)
    common = [
        "--data-dir",
        str(tmp_path / "data"),
        "--store",
        str(tmp_path / "s.db"),
        "--device",
        "cpu",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--out",
        str(tmp_path / "out"),
    ]
    code, out, err = _run(capsys, "reproduce", "resnet-cifar", "--n", "3", "--epochs", "2", *common)
    assert code == 0, err
    assert "Val Error" in out and "paper test err" in out and "8.75%" in out and "img/s" in out
    code, out, err = _run(capsys, "reproduce", "resnet-cifar", "--n", "3", "--epochs", "2", *common)
    assert code == 0 and "already in the store" in out  # a finished config is not trained again
    code, out, err = _run(
        capsys, "reproduce", "resnet18-shortcuts", "--epochs", "1", "--train-size", "32", *common
    )
    assert code == 0, err
    assert "plain18" in out and "resnet18" in out and (tmp_path / "out" / "resnet18-shortcuts.png").is_file()
    assert len(list((tmp_path / "ckpt").glob("*.pt"))) == 3
