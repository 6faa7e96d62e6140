"""``depthlab frontier``'s progress (issue 32): the API's tqdm bar, on a terminal only, with the
trials done, running and left and an ETA from the dry-run's cost model (`depthlab.cli.plan`)."""

import sys

from depthlab.cli import frontier as frontier_cli
from depthlab.cli import main, plan
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.sweep.executors import ExecutorSpec

COSTS = {"plain": 2e-6, "bn": 3e-6}


class FakeBar:
    def __init__(self):
        self.n, self.postfix = 0, ""

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text


def test_eta_is_the_cost_left_shared_by_the_slots():
    assert frontier_cli.eta_seconds([10.0, 20.0, 30.0], 1) == 60.0
    assert frontier_cli.eta_seconds([10.0, 20.0, 30.0], 2) == 30.0
    assert frontier_cli.eta_seconds([], 4) == 0.0
    assert frontier_cli.eta_seconds([5.0], 0) == 5.0  # no slot reported: one


def test_the_plan_s_trials_add_up_to_the_dry_run_s_bound(monkeypatch):
    config = FrontierConfig(
        depths=(3, 6), lrs=(0.01, 0.1), epochs=1, train_size=1000, eval_size=500, evals_per_epoch=2
    )
    trials = plan.planned_trials(["cnn-tanh", "cnn-elu-bn"], config, COSTS, 1000)
    assert [(m, d) for m, d, _ in trials] == [("cnn-tanh", 3)] * 2 + [("cnn-tanh", 6)] * 2 + [
        ("cnn-elu-bn", 3)
    ] * 2 + [("cnn-elu-bn", 6)] * 2
    # one trial: (1000 trained + 0.5 * 2 * 500 evaluated images) * depth * per-layer cost
    assert trials[0][2] == (1000 + 500) * 3 * 2e-6 and trials[-1][2] == (1000 + 500) * 6 * 3e-6
    bound = plan.plan_lines(["cnn-tanh", "cnn-elu-bn"], config, COSTS, 1000)[1]
    assert f"to {plan._hours(sum(s for *_, s in trials))} " in bound


def test_each_finished_trial_moves_the_counts_and_the_eta(monkeypatch):
    monkeypatch.setattr(plan, "layer_costs", lambda: COSTS)
    config = FrontierConfig(
        depths=(3, 6), lrs=(0.1,), epochs=1, train_size=1000, eval_size=1000, evals_per_epoch=1
    )
    bar = FakeBar()
    progress = frontier_cli.FrontierProgress(bar, ["cnn-tanh"], config, 60_000, ExecutorSpec(workers=1))
    # 2 trials of (1000 + 500) images at depths 3 and 6, 2 us per image per layer: 9 ms + 18 ms
    assert bar.postfix == "done 0, running 1, left <= 2, ETA <= 0 s (dry-run cost model)"
    assert sum(progress.left[("cnn-tanh", 6)]) == (1000 + 500) * 6 * 2e-6
    progress.trial_done("cnn-tanh depth 6 lr 0.1 seed 1: trains (9.0% error at 1 epoch), 1.0s")
    assert bar.n == 1 and bar.postfix.startswith("done 1, running 1, left <= 1, ")
    assert progress.left[("cnn-tanh", 6)] == [] and len(progress.left[("cnn-tanh", 3)]) == 1
    progress.trial_done("cnn-tanh depth 4 lr 0.1 seed 1: fails, 1.0s")  # a bisection step: not in the plan
    assert bar.n == 2 and bar.postfix.startswith("done 2, running 1, left <= 1, ")


def test_a_frontier_on_a_terminal_shows_done_left_and_eta_and_a_pipe_gets_no_bar(
    tmp_path, data_root, monkeypatch, capsys
):
    monkeypatch.setattr(plan, "layer_costs", lambda: COSTS)
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--depths",
        "3,6",
        "--lrs",
        "0.1",
        "--train-size",
        "300",
        "--epochs",
        "1",
        "--eval-size",
        "300",
        "--evals-per-epoch",
        "1",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--data-dir",
        str(data_root),
        "--store",
        str(tmp_path / "f.db"),
        "--out",
        str(tmp_path / "out"),
    ]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "done 0, running 1, left <= 2, ETA <= " in err and "(dry-run cost model)" in err
    assert "done 2, running 0, left <= 0, ETA <= 0 s" in err and "frontier:" in err  # tqdm's desc
    assert "cnn-tanh depth 6 lr 0.1 seed 0: " in err  # each trial's line, printed above the bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert main(args) == 0  # the same trials, read back from the store
    captured = capsys.readouterr()
    assert "ETA" not in captured.err and "ETA" not in captured.out and "cnn-tanh depth 6" in captured.err
