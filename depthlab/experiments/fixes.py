"""`trainability-fixes`: every known fix for depth on the same 3-stage CNN, under one protocol.

The network is the ``stages`` family (three stages of 3x3 convs with 4/8/16 channels, 2x2
average pooling, a linear readout) and each arm is a preset of it, so the arms differ only in
the fix:

=====================  ==================================================================
arm (preset)            fix
=====================  ==================================================================
cnn-tanh                none: tanh, naive N(0, 0.05^2) init (the baseline)
cnn-tanh-lecun          LeCun fan-in init
cnn-tanh-critical       Gaussian init at the mean-field critical point (q* = 1/depth)
cnn-tanh-delta          delta-orthogonal init at criticality (Xiao et al. 2018)
cnn-relu-he             ReLU with He init
cnn-tat-lrelu           TAT leaky ReLU (dks package; delta-orthogonal SUO init, input PLN)
cnn-dks-tanh            DKS tanh (dks package; delta-orthogonal SUO init, input PLN)
cnn-tanh-bn             batch norm on the naive tanh net
cnn-elu                 none for the ELU arms below: ELU with LeCun init (their baseline)
cnn-elu-bn              batch norm
resnet-elu-bn           residual connections with batch norm
resnet-elu-rezero       ReZero (residual branch times a trainable scalar starting at 0)
resnet-elu-fixup        Fixup (zero-initialised branches, scalar biases and multiplier)
cnn-elu-multihead       auxiliary loss heads after stages 1 and 2
=====================  ==================================================================

**The protocol, and why.** The classic frontier protocol (full MNIST, 3 epochs, 7 lrs, cap 300)
costs about 10 CPU-hours for 8 presets on the project's 2-core machine; this one is cut so that
14 arms under two optimizers fit a few CPU-hours (one trial of 1 epoch on 10,000 images costs
about 5 s + 1 s per conv layer on one loaded core; a failing depth costs every point of both
grids for the whole budget, a trainable one stops at the first evaluation point that meets the
criterion):

* 10,000 training images, **1 epoch at batch 128** (78 steps; SGD with momentum 0.9, or Adam):
  trainable = train or test error below 20% (1,000 test images, 4 checks).
* **SGD at 5 lrs, 0.003 to 0.3, and Adam at 4, 1e-4 to 3e-3** (half decades): a depth trains
  when some (optimizer, lr) trains it. The SGD grid is where the classic frontier's winning lrs
  lie, plus 0.003 for the kernel-shaped nets; Adam's is argued at `ADAM_LRS`. SGD alone
  collapses the TAT net at every lr (its last-layer q falls to 1e-3 at depth 24) where Adam
  trains it, so an SGD-only table judges the optimizer, not the fix.
* **Depth cap 96** (the search visits 3, 6, 12, 24, 48, 96 and bisects): arms still trainable
  at 96 are reported as "≥ 96 (cap)", the cap, not their limit.
* **Seeds auto**: each boundary is re-checked with 3 to 5 seeds at the lr that decided it, and
  the answer carries its band.

The short budget lowers every frontier compared to the classic protocol (a deep net has fewer
steps to leave chance level): the comparison is between arms, under the same budget. Each arm's
paper claims more than a cap of 96 can show (`CLAIMS`); an arm short of its claim gets one
sentence read off its first failing depth.

A second part trains a 1,000-layer vanilla net (999 convs and the readout, no BN, no skips) of
DKS, the deepest normaliser-free, skip-free fix of the SGD table, under SGD on the same budget
at three lrs. It is reported as its test error against chance (90%), not against the frontier's
20% line: 78 SGD steps are not a budget 999 layers are judged by. The experiment
``vanilla-1000`` trains such nets with Adam for 3 epochs.

TAT's target C_f(0) = 0.9 is out of reach below depth 13, so its frontier is tried at
``TAT_DEPTHS`` (a net outside a method's range is refused, never built for another target).

``--quick`` (a smoke run in about a minute): 5,000 images, 1 epoch at batch 64, SGD at 0.01 and
0.1 and Adam at 1e-3, one seed, depth cap 9, 500 test images.
"""

from __future__ import annotations

from ..depth_frontier.protocol import FrontierConfig
from .catalogue import Experiment, register_experiment
from .parts import PartResult
from .sweeps import Frontier, Sweep
from .vanilla import against_chance

FIXES: tuple[tuple[str, str], ...] = (
    ("cnn-tanh", "no fix (naive init)"),
    ("cnn-tanh-lecun", "LeCun init"),
    ("cnn-tanh-critical", "critical Gaussian init"),
    ("cnn-tanh-delta", "delta-orthogonal at criticality"),
    ("cnn-relu-he", "ReLU + He"),
    ("cnn-tat-lrelu", "TAT"),
    ("cnn-dks-tanh", "DKS"),
    ("cnn-tanh-bn", "BN (tanh)"),
    ("cnn-elu", "ELU, no fix"),
    ("cnn-elu-bn", "BN (ELU)"),
    ("resnet-elu-bn", "residual + BN"),
    ("resnet-elu-rezero", "ReZero"),
    ("resnet-elu-fixup", "Fixup"),
    ("cnn-elu-multihead", "auxiliary heads"),
)
ARMS = tuple(model for model, _ in FIXES)
FIX_NAMES = dict(FIXES)
BASELINES = {"cnn-tanh": ARMS[1:8], "cnn-elu": ARMS[9:]}  # each fix against the net it fixes

# The optimizers each arm's frontier searches: a depth trains when SGD or Adam trains it at some lr
# of its own grid (TAT and the 1,000-layer net train with Adam where SGD collapses them: README, "every known fix").
# SGD keeps the grid of the SGD-only table, so every stored SGD trial is reused. Adam's grid is
# half decades from 1e-4 to 3e-3: a 999-layer net trains at 1e-4 (`vanilla-1000`), TAT at depth
# 24 at 1e-3 (30.3%, 78 steps), and 1e-5/3e-5 of the frontier's default grid cannot leave chance
# level in 78 steps. The boundary of every arm is re-checked with 3 to 5 seeds at the lr that
# decided it (``seeds="auto"``, ``recheck_lrs="winner"``: a third of the re-checks of the default,
# which also re-checks that lr's grid neighbours) and reported with its band.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
ADAM_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
PROTOCOL = dict(
    train_size=10000,
    epochs=1,
    batch_size=128,
    optimizers=OPTIMIZERS,
    seeds="auto",
    recheck_lrs="winner",
    lrs={"sgd": (0.003, 0.01, 0.03, 0.1, 0.3), "adam": ADAM_LRS},
    max_depth=96,
    eval_size=1000,
    evals_per_epoch=4,
)
QUICK = dict(
    train_size=5000,
    epochs=1,
    batch_size=64,
    seeds=1,
    lrs={"sgd": (0.01, 0.1), "adam": (1e-3,)},
    max_depth=9,
    eval_size=500,
    evals_per_epoch=2,
)

# TAT's target C_f(0) = 0.9 is out of reach for a leaky-ReLU chain of 12 layers or fewer (the
# package's solver finds no slope; `depthlab.models.transformed` refuses such a net rather than
# solve for another target), so the growth from depth 3 would start outside the method's range:
# TAT's frontier tries these depths, from 15 on (the protocol's ladder above its range).
TAT_ARM = "cnn-tat-lrelu"
THRESHOLD = PROTOCOL.get("threshold", FrontierConfig.threshold)  # trainable below this error
TAT_DEPTHS = (15, 24, 48, 96)
TAT_QUICK_DEPTHS = (15,)


# The 1,000-layer vanilla run: 999 convolutions and the linear readout, no BN, no skips, of the
# deepest normaliser-free fix without skips (DKS: 96+ in the frontier above, where
# delta-orthogonal reached 36), on the frontier's budget, at the lr that decided its deepest
# trial (0.003 at depth 96) and one step either side on the frontier's grid.
VANILLA_1000 = Sweep(
    "vanilla-1000",
    dict(
        model="cnn-dks-tanh",
        model_args={"depth": 999},
        train_size=10000,
        test_size=1000,
        epochs=1,
        batch_size=128,
        momentum=0.9,
        evals_per_epoch=4,
    ),
    lrs=(0.001, 0.003, 0.01),
    title="DKS tanh, 999 conv layers + readout, no BN, no skips",
    quick=dict(model_args={"depth": 12}, train_size=5000, test_size=500, batch_size=64),
    quick_lrs=(0.01,),
)
NORMALISER_FREE = (
    "cnn-tanh-lecun",
    "cnn-tanh-critical",
    "cnn-tanh-delta",
    "cnn-relu-he",
    "cnn-tat-lrelu",
    "cnn-dks-tanh",
)  # no BN and no skips: the fixes a vanilla deep net can use


# What each fix's paper claims (in our words), and how the claim is judged under this protocol:
# "deep" (nets as deep as one likes train: judged at the depth cap, the most this table can show)
# or "deeper" (deeper than the net it fixes: judged against that baseline). The baselines claim nothing.
CLAIMS: dict[str, tuple[str, str]] = {
    "cnn-tanh-lecun": ("deeper", "LeCun et al. 1998: fan-in scaling keeps tanh out of saturation"),
    "cnn-tanh-critical": (
        "deeper",
        "Schoenholz et al. 2017: at the critical point the depth scale diverges and "
        "nets train to about 6 depth scales",
    ),
    "cnn-tanh-delta": ("deep", "Xiao et al. 2018: 10,000-layer vanilla CNNs train"),
    "cnn-relu-he": ("deeper", "He et al. 2015: 30-layer plain ReLU nets converge from scratch"),
    "cnn-tat-lrelu": (
        "deep",
        "Zhang et al. 2022: deep vanilla nets train without shortcuts or normalisation",
    ),
    "cnn-dks-tanh": (
        "deep",
        "Martens et al. 2021: deep vanilla nets train without shortcuts or normalisation",
    ),
    "cnn-tanh-bn": (
        "deeper",
        "Ioffe and Szegedy 2015: normalised layers let deep nets train faster at higher lrs",
    ),
    "cnn-elu-bn": (
        "deeper",
        "Ioffe and Szegedy 2015: normalised layers let deep nets train faster at higher lrs",
    ),
    "resnet-elu-bn": ("deep", "He et al. 2016: residual nets of 1,001 layers train"),
    "resnet-elu-rezero": ("deep", "Bachlechner et al. 2020: deep residual nets train without normalisation"),
    "resnet-elu-fixup": (
        "deep",
        "Zhang et al. 2019: residual nets of 10,000 layers train without normalisation",
    ),
    "cnn-elu-multihead": (
        "deeper",
        "Szegedy et al. 2015, Lee et al. 2015: auxiliary classifiers carry gradient "
        "to the early layers of deep nets",
    ),
}
CLAIM_TEXT = {model: text for model, (_, text) in CLAIMS.items()}


def _depth(row: dict) -> str:
    if row["max_depth"] is None:
        return "no depth"
    return row.get("band") or f"{row['max_depth']}{'+' if row['capped'] else ''}"


def _value(row: dict) -> int:
    return row["max_depth"] or 0


def conclude_fixes(parts: dict[str, PartResult]) -> str:
    """One sentence from the measured frontiers: the baselines, the fixes that reached the
    deepest, and the fixes that did not beat the net they fix."""
    rows = {r["model"]: r for label in ("fixes", "fixes-tat") if label in parts for r in parts[label].rows}
    present = [m for m in ARMS if m in rows]

    def named(models) -> str:
        return ", ".join(f"{FIX_NAMES.get(m, m)} {_depth(rows[m])}" for m in models)

    best = max(_value(rows[m]) for m in present)
    if best == 0:
        return (
            f"No arm trained even at depth 3 (error below the threshold within the budget): this budget "
            f"cannot tell the {len(present)} fixes apart."
        )
    top = [m for m in present if _value(rows[m]) == best]
    capped = [rows[m]["max_depth"] for m in present if rows[m]["capped"]]
    pairs = [(base, m) for base, fixes in BASELINES.items() if base in rows for m in fixes if m in rows]
    at_cap = [m for base, m in pairs if rows[base]["capped"] and rows[m]["capped"]]  # cannot tell
    no_gain = [m for base, m in pairs if m not in at_cap and _value(rows[m]) <= _value(rows[base])]
    base_text = " and ".join(
        f"the {'naive tanh' if b == 'cnn-tanh' else 'LeCun ELU'} net trained to {_depth(rows[b])}"
        for b in BASELINES
        if b in rows
    )
    ranked = sorted((m for m in present if m not in BASELINES), key=lambda m: -_value(rows[m]))
    sentence = (
        f"Under one protocol, {base_text or 'no baseline ran'}; the deepest were {named(top)}"
        f"{' (+: still trainable at the cap of ' + str(max(capped)) + ')' if capped else ''}; "
        f"all fixes, deepest first: {named(ranked)}"
    )
    if no_gain:
        sentence += f"; no deeper than the net they fix: {', '.join(FIX_NAMES.get(m, m) for m in no_gain)}"
    if at_cap:
        sentence += (
            f"; at the cap together with the net they fix (the cap cannot tell them apart): "
            f"{', '.join(FIX_NAMES.get(m, m) for m in at_cap)}"
        )
    return sentence + "." + _claims_sentence(rows) + _vanilla_sentence(parts.get("vanilla-1000"), rows)


def short_of_claim(model: str, rows: dict) -> bool | None:
    """Whether an arm falls short of its paper's claim as this protocol can judge it: a "deep"
    claim is met at the depth cap, a "deeper" one by training deeper than the net it fixes (or
    reaching the cap with it). None: no claim, or its row or its baseline's is missing."""
    if model not in CLAIMS or model not in rows:
        return None
    kind, _ = CLAIMS[model]
    row = rows[model]
    if kind == "deep":
        return not row["capped"]
    base = next((b for b, fixes in BASELINES.items() if model in fixes), None)
    if base is None or base not in rows:
        return None
    return not (row["capped"] or _value(row) > _value(rows[base]))


def why_short(row: dict) -> str:
    """What the first failing depth measured: how many of its trials (every optimizer and lr
    tried, every seed) diverged, the best error any reached, and what that says."""
    depth, trials, diverged, error = (
        row.get("first_failing"),
        row.get("failing_trials"),
        row.get("failing_diverged"),
        row.get("failing_error"),
    )
    if depth is None or not trials:
        return "it trained at no depth of the protocol" if row["max_depth"] is None else ""
    seen = f"at depth {depth}, {diverged} of {trials} trials diverged" + (
        f" and the best error was {100 * error:.1f}%" if error is not None else ""
    )
    if error is not None and error < THRESHOLD:
        return (
            f"{seen}: some seeds trained there, but at no (optimizer, lr) did a majority of its seeds train"
        )
    if 2 * diverged > trials:
        return f"{seen}: mostly divergence, most lrs tried were too large for that depth"
    if error is not None and error >= 0.8:
        return f"{seen}: it stayed near chance level (90%) within the budget"
    return f"{seen}: it learned, but not to the threshold within the budget"


def _claims_sentence(rows: dict) -> str:
    """One plain sentence per arm that falls short of its paper's claim, with its measurement."""
    short = [m for m in ARMS if short_of_claim(m, rows)]
    return "".join(
        f" The {FIX_NAMES[m]} arm falls short of its paper's claim ({CLAIM_TEXT[m]}) under this "
        f"budget, reaching {_depth(rows[m])}" + (f"; {why}" if (why := why_short(rows[m])) else "") + "."
        for m in short
    )


def _vanilla_sentence(part: PartResult | None, rows: dict) -> str:
    """The 1,000-layer SGD run's test error against chance at its best lr (not against the
    frontier's 20% line: 78 SGD steps are not the budget a 999-layer net is judged by; the
    `vanilla-1000` experiment trains it with Adam), and whether its arm is still the deepest
    normaliser-free fix of the frontier."""
    if part is None or not part.rows:
        return ""

    def final(row: dict) -> float:
        return (
            row["test_error"] if row["status"] == "done" and row["test_error"] is not None else float("inf")
        )

    i = min(range(len(part.rows)), key=lambda k: final(part.rows[k]))
    run, config = part.rows[i], part.runs[i]["config"]
    layers, arm = config["model_args"]["depth"] + 1, config["model"]
    lrs = ", ".join(f"{r['lr']:g}" for r in part.rows)
    best = max((m for m in NORMALISER_FREE if m in rows), key=lambda m: _value(rows[m]), default=None)
    choice = ""
    if best is not None and arm in rows and _value(rows[best]) > _value(rows[arm]):
        choice = f" ({FIX_NAMES.get(best, best)} went deeper in this frontier: the {layers:,}-layer arm is not its best)"
    return (
        f" A {layers:,}-layer vanilla net (no BN, no skips) with {FIX_NAMES.get(arm, arm)} under SGD on the "
        f"frontier's budget, best of lrs {lrs}: {against_chance(run)} at lr {config['lr']:g}{choice}; "
        f"`reproduce vanilla-1000` trains it with Adam."
    )


register_experiment(
    Experiment(
        name="trainability-fixes",
        question="How deep does the same 3-stage CNN train under each known fix (init, activation transforms, "
        "normalisation, residual schemes, auxiliary heads), all under one protocol?",
        parts=(
            Frontier(
                "fixes",
                tuple(a for a in ARMS if a != TAT_ARM),
                config=PROTOCOL,
                quick=QUICK,
                claims=CLAIM_TEXT,
                title="depth frontier of the 3-stage CNN under every fix",
            ),
            Frontier(
                "fixes-tat",
                (TAT_ARM,),
                config={**PROTOCOL, "depths": TAT_DEPTHS},
                claims=CLAIM_TEXT,
                quick={**QUICK, "depths": TAT_QUICK_DEPTHS, "max_depth": max(TAT_QUICK_DEPTHS)},
                title=f"TAT, at depths {', '.join(map(str, TAT_DEPTHS))} (its target is out of reach below 13)",
            ),
            VANILLA_1000,
        ),
        conclude=conclude_fixes,
        reference="classic protocol (full MNIST, 3 epochs, cap 300): cnn-tanh 9, cnn-tanh-bn 48-54, cnn-elu-bn 63, "
        "resnet-elu-bn 27; expected here: every fix deeper than its baseline, lower numbers overall",
    )
)
