"""Hardening II item 4: a result is a result only for the data it was computed on (the data's
fingerprint is recorded with every run and checked before a stored run is reused)."""

import sys
from dataclasses import replace
from pathlib import Path

from depthlab.cli.app import main
from depthlab.data.registry import load_dataset
from depthlab.engine.config import TrainConfig
from depthlab.store.sqlite import Store
from depthlab.sweep.driver import TrialRunner
from depthlab.sweep.executors import InProcessExecutor
from depthlab.sweep.jobs import Job
from depthlab.sweep.runner import FINGERPRINT_KEY, run_recorded, stored_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakedata import write_idx_folder  # noqa: E402

TRAIN = [
    "train",
    "cnn-tanh",
    "--depth",
    "3",
    "--dataset",
    "fashion-mnist",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def fashion_folders(tmp_path):
    write_idx_folder(tmp_path / "a" / "FashionMNIST" / "raw", n_train=256, n_test=64, seed=0)
    write_idx_folder(tmp_path / "b" / "FashionMNIST" / "raw", n_train=256, n_test=64, seed=5)
    return tmp_path / "a", tmp_path / "b"


def test_a_store_filled_from_one_data_folder_is_not_reused_for_other_data_of_that_name(tmp_path, capsys):
    a, b = fashion_folders(tmp_path)
    store = tmp_path / "s.db"
    runs = []
    for folder in (a, a, b, b):
        assert main([*TRAIN, "--data-dir", str(folder), "--store", str(store)]) == 0
        runs.append("already in" in capsys.readouterr().err)
    assert runs == [False, True, False, True]  # a, a again (reused), b (trained), b again (reused)
    with Store(store, reading=True) as s:
        prints = [r.config[FINGERPRINT_KEY] for r in s.runs(status="done")]
    assert len(prints) == 2 and prints[0] != prints[1]


def test_the_driver_reuses_a_trial_only_on_the_data_it_was_made_on(tmp_path):
    a, b = fashion_folders(tmp_path)
    data_a, data_b = load_dataset("fashion-mnist", a), load_dataset("fashion-mnist", b)
    job = Job(
        TrainConfig(
            model="cnn-tanh", model_args={"depth": 3}, dataset="fashion-mnist", epochs=1, batch_size=64
        )
    )
    with Store(tmp_path / "d.db") as store, InProcessExecutor() as executor:
        TrialRunner(executor, store, data_a).run([job])
        assert TrialRunner(executor, store, data_a).run([job])[0].reused
        again = TrialRunner(executor, store, data_b)
        assert again.stored([job.config]) == [None]
        assert not again.run([job])[0].reused and store.count("done") == 2


def test_runs_recorded_before_fingerprints_count_only_on_checksummed_standard_data(tmp_path, mnist):
    """A row without a fingerprint (a store made before 2026-12-06) is reused for mnist, whose
    files are checked against the official checksums, and retrained for anything else."""
    a, _ = fashion_folders(tmp_path)
    fashion = load_dataset("fashion-mnist", a)
    with Store(tmp_path / "old.db") as store:
        for dataset, data in (("mnist", mnist), ("fashion-mnist", fashion)):
            config = TrainConfig(
                model="cnn-tanh",
                model_args={"depth": 3},
                dataset=dataset,
                epochs=1,
                train_size=128,
                test_size=64,
                batch_size=64,
            )
            result = run_recorded(config, None, data)
            store.record(config.canonical(), config.hash(), result.to_dict())  # as the old code did
            found = stored_result(store, config.hash(), dataset=dataset, fingerprint=data.fingerprint)
            assert (found is not None) == (dataset == "mnist")
            assert stored_result(store, config.hash()) is not None  # a read-only view does not check
            assert run_recorded(replace(config), store, data).reused == (dataset == "mnist")
