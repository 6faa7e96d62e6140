"""`trainability-fixes`: the arms validate and build (fast, no training); the conclusion is computed."""

import pytest
import torch

from depthlab.experiments import get_experiment
from depthlab.experiments.catalogue import plan
from depthlab.experiments.fixes import ARMS, PROTOCOL, QUICK, TAT_ARM, TAT_DEPTHS, VANILLA_1000
from depthlab.experiments.parts import PartResult
from depthlab.models import create_model, model_config

pytest.importorskip("dks.pytorch", reason="the DKS/TAT arms need the optional dks package")


def test_registered_with_every_fix_on_one_protocol():
    exp = get_experiment("trainability-fixes")
    part, tat, vanilla = exp.parts
    assert part.models + tat.models == tuple(a for a in ARMS if a != TAT_ARM) + (TAT_ARM,) and len(ARMS) == 14
    assert vanilla is VANILLA_1000 and min(TAT_DEPTHS) > 12  # TAT only where its target is in reach
    assert {model_config(m)["act"] for m in ARMS} >= {"tanh", "elu", "relu", "tat-leaky-relu", "dks-tanh"}
    for q in (False, True):
        configs = plan("trainability-fixes", quick=q)
        assert [c.model for c in configs[: len(ARMS)]] == list(part.models + tat.models)
        budget = QUICK if q else PROTOCOL
        for c in configs[len(ARMS) :]:  # the vanilla DKS run: no BN, no skips, the frontier's data budget
            assert c.model == "cnn-dks-tanh" and model_config(c.model)["norm"] in (None, "none")
            assert (c.train_size, c.epochs) == (budget["train_size"], budget["epochs"])
            assert c.model_args["depth"] == (12 if q else 999)
        for c in configs[: len(ARMS)]:  # one protocol: every arm gets the same budget, only the model differs
            assert (c.train_size, c.epochs, c.batch_size, c.test_size) == (
                budget["train_size"],
                budget["epochs"],
                budget["batch_size"],
                budget["eval_size"],
            )
    assert PROTOCOL["max_depth"] % 3 == 0 and QUICK["max_depth"] < PROTOCOL["max_depth"]


@pytest.mark.parametrize("model", ARMS)
def test_every_arm_builds_at_a_couple_of_depths(model):
    for depth in (15, 24) if model == TAT_ARM else (3, 12):
        net = create_model(model, (1, 28, 28), 10, depth=depth)
        out = net(torch.zeros(2, 1, 28, 28))
        logits = out[-1] if isinstance(out, list) else out
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_conclusion_is_computed_from_the_numbers():
    exp = get_experiment("trainability-fixes")
    depths = dict(zip(ARMS, [9, 12, 24, 48, 21, 48, 36, 45, 6, 48, 27, 30, 6, None]))
    rows = [{"model": m, "max_depth": d, "capped": d == 48} for m, d in depths.items()]
    text = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert "the naive tanh net trained to 9 and the LeCun ELU net trained to 6" in text
    assert "the deepest were delta-orthogonal at criticality 48+, TAT 48+, BN (ELU) 48+" in text
    assert "cap of 48" in text and "DKS 36" in text
    assert "no deeper than the net they fix: Fixup, auxiliary heads" in text
    depths["cnn-tanh"] = 3
    rows = [{"model": m, "max_depth": d, "capped": False} for m, d in depths.items()]
    other = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert other != text and "trained to 3" in other and "cap" not in other
    depths = dict.fromkeys(ARMS, 9)
    depths["cnn-tanh"], depths["cnn-tat-lrelu"], depths["resnet-elu-fixup"] = 3, None, 6
    rows = [{"model": m, "max_depth": d, "capped": d == 9} for m, d in depths.items()]
    capped = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert "no deeper than the net they fix: TAT, Fixup;" in capped
    # the comparison sentence ends there; the arms short of their papers' claims follow it
    assert "the cap cannot tell them apart): BN (ELU), residual + BN, ReZero, auxiliary heads. The " in capped


def test_conclusion_when_nothing_trained():
    rows = [{"model": m, "max_depth": None, "capped": False} for m in ARMS]
    text = get_experiment("trainability-fixes").conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert text.startswith("No arm trained even at depth 3") and "14 fixes" in text


def test_without_dks_the_plan_fails_in_one_line(monkeypatch):
    import sys

    from depthlab.errors import ConfigError

    for mod in [m for m in sys.modules if m == "dks" or m.startswith("dks.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "dks", None)
    monkeypatch.setitem(sys.modules, "dks.pytorch", None)
    with pytest.raises(ConfigError) as info:
        plan("trainability-fixes")
    assert "\n" not in str(info.value) and str(info.value).endswith("pip install 'depthlab[dks]'")


def test_the_vanilla_sentence_reports_error_against_chance_at_the_best_lr_and_whether_its_arm_is_the_best():
    exp = get_experiment("trainability-fixes")
    rows = [
        {
            "model": m,
            "max_depth": 96 if m in ("cnn-dks-tanh", "resnet-elu-bn") else 24,
            "capped": m in ("cnn-dks-tanh", "resnet-elu-bn"),
        }
        for m in ARMS
    ]

    def vanilla(errors):
        runs = [
            {"config": {"model": "cnn-dks-tanh", "model_args": {"depth": 999}, "lr": lr}} for lr, _ in errors
        ]
        part_rows = [
            {
                "lr": lr,
                "status": "done",
                "train_error": e,
                "test_error": e + 0.01,
                "best_test_error": e,
                "epochs": 1,
            }
            for lr, e in errors
        ]
        return PartResult("vanilla-1000", "", [], part_rows, [], runs)

    failed = exp.conclude(
        {
            "fixes": PartResult("fixes", "", [], rows),
            "vanilla-1000": vanilla([(0.001, 0.856), (0.003, 0.901)]),
        }
    )
    assert failed.endswith(
        "A 1,000-layer vanilla net (no BN, no skips) with DKS under SGD on the frontier's budget, "
        "best of lrs 0.001, 0.003: 86.6% test error after 1 epoch(s) (chance: 90%) at lr 0.001; "
        "`reproduce vanilla-1000` trains it with Adam."
    )
    trained = exp.conclude(
        {"fixes": PartResult("fixes", "", [], rows), "vanilla-1000": vanilla([(0.001, 0.5), (0.003, 0.15)])}
    )
    assert "16.0% test error after 1 epoch(s) (chance: 90%) at lr 0.003" in trained
    assert "did not train" not in trained + failed and "20%" not in trained + failed
    rows = [{**r, "max_depth": 99 if r["model"] == "cnn-tanh-delta" else r["max_depth"]} for r in rows]
    other = exp.conclude({"fixes": PartResult("fixes", "", [], rows), "vanilla-1000": vanilla([(0.01, 0.9)])})
    assert "(delta-orthogonal at criticality went deeper in this frontier" in other


def test_the_conclusion_reads_tat_from_its_own_part():
    """TAT's frontier is a part of its own (tried inside its range); the sentence ranks it with the rest."""
    exp = get_experiment("trainability-fixes")
    rows = [{"model": m, "max_depth": 24, "capped": False} for m in ARMS if m != TAT_ARM]
    tat = [{"model": TAT_ARM, "max_depth": 48, "capped": False}]
    text = exp.conclude(
        {"fixes": PartResult("fixes", "", [], rows), "fixes-tat": PartResult("fixes-tat", "", [], tat)}
    )
    assert "the deepest were TAT 48" in text
    alone = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert "TAT" not in alone


def _row(model, depth, capped=False, failing=None, **evidence):
    return {"model": model, "max_depth": depth, "capped": capped, "first_failing": failing, **evidence}


def test_an_arm_is_short_of_its_claim_by_the_kind_of_claim():
    from depthlab.experiments.fixes import CLAIMS, short_of_claim

    assert set(CLAIMS) == set(ARMS) - {"cnn-tanh", "cnn-elu"}  # every fix has a claim, the baselines none
    rows = {
        "cnn-tanh": _row("cnn-tanh", 6),
        "cnn-tanh-delta": _row("cnn-tanh-delta", 36),
        "cnn-dks-tanh": _row("cnn-dks-tanh", 96, capped=True),
        "cnn-tanh-lecun": _row("cnn-tanh-lecun", 24),
        "cnn-relu-he": _row("cnn-relu-he", 6),
    }
    assert short_of_claim("cnn-tanh-delta", rows)  # "10,000 layers": judged at the cap, 36 < 96
    assert not short_of_claim("cnn-dks-tanh", rows)  # at the cap: as far as this table can show
    assert not short_of_claim("cnn-tanh-lecun", rows)  # "deeper": 24 > the naive net's 6
    assert short_of_claim("cnn-relu-he", rows)  # no deeper than the net it fixes
    assert short_of_claim("cnn-tanh", rows) is None and short_of_claim("cnn-elu-bn", rows) is None


def test_why_an_arm_falls_short_is_read_off_its_first_failing_depth():
    from depthlab.experiments.fixes import why_short

    stalled = _row("m", 36, failing=39, failing_trials=27, failing_diverged=2, failing_error=0.886)
    assert why_short(stalled) == (
        "at depth 39, 2 of 27 trials diverged and the best error was 88.6%: "
        "it stayed near chance level (90%) within the budget"
    )
    exploded = dict(stalled, failing_diverged=20)
    assert "mostly divergence" in why_short(exploded)
    slow = dict(stalled, failing_error=0.35)
    assert why_short(slow).endswith("it learned, but not to the threshold within the budget")
    assert why_short(_row("m", None)) == "it trained at no depth of the protocol"


def test_the_conclusion_says_which_arms_fall_short_with_their_measurement():
    exp = get_experiment("trainability-fixes")
    rows = [_row(m, 96, capped=True) for m in ARMS]
    rows[ARMS.index("cnn-tanh-delta")] = _row(
        "cnn-tanh-delta",
        36,
        failing=39,
        failing_trials=27,
        failing_diverged=1,
        failing_error=0.9,
        band="36 [33–39]",
    )
    text = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert (
        "The delta-orthogonal at criticality arm falls short of its paper's claim (Xiao et al. 2018: "
        "10,000-layer vanilla CNNs train) under this budget, reaching 36 [33–39]; at depth 39, 1 of 27 "
        "trials diverged"
    ) in text
    assert text.count("falls short") == 1


def test_a_frontier_row_carries_the_band_the_winning_optimizer_and_the_failing_evidence():
    from depthlab.depth_frontier.criterion import TrialVerdict
    from depthlab.depth_frontier.points import OptimizerLr
    from depthlab.depth_frontier.protocol import FrontierConfig
    from depthlab.depth_frontier.results import DepthResult, ModelFrontier
    from depthlab.experiments.sweeps import Frontier
    from depthlab.records.record import RunStatus

    adam = OptimizerLr("adam", 1e-3)
    fail = [
        TrialVerdict(39, OptimizerLr("sgd", 0.3), 0, False, None, 0.2, RunStatus.DIVERGED, 1.0),
        TrialVerdict(39, adam, 0, False, 0.87, 1.0, RunStatus.DONE, 1.0),
    ]
    depths = {
        36: DepthResult(36, True, adam, 0.15, 1.0, 1.0),
        39: DepthResult(39, False, None, 0.87, 0.0, None, fail),
    }
    m = ModelFrontier(
        "cnn-tanh-delta", 36, adam, 0.15, 39, 1.0, depths, True, 9.0, 2, 0, label="36 [33–39]", band=(33, 39)
    )
    fc = FrontierConfig(optimizers=("sgd", "adam"), seeds="auto", max_depth=96)
    part = Frontier("fixes", ("cnn-tanh-delta",), claims={"cnn-tanh-delta": "a claim"})
    row = part._row(m, fc)
    assert (row["band"], row["optimizer"], row["lr"], row["claim"]) == ("36 [33–39]", "adam", 1e-3, "a claim")
    assert (row["failing_trials"], row["failing_diverged"], row["failing_error"]) == (2, 1, 0.87)
    headers = [c.header for c in part._columns(fc)]
    assert "frontier [band]" in headers and "optimizer" in headers and "the paper's claim" in headers
    plain = Frontier("fixes", ("cnn-tanh-delta",))._columns(FrontierConfig(max_depth=96))
    assert not {"frontier [band]", "optimizer", "the paper's claim"} & {c.header for c in plain}


def test_a_failing_depth_where_a_minority_of_seeds_trained_says_so():
    from depthlab.experiments.fixes import why_short

    row = _row("cnn-tat-lrelu", None, failing=15, failing_trials=10, failing_diverged=0, failing_error=0.144)
    assert why_short(row).endswith(
        "some seeds trained there, but at no (optimizer, lr) did a majority of its seeds train"
    )
