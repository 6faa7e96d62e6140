"""Issue 22 item 1-2: verdict words that do not contradict each other, the cap said everywhere,
percentages in what a person reads and fractions (said so) in files."""

import csv
import json

from depthlab.cli.frontier import write_outputs
from depthlab.depth_frontier.criterion import TrialVerdict
from depthlab.depth_frontier.outputs import (
    PRINTED_HEADERS,
    depth_label,
    printed_rows,
    table_rows,
    trial_words,
)
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.results import DepthResult, FrontierResult, ModelFrontier
from depthlab.report.tables import format_table
from depthlab.report.wording import epochs_words, percent


def test_a_trial_line_says_what_happened_never_failed_done():
    assert trial_words(True, "done", 0.185, 0.8) == "trains: 18.5% after 0.8 epochs"
    assert trial_words(False, "done", 0.884, 3.0) == "does not train: best 88.4% in 3 epochs"
    assert trial_words(False, "diverged", None, 0.0) == "diverged before its first evaluation point"
    assert trial_words(False, "diverged", 0.9, 0.5) == "diverged after 0.5 epochs (best 90.0% before)"
    assert trial_words(False, "cancelled", 0.5, 0.25).startswith("cancelled after 0.25 epochs")
    assert trial_words(False, "failed", None, 0.0, "OutOfMemoryError").startswith("error in training")
    for args in [(False, "done", 0.884, 3.0), (True, "done", 0.1, 1.0), (False, "failed", None, 0.0)]:
        assert "failed (done)" not in trial_words(*args) and "(done)" not in trial_words(*args)
    assert epochs_words(1.0) == "after 1 epoch" and epochs_words(0.75) == "after 0.75 epochs"
    assert percent(0.185) == "18.5%" and percent(None) == "-"


def _result() -> FrontierResult:
    t = TrialVerdict(9, 0.1, 0, True, 0.185, 0.75, "done", 1.0)
    capped = ModelFrontier(
        "cnn-elu-bn",
        9,
        0.1,
        0.185,
        None,
        1.0,
        {9: DepthResult(9, True, 0.1, 0.185, 1.0, 0.75, [t])},
        True,
        1.0,
        1,
        0,
    )
    bounded = ModelFrontier("cnn-tanh", 6, 0.1, 0.2, 9, 1.0, {}, True, 1.0, 1, 0)
    return FrontierResult(FrontierConfig(max_depth=9), [capped, bounded], 1.0)


def test_a_capped_frontier_says_so_in_table_csv_json_and_plot(tmp_path):
    result = _result()
    table = format_table(PRINTED_HEADERS, printed_rows(result))
    assert "≥ 9 (cap)" in table and "18.5%" in table and "0.185" not in table  # percentages for people
    assert "criterion error" in table and "1/1" in table  # which error; seeds, explained
    assert depth_label(result.models[0]) == "≥ 9 (cap)" and depth_label(result.models[1]) == "6"
    assert table_rows(result)[1][1] == 6
    write_outputs(result, tmp_path)
    rows = list(csv.reader((tmp_path / "frontier.csv").open(encoding="utf-8")))
    assert rows[0][1:3] == ["max trainable depth", "capped"] and "(fraction)" in rows[0][4]
    assert rows[1][1:3] == ["≥ 9 (cap)", "True"] and float(rows[1][4]) == 0.185  # fractions in files
    doc = json.loads((tmp_path / "frontier.json").read_text())
    assert [m["capped"] for m in doc["models"]] == [True, False]
    assert "fraction" in doc["units"]["error"] and "seeds" in doc["units"]["fraction"]


def test_one_epoch_numbering_classic_line_json_and_plots():
    from depthlab.experiments.sweeps import _mean_curve
    from depthlab.report.figures import EPOCH_AXIS
    from depthlab.report.wording import classic_line

    assert classic_line(0, 3, 0.5, 0.4).startswith("Epoch 000/003, Train Error 50.00% || Test Error 40.00%")
    assert _mean_curve("a", [[0.5, 0.4, 0.3]]).epochs == [0, 1, 2]  # the epoch the line calls 000 is x = 0
    assert "000" in EPOCH_AXIS
