"""Hardening II (issue #24): a sweep's numbers do not depend on --workers/--executor (threads
pinned, part of the identity), a crashed worker is never a verdict, fused groups form the same
way whatever the arrival order of the requests."""

import json
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from depthlab.cli.app import main
from depthlab.engine.config import TrainConfig
from depthlab.errors import InfrastructureError
from depthlab.records.record import RunStatus
from depthlab.store.sqlite import Store
from depthlab.sweep.driver import TrialRunner
from depthlab.sweep.executors import InProcessExecutor, ProcessExecutor
from depthlab.sweep.jobs import Job
from depthlab.sweep.runner import run_recorded

BASE = dict(model="cnn-elu-bn", model_args={"depth": 3}, train_size=300, test_size=200, epochs=1)


def jobs(lrs, **extra) -> list[Job]:
    return [Job(TrainConfig(**{**BASE, **extra}, lr=lr), kind="sweep") for lr in lrs]


def stored_metrics(path) -> dict:
    """Every finished trial of a store: its status and per-epoch numbers, by config hash."""
    with Store(path, reading=True) as store:
        return {
            r.config_hash: (
                r.status,
                json.dumps(
                    [{k: v for k, v in e.items() if k != "seconds"} for e in store.epochs(r.id)],
                    sort_keys=True,
                ),
                json.dumps((r.result or {}).get("checkpoints"), sort_keys=True),
            )
            for r in store.runs()
        }


# -- 1. threads ------------------------------------------------------------------------------


def test_threads_are_part_of_the_identity_except_at_the_sweep_value():
    base = TrainConfig(**BASE)
    assert replace(base, threads=1).hash() == base.hash()  # old stores keep replaying
    assert replace(base, threads=2).hash() != base.hash()
    before = torch.get_num_threads()
    result = run_recorded(replace(base, threads=3), None, None)
    assert result.threads == 3 and result.config["threads"] == 3
    assert torch.get_num_threads() == before  # restored after the run


def test_a_runner_pins_every_trial_to_its_thread_count(mnist, tmp_path):
    with Store(tmp_path / "t.db") as store, InProcessExecutor() as executor:
        got = TrialRunner(executor, store, mnist).run(jobs((0.05,)))
        assert got[0].threads == 1 and got[0].config["threads"] == 1
        assert (
            store.find_finished(TrainConfig(**BASE, lr=0.05).hash()) is not None
        )  # the same key as unpinned


SWEEP = [
    "frontier",
    "--models",
    "cnn-tanh,cnn-elu-bn",
    "--depths",
    "3,6",
    "--lrs",
    "0.01,0.1",
    "--epochs",
    "1",
    "--train-size",
    "1000",
    "--eval-size",
    "300",
    "--device",
    "cpu",
]


@pytest.mark.slow
def test_the_same_frontier_stores_the_same_metrics_with_1_or_2_workers_or_ray(data_root, tmp_path, capsys):
    pytest.importorskip("ray")
    runs = {"w1": ["--workers", "1"], "w2": ["--workers", "2"], "ray": ["--executor", "ray"]}
    metrics = {}
    before = torch.get_num_threads()
    torch.set_num_threads(4)  # the process's default, as on a 4-core machine (the suite runs on 1)
    try:
        for name, flags in runs.items():
            code = main(
                [*SWEEP, *flags, "--store", str(tmp_path / f"{name}.db"), "--data-dir", str(data_root)]
            )
            assert code == 0, capsys.readouterr().err
            metrics[name] = stored_metrics(tmp_path / f"{name}.db")
    finally:
        torch.set_num_threads(before)
    assert metrics["w1"] and metrics["w1"] == metrics["w2"] == metrics["ray"]


# -- 2. a crashed worker -----------------------------------------------------------------------


@dataclass
class KillsItsWorker:
    """A monitor that SIGKILLs the worker process it runs in, the first ``times`` times (counted
    in files under ``folder``, which survive the killed process)."""

    folder: str
    times: int

    def __call__(self, checkpoint) -> bool:
        done = len(os.listdir(self.folder))
        if done < self.times:
            Path(self.folder, f"kill-{done}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return False


def test_a_worker_killed_mid_trial_is_retried_and_the_result_is_exact(mnist, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    trials = jobs((0.05,))
    trials[0].monitor = KillsItsWorker(str(marks), times=1)
    with Store(tmp_path / "k.db") as store, ProcessExecutor(workers=2) as executor:
        runner = TrialRunner(executor, store, mnist)
        runner.backoff = 0.01
        got = runner.run(trials)
        assert len(os.listdir(marks)) == 1  # it was killed once
        assert got[0].status == RunStatus.DONE and store.count() == store.count("done") == 1
    alone = run_recorded(replace(trials[0].config, threads=1), None, mnist)
    assert [e.loss for e in got[0].epochs] == [e.loss for e in alone.epochs]


def test_a_worker_that_always_dies_stops_the_sweep_and_records_nothing_for_it(mnist, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    doomed, fine = jobs((0.05,)), jobs((0.1,), train_size=200)
    doomed[0].monitor = KillsItsWorker(str(marks), times=1000)
    with Store(tmp_path / "d.db") as store, ProcessExecutor(workers=2) as executor:
        runner = TrialRunner(executor, store, mnist)
        runner.backoff = 0.01
        with pytest.raises(InfrastructureError, match="failed 3 times.*nothing was recorded for them"):
            runner.run(fine + doomed)
        assert len(os.listdir(marks)) == 3  # tried, then retried twice
        assert store.find_finished(doomed[0].config.hash()) is None  # no verdict
        assert store.count("failed") == 0


def test_the_cli_stops_with_one_line_and_exit_3_when_workers_keep_dying(
    data_root, tmp_path, capsys, monkeypatch
):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    def dying(self, trials, data, checkpoint=None):
        future = Future()
        future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return future

    monkeypatch.setattr(ProcessExecutor, "submit", dying)
    monkeypatch.setattr(TrialRunner, "backoff", 0.01)
    store = tmp_path / "c.db"
    code = main([*SWEEP, "--workers", "2", "--store", str(store), "--data-dir", str(data_root)])
    out = capsys.readouterr()
    assert code == 3 and out.out == ""
    lines = [line for line in out.err.splitlines() if line.startswith("depthlab: error:")]
    assert len(lines) == 1 and "BrokenProcessPool" in lines[0] and "run the same command again" in lines[0]
    with Store(store, reading=True) as s:
        assert s.count() == 0


# -- 3. fused groups, whatever the arrival order ----------------------------------------------


def test_fused_groups_do_not_depend_on_which_request_arrives_first(mnist, tmp_path):
    handed: list[tuple[str, int]] = []

    class Recording(InProcessExecutor):
        def submit(self, group, data, checkpoint=None):
            handed.append((group[0].config.model, len(group)))
            return super().submit(group, data, checkpoint)

    a, b = jobs((0.01, 0.1)), jobs((0.01, 0.1), model="cnn-tanh")
    seen = []
    for order in ((a, b), (b, a)):
        handed.clear()
        with Store(tmp_path / f"{len(seen)}.db") as store, Recording() as executor:
            executor.slots = 2
            runner = TrialRunner(executor, store, mnist, fuse=2)
            requests = [runner._start(list(r)) for r in order]  # both asked before either is served
            runner._serve(lambda: all(q.future.done() for q in requests))  # noqa: B023  (served in this pass)
        seen.append(sorted(handed))
        assert stored_metrics(tmp_path / f"{len(seen) - 1}.db")
    assert seen[0] == seen[1]
    assert stored_metrics(tmp_path / "0.db") == stored_metrics(tmp_path / "1.db")


@pytest.mark.slow
def test_fused_frontier_stores_the_same_trials_in_either_model_order(data_root, tmp_path, capsys):
    got = []
    for i, models in enumerate(("cnn-elu-bn,cnn-tanh", "cnn-tanh,cnn-elu-bn")):
        flags = [*SWEEP, "--models", models, "--fuse", "2", "--workers", "2"]
        code = main([*flags, "--store", str(tmp_path / f"{i}.db"), "--data-dir", str(data_root)])
        assert code == 0, capsys.readouterr().err
        got.append(stored_metrics(tmp_path / f"{i}.db"))
    assert got[0] and got[0] == got[1]
