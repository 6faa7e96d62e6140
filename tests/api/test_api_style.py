"""One API style (issue 32): every entry point takes the model (or a config) first and its
fields as keywords named as the CLI's flags; `diagnose` and `lr_find` are exported; results show
themselves in a line or a compact table (``__repr__``, ``_repr_html_``)."""

from __future__ import annotations

import pytest

import depthlab
from depthlab import ConfigError, TrainConfig
from depthlab.api import train_config
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.results import DepthResult, FrontierResult, ModelFrontier
from depthlab.records.record import EpochMetrics, RunResult, RunStatus


def build(depth, width=8):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.Tanh(), nn.Linear(width, 10))


def test_keywords_named_as_the_cli_flags_make_the_same_config_as_a_train_config():
    made = train_config("cnn-tanh", depth=9, act="elu", params={"heads": 1}, epochs=3, lr=0.1, batch_size=64)
    assert made == TrainConfig(
        model="cnn-tanh", model_args={"depth": 9, "act": "elu", "heads": 1}, epochs=3, lr=0.1, batch_size=64
    )
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 9})
    assert train_config(config) is config
    assert (
        train_config(config, depth=12, epochs=2).model_args == {"depth": 12}
        and train_config(config, epochs=2).epochs == 2
    )
    with pytest.raises(ConfigError, match="unexpected keyword argument 'lrr'"):
        train_config("cnn-tanh", lrr=0.1)


def test_train_takes_a_model_and_its_fields_and_hands_back_the_network_it_trained(mnist, tmp_path):
    fields = dict(depth=1, width=4, epochs=1, train_size=256, batch_size=64, device="cpu", progress=False)
    run = depthlab.train(build, mnist, store=tmp_path / "runs.db", **fields)
    assert run.status == RunStatus.DONE and run.config["model_args"] == {"depth": 1, "width": 4}
    assert run.model is not None and not run.reused  # the call that trained it hands the network back
    again = depthlab.train(build, mnist, store=tmp_path / "runs.db", **fields)
    assert again.reused and again.model is None  # the store keeps metrics, not weights (as documented)
    assert "read from the store" in repr(again)


def test_diagnose_and_lr_find_are_exported_and_take_the_same_keywords(mnist):
    assert depthlab.diagnose.__module__ == depthlab.lr_find.__module__ == "depthlab.api"
    diag = depthlab.diagnose("cnn-tanh", data=mnist, depth=3, steps=2, every=1, train_size=512, device="cpu")
    assert diag.config["depth"] == 3 and diag.verdict.label in ("vanishing", "exploding", "healthy")
    found = depthlab.lr_find(
        "cnn-tanh", data=mnist, depth=3, train_size=512, batch_size=64, steps=10, device="cpu"
    )
    assert len(found.lrs) <= 10 and found.lrs[0] == pytest.approx(1e-5)


def _run() -> RunResult:
    epochs = [EpochMetrics(e, 0.5 - 0.1 * e, 0.4 - 0.1 * e, 1.0, 0.1, 2.0) for e in range(3)]
    return RunResult(
        {"model": "cnn-tanh", "model_args": {"depth": 9}},
        RunStatus.DONE,
        epochs,
        6.0,
        test_error=0.2,
        threads=1,
    )


def test_a_run_shows_itself_in_one_line_and_as_an_html_table():
    text = repr(_run())
    assert text == "RunResult(cnn-tanh depth 9: done, 3 epochs, test error 20.00%, 6.0 s)"
    html = _run()._repr_html_()
    assert html.count("<tr>") == 4 and "<caption>RunResult(cnn-tanh depth 9" in html and "30.0%" in html


def _frontier(n: int) -> FrontierResult:
    depth = {3: DepthResult(depth=3, trainable=True, lr=0.1, error=0.15, fraction=1.0, trials=[], epochs=1.0)}
    models = [ModelFrontier(f"model-{i}<b>", 3, 0.1, 0.15, 6, 1.0, depth, True, 1.0, 2, 0) for i in range(n)]
    return FrontierResult(FrontierConfig(), models, 12.5)


def test_a_frontier_shows_itself_as_a_compact_table_whatever_it_holds():
    result = _frontier(8)
    text = repr(result)
    assert text.splitlines()[0] == "FrontierResult: 8 models, 12.5 s" and len(text.splitlines()) == 1 + 2 + 8
    assert len(text) < 1200 and "depths" not in text
    html = result._repr_html_()
    assert html.count("<tr>") == 9 and "model-0&lt;b&gt;" in html and "<b>" not in html
