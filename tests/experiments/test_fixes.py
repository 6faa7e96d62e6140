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
        assert [c.model for c in configs[:len(ARMS)]] == list(part.models + tat.models)
        budget = QUICK if q else PROTOCOL
        for c in configs[len(ARMS):]:  # the vanilla DKS run: no BN, no skips, the frontier's data budget
            assert c.model == "cnn-dks-tanh" and model_config(c.model)["norm"] in (None, "none")
            assert (c.train_size, c.epochs) == (budget["train_size"], budget["epochs"])
            assert c.model_args["depth"] == (12 if q else 999)
        for c in configs[:len(ARMS)]:  # one protocol: every arm gets the same budget, only the model differs
            assert (c.train_size, c.epochs, c.batch_size, c.test_size) == (
                budget["train_size"], budget["epochs"], budget["batch_size"], budget["eval_size"])
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
    assert capped.endswith("the cap cannot tell them apart): BN (ELU), residual + BN, ReZero, auxiliary heads.")


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
    rows = [{"model": m, "max_depth": 96 if m in ("cnn-dks-tanh", "resnet-elu-bn") else 24,
             "capped": m in ("cnn-dks-tanh", "resnet-elu-bn")} for m in ARMS]

    def vanilla(errors):
        runs = [{"config": {"model": "cnn-dks-tanh", "model_args": {"depth": 999}, "lr": lr}} for lr, _ in errors]
        part_rows = [{"lr": lr, "status": "done", "train_error": e, "test_error": e + 0.01, "best_test_error": e,
                      "epochs": 1} for lr, e in errors]
        return PartResult("vanilla-1000", "", [], part_rows, [], runs)

    failed = exp.conclude({"fixes": PartResult("fixes", "", [], rows),
                           "vanilla-1000": vanilla([(0.001, 0.856), (0.003, 0.901)])})
    assert failed.endswith("A 1,000-layer vanilla net (no BN, no skips) with DKS under SGD on the frontier's budget, "
                           "best of lrs 0.001, 0.003: 86.6% test error after 1 epoch(s) (chance: 90%) at lr 0.001; "
                           "`reproduce vanilla-1000` trains it with Adam.")
    trained = exp.conclude({"fixes": PartResult("fixes", "", [], rows),
                            "vanilla-1000": vanilla([(0.001, 0.5), (0.003, 0.15)])})
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
    text = exp.conclude({"fixes": PartResult("fixes", "", [], rows), "fixes-tat": PartResult("fixes-tat", "", [], tat)})
    assert "the deepest were TAT 48" in text
    alone = exp.conclude({"fixes": PartResult("fixes", "", [], rows)})
    assert "TAT" not in alone
