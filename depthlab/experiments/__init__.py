"""Experiments over training runs: learning-rate sweeps, the lr range test, toggle ablations
over K folds or seeds, and ``reproduce``: the classic experiments as a registry of named data.

Python API (the CLI commands ``lr-sweep``, ``lr-find``, ``ablate`` and ``reproduce`` are thin
layers over these)::

    from depthlab import Store, TrainConfig
    from depthlab.experiments import ablate, lr_find, lr_sweep, reproduce

    base = TrainConfig(model="strided", model_args={"stack_depth": 1}, batch_size=64, momentum=0.0, epochs=5)
    with Store("depthlab.db") as store:
        sweep = lr_sweep(base, [0.01, 0.03, 0.1], store)          # a PartResult
        print(sweep.format_table())
        abl = ablate(TrainConfig(model="skipfc", dataset="mnist32", optimizer="adam", lr=1e-3),
                     toggles=["bn", "skip"], folds=3, store=store)
        out = reproduce("lr-momentum", store, quick=True)          # parts + one computed sentence
    found = lr_find(base, min_lr=1e-4, max_lr=10)                  # no store: nothing is recorded
    print(found.suggestion, found.rule)

Every run goes through `depthlab.sweep.runner.run_recorded`: a finished configuration is read back
from the store instead of being trained again, so an interrupted experiment resumes where it
stopped and a finished one re-prints its tables instantly.

Registering an experiment (one call)
------------------------------------
An experiment is data: a name, the question it asks, a tuple of *parts*, the budget cut of
``--quick``, and a ``conclude`` function that turns the parts' own numbers into one sentence::

    from depthlab.experiments import Experiment, Sweep, Ablation, register_experiment

    register_experiment(Experiment(
        name="resnet-cifar",
        question="Does a deeper CIFAR ResNet reach a lower test error?",
        parts=(Sweep("depths", base=dict(model="resnet20", dataset="cifar10", epochs=200, lr=0.1,
                                         momentum=0.9, weight_decay=1e-4, batch_size=128,
                                         schedule="multistep:100,150", augment=True),
                     arms=(("resnet20", {}), ("resnet56", {"model": "resnet56"}))),),
        quick=dict(train_size=2000, test_size=1000, epochs=1),
        conclude=lambda parts: f"resnet56 ended at {parts['depths'].row(arm='resnet56')['test_error']:.2%} ...",
    ))

Part kinds (all frozen dataclasses whose configs are plain dicts of `TrainConfig` fields;
``model_args`` dicts are merged, not replaced):

- `Sweep(label, base, lrs=(), arms=())`: one run per (arm, lr); an arm is ``(label, overrides)``.
  Without ``lrs`` each arm runs at its own lr. Table: final train/test error per run; plots: train
  and test error vs epoch, one line per run.
- `Ablation(label, base, toggles=(), arms=(), folds=3 | seeds=N)`: every on/off combination of
  the toggles (or the explicit arms) over K folds (validation = one fold) or N seeds (a fixed 2/3 -
  1/3 split); mean +- std of train/validation/test accuracy and seconds per fit; loss curves.
- `Frontier(label, models, config={FrontierConfig fields}, quick={...})`: the depth frontier of
  each model through `depthlab.depth_frontier` (max trainable depth, its lr, first failing depth).
- anything else with a ``label`` and a ``run(ctx: Context) -> PartResult`` method (and
  ``configs(ctx) -> list[TrainConfig]`` so bad input is caught before the store is opened).

``conclude(parts)`` receives ``{part label: PartResult}``; ``PartResult.rows`` are dicts of raw
numbers (errors as fractions) and ``PartResult.row(**match)`` finds one. It must compute its
sentence from those numbers: never a canned conclusion.
"""

# Each registers its experiments on import: the named MNIST ones, trainability-fixes (every known fix,
# one protocol) and vanilla-1000 (a 1,000-layer vanilla CNN, Adam).
from . import classics, fixes, vanilla  # noqa: F401
from .catalogue import EXPERIMENTS, Experiment, get_experiment, register_experiment, reproduce
from .lr_find import lr_find
from .sweeps import Ablation, Frontier, Sweep, ablate, lr_sweep

__all__ = [
    "EXPERIMENTS",
    "Ablation",
    "Experiment",
    "Frontier",
    "Sweep",
    "ablate",
    "get_experiment",
    "lr_find",
    "lr_sweep",
    "register_experiment",
    "reproduce",
]
