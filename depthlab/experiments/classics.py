"""The classic MNIST experiments of the `reproduce` catalogue: strided nets, lr and momentum, skipfc, the frontier."""

from __future__ import annotations

from ..depth_frontier.protocol import FrontierConfig
from ..models import CLASSIC_PRESETS
from .catalogue import Experiment, register_experiment
from .parts import PartResult
from .sweeps import Ablation, Frontier, Sweep


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


TRAINED = 0.20  # a run "trains" when its best test error falls below 20% (the frontier criterion)


STRIDED_BASE = dict(
    model="strided", dataset="mnist", epochs=5, batch_size=64, momentum=0.9, model_args={"stack_depth": 3}
)


STRIDED_LRS = (0.01, 0.03, 0.1)


GATE_A0 = (0.1, 0.5, 0.9)


def _conclude_strided(parts: dict[str, PartResult]) -> str:
    p = parts["stack-depth-3"]
    lrs = ", ".join(f"{r['lr']:g}" for r in p.rows if r["arm"] == "strided")

    def verdict(arm: str) -> str:
        best = p.best("best_test_error", arm=arm)
        if best is None:
            return f"{arm} has no finished run"
        if best["best_test_error"] < TRAINED:
            return f"{arm} trained ({_pct(best['test_error'])} test error at lr {best['lr']:g})"
        return f"{arm} did not train (best test error {_pct(best['best_test_error'])})"

    moves = []
    for r in parts["gate-start"].rows:
        if r.get("gate_mean") is None:
            continue
        a0 = float(r["arm"].split("=")[1])
        how = "stayed at" if abs(r["gate_mean"] - a0) < 0.02 else "moved to"
        moves.append(f"a0 {a0:g} {how} {r['gate_mean']:.2f} ({_pct(r['test_error'])} test error)")
    return (
        f"At stack depth 3 over lrs {lrs}: {verdict('strided')}, {verdict('strided-res')} and "
        f"{verdict('strided-gated')}; with free gates, " + "; ".join(moves) + "."
    )


register_experiment(
    Experiment(
        name="strided-residual",
        question="Does the plain stride-2 net fail at stack depth 3 while the residual and gated ones train?",
        parts=(
            Sweep(
                "stack-depth-3",
                STRIDED_BASE,
                STRIDED_LRS,
                arms=(
                    ("strided", {}),
                    ("strided-res", {"model": "strided-res"}),
                    ("strided-gated", {"model": "strided-gated"}),
                ),
                title="stack depth 3, batch 64, momentum 0.9",
                quick_lrs=(0.01, 0.1),
            ),
            Sweep(
                "gate-start",
                {**STRIDED_BASE, "model": "strided-gated", "lr": 0.03},
                arms=tuple((f"a0={a0:g}", {"model_args": {"a0": a0}}) for a0 in GATE_A0),
                title="strided-gated, starting gate a0 (lr 0.03)",
            ),
        ),
        conclude=_conclude_strided,
        # enough steps (2 x 157) for the residual net to leave chance level at lr 0.01
        quick=dict(train_size=10000, test_size=2000, epochs=2),
        reference="plain strided at stack depth 3: stuck near 88.65% error; strided-res ~2.6%; gated ~1.2% "
        "(a signal-dependent gate)",
    )
)


LR_BASE = dict(model="strided", dataset="mnist", epochs=5, model_args={"stack_depth": 1})


def _conclude_lr_momentum(parts: dict[str, PartResult]) -> str:
    a = parts["batch64-m0"].best("test_error")
    b = parts["batch16-m0.75"].best("test_error")
    c = parts["piecewise"].rows[0]
    epochs = parts["piecewise"].rows[0]["epochs"]
    eff_b = b["lr"] / (1 - 0.75)
    return (
        f"Without momentum at batch 64 the best lr was {a['lr']:g} ({_pct(a['test_error'])} test error); "
        f"with momentum 0.75 at batch 16 it was {b['lr']:g} ({_pct(b['test_error'])}), an effective step "
        f"lr/(1-m) = {eff_b:g}, {eff_b / a['lr']:.2g}x the momentum-free one at a quarter of the batch; "
        f"the piecewise schedule {c['schedule']} (batch 16, no momentum) reached {_pct(c['test_error'])} "
        f"after {epochs} epoch{'s' if epochs != 1 else ''}."
    )


register_experiment(
    Experiment(
        name="lr-momentum",
        question="How do learning rate, momentum and batch size interact on the stack-depth-1 strided net?",
        parts=(
            Sweep(
                "batch64-m0",
                {**LR_BASE, "batch_size": 64, "momentum": 0.0},
                (0.01, 0.03, 0.07, 0.1, 0.3),
                title="batch 64, momentum 0",
                quick_lrs=(0.03, 0.3),
            ),
            Sweep(
                "batch16-m0.75",
                {**LR_BASE, "batch_size": 16, "momentum": 0.75},
                (0.003, 0.01, 0.03, 0.07),
                title="batch 16, momentum 0.75",
                quick_lrs=(0.01, 0.07),
            ),
            Sweep(
                "piecewise",
                {**LR_BASE, "batch_size": 16, "momentum": 0.0, "lr": 0.07, "schedule": "2@0.07,3@0.01"},
                title="batch 16, momentum 0, 2@0.07,3@0.01",
                quick={"schedule": "1@0.07,1@0.01"},
            ),
        ),
        conclude=_conclude_lr_momentum,
        quick=dict(train_size=6000, test_size=2000, epochs=2),
        reference="stack depth 1, lr 0.07 then 0.01, momentum 0, batch 16: ~1.6% test error in 5 epochs",
    )
)


SKIPFC_BASE = dict(model="skipfc", dataset="mnist32", optimizer="adam", lr=1e-3, batch_size=128, epochs=30)


def _conclude_skipfc(parts: dict[str, PartResult]) -> str:
    p = parts["toggles"]

    def acc(bn: str, skip: str) -> dict:
        return p.row(arm=f"bn={bn} skip={skip}")

    d_bn = sum(acc("on", s)["test_error"] - acc("off", s)["test_error"] for s in ("on", "off")) / 2
    d_skip = sum(acc(b, "on")["test_error"] - acc(b, "off")["test_error"] for b in ("on", "off")) / 2
    spread = max(r["test_error_std"] for r in p.rows)
    best = min(p.rows, key=lambda r: r["val_error"])
    bugs = parts["reference-bugs"]
    ref_bn, ref_plain = (
        bugs.row(arm="reference bn=on")["test_error"],
        bugs.row(arm="reference bn=off")["test_error"],
    )
    return (
        f"Averaged over the other toggle, batch norm changed the test error by {100 * d_bn:+.2f} points and the "
        f"skip by {100 * d_skip:+.2f} (largest fold-to-fold std {100 * spread:.2f}); the best validation "
        f"error was {best['arm']} ({100 * best['test_error']:.2f}% test error); re-creating the reference's two "
        f"bugs gave {100 * ref_bn:.2f}% test error with BN and {100 * ref_plain:.2f}% without, against "
        f"{100 * acc('on', 'on')['test_error']:.2f}% and {100 * acc('off', 'on')['test_error']:.2f}% fixed."
    )


register_experiment(
    Experiment(
        name="skipfc-ablation",
        question="What do batch norm and the skip over the hidden layer do for the small skipfc net (K-fold)?",
        parts=(
            Ablation("toggles", SKIPFC_BASE, ("bn", "skip"), folds=3, title="skipfc, Adam 1e-3, batch 128"),
            Ablation(
                "reference-bugs",
                SKIPFC_BASE,
                folds=3,
                title="skipfc with the reference's bugs",
                arms=(
                    ("reference bn=on", {"model_args": {"bn": True, "legacy_bn": True, "softmax_out": True}}),
                    ("reference bn=off", {"model_args": {"bn": False, "softmax_out": True}}),
                ),
            ),
        ),
        conclude=_conclude_skipfc,
        quick=dict(train_size=3000, test_size=2000, epochs=2),
        reference="93.7% test without BN, 94.9% with (BN never trained, softmax before the cross-entropy)",
    )
)


def _conclude_frontier(parts: dict[str, PartResult]) -> str:
    p = parts["presets"]

    def depth(model: str) -> str:
        r = p.row(model=model)
        if r["max_depth"] is None:
            return "no depth"
        return f"{r['max_depth']}{'+' if r['capped'] else ''}"

    def extreme(pick) -> str:
        value = pick(r["max_depth"] or 0 for r in p.rows)
        names = [r["model"] for r in p.rows if (r["max_depth"] or 0) == value]
        return f"{' and '.join(names)} ({depth(names[0])})"

    capped = [r["max_depth"] for r in p.rows if r["capped"]]
    cap = f" (+: still trainable at the search's cap of {max(capped)})" if capped else ""
    return (
        f"The deepest trainable presets: {extreme(max)}; the shallowest: {extreme(min)}; batch norm took cnn-elu "
        f"from {depth('cnn-elu')} to {depth('cnn-elu-bn')} and cnn-tanh from {depth('cnn-tanh')} to "
        f"{depth('cnn-tanh-bn')}, LeCun init took cnn-tanh to {depth('cnn-tanh-lecun')}, and with skip "
        f"connections the ELU net reached {depth('resnet-elu-bn')} with BN and {depth('resnet-elu')} without{cap}."
    )


register_experiment(
    Experiment(
        name="depth-frontier",
        question="How deep can each of the eight classic presets be and still train (error < 20% within 3 epochs)?",
        parts=(
            Frontier(
                "presets",
                CLASSIC_PRESETS,
                title="depth frontier of the eight classic presets",
                quick=FrontierConfig.quick().changes(),
            ),
        ),  # the budget of `depthlab frontier --quick`
        conclude=_conclude_frontier,
        reference="cnn-tanh 9 (lr 0.15); cnn-elu-bn 63; resnet-elu-bn 27; cnn-tanh-bn 48-54; resnet-elu 3",
    )
)
