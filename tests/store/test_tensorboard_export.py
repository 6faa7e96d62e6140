"""``depthlab runs --store S --tensorboard DIR`` (issue 32): a store already filled, exported as
event files that TensorBoard's own reader loads, one folder per run; the store is left as it was
and an export never mixes into a folder that holds something."""

from __future__ import annotations

import pytest

from depthlab.cli import main
from depthlab.store.sqlite import Store

pytest.importorskip("tensorboard")


def _store(path):
    with Store(path) as store:
        for run, (model, lr) in enumerate((("cnn-tanh", 0.1), ("mlp", 0.01))):
            config = {"model": model, "model_args": {"depth": 3 * (run + 1)}, "lr": lr, "dataset": "mnist"}
            run_id = store.start_run(config, f"h{run}")
            for epoch in range(3):
                store.log_epoch(
                    run_id,
                    {
                        "epoch": epoch,
                        "train_error": 0.5 / (epoch + 1),
                        "test_error": 0.4 / (epoch + 1),
                        "loss": 1.0 - 0.1 * epoch,
                        "lr": lr,
                        "seconds": 1.0,
                    },
                )
            store.finish_run(run_id, "done", seconds=3.0, result={"test_error": 0.13})


def test_the_export_is_read_back_by_tensorboard(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    db = tmp_path / "s.db"
    _store(db)
    before = db.read_bytes()
    assert main(["runs", "--store", str(db), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "exported 2 run(s)" in capsys.readouterr().out
    folders = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert folders == ["00001-cnn-tanh-d3-lr0.1", "00002-mlp-d6-lr0.01"]
    events = EventAccumulator(str(tmp_path / "tb" / folders[0]))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train_error", "test_error", "loss", "lr"}
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("test_error")] == [
        (0, 0.4),
        (1, 0.2),
        (2, 0.1333),
    ]
    assert db.read_bytes() == before


def test_an_export_refuses_a_folder_that_holds_something(tmp_path, capsys):
    db = tmp_path / "s.db"
    _store(db)
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "old").write_text("x")
    assert main(["runs", "--store", str(db), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["old"]
