"""`depthlab train` interrupted (Ctrl-C after its first epoch) and run again with the same
command resumes from its last saved epoch and ends where an uninterrupted run ends (issue 22)."""

import os

from depthlab.cli import main
from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.stepper import SingleStepper
from depthlab.store.sqlite import Store, checkpoint_dir_for


def _args(data_root, db, *extra):
    return [
        "train",
        "cnn-tanh",
        "--depth",
        "3",
        "--data-dir",
        str(data_root),
        "--train-size",
        "512",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--store",
        str(db),
        *extra,
    ]


def _final(db):
    with Store(db, reading=True) as s:
        (row,) = s.runs(status="done")
        return row.result["test_error"], [(e["train_error"], e["test_error"]) for e in s.epochs(row.id)]


def test_interrupted_train_resumes_and_matches_an_uninterrupted_run(data_root, tmp_path, capsys, monkeypatch):
    assert main(_args(data_root, tmp_path / "whole.db")) == 0
    capsys.readouterr()

    db = tmp_path / "cut.db"
    end_epoch = SingleStepper.end_epoch

    def interrupt_in_second_epoch(self, member, metrics):
        if metrics.epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C after epoch 0 was saved, before epoch 1 is
        end_epoch(self, member, metrics)

    monkeypatch.setattr(SingleStepper, "end_epoch", interrupt_in_second_epoch)
    assert main(_args(data_root, db)) == 130
    monkeypatch.undo()
    folder = checkpoint_dir_for(db)
    assert len(os.listdir(folder)) == 1  # epoch 0's state, beside the store
    with Store(db, reading=True) as s:
        assert s.interrupted() == set() and s.count("running") == 1  # this process: not yet "gone"
    capsys.readouterr()

    assert main(_args(data_root, db)) == 0
    out, err = capsys.readouterr()
    assert err.count("resuming from epoch 1,") == 1, err
    assert len([line for line in out.splitlines() if line.startswith("Epoch ")]) == 3
    assert _final(db) == _final(tmp_path / "whole.db")
    assert not os.path.exists(folder)  # the checkpoint is gone once the run is done
    with Store(db, reading=True) as s:
        assert s.count() == 1  # the interrupted row was replaced by the finished run


def test_a_corrupted_checkpoint_is_dropped_and_the_run_starts_over(data_root, tmp_path, capsys):
    from depthlab.engine.checkpoints import checkpoint_file
    from depthlab.engine.config import TrainConfig

    db = tmp_path / "s.db"
    config = TrainConfig(
        model="cnn-tanh",
        model_args={"depth": 3},
        train_size=512,
        epochs=1,
        batch_size=64,
        lr=0.05,
        device="cpu",
        threads=1,
    )
    path = checkpoint_file(checkpoint_dir_for(db), config)
    path.parent.mkdir()
    path.write_bytes(b"truncated")
    assert main(_args(data_root, db, "--epochs", "1")) == 0
    out, err = capsys.readouterr()
    assert "resuming" not in err
    assert not path.exists()


def test_the_python_api_resumes_the_same_way(data_root, tmp_path, monkeypatch, caplog):
    """`depthlab.train(config, store=...)` is what the command runs: it checkpoints and resumes too."""
    import logging

    import pytest

    import depthlab
    from depthlab.engine.config import TrainConfig

    config = TrainConfig(
        model="cnn-tanh",
        model_args={"depth": 3},
        train_size=512,
        epochs=3,
        batch_size=64,
        lr=0.05,
        device="cpu",
        threads=1,
    )
    whole = depthlab.train(config, store=tmp_path / "whole.db", progress=False, data_dir=data_root)
    end_epoch = SingleStepper.end_epoch

    def interrupt_in_second_epoch(self, member, metrics):
        if metrics.epoch == 1:
            raise KeyboardInterrupt
        end_epoch(self, member, metrics)

    monkeypatch.setattr(SingleStepper, "end_epoch", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        depthlab.train(config, store=tmp_path / "cut.db", progress=False, data_dir=data_root)
    monkeypatch.undo()
    assert len(os.listdir(checkpoint_dir_for(tmp_path / "cut.db"))) == 1
    seen = []
    with caplog.at_level(logging.INFO, logger="depthlab"):
        resumed = depthlab.train(
            config,
            store=tmp_path / "cut.db",
            progress=False,
            data_dir=data_root,
            callbacks=[LambdaCallback(on_epoch_metrics=lambda loop, i, m: seen.append(m.epoch))],
        )
    assert [r.message for r in caplog.records if "resuming" in r.message][0].startswith(
        "resuming from epoch 1,"
    )
    assert seen == [0, 1, 2]  # the restored epoch comes back first, then the two trained now
    assert resumed.test_error == whole.test_error
    assert [(e.train_error, e.test_error) for e in resumed.epochs] == [
        (e.train_error, e.test_error) for e in whole.epochs
    ]
    assert not os.path.exists(checkpoint_dir_for(tmp_path / "cut.db"))
