"""depthlab as a library (issue #21): your own model factory wherever a preset name goes (hash =
its source, never fused, pickled as source to workers and Ray), `depthlab.train` and
`depthlab.frontier` against a store as the CLI runs them, npz datasets, frames."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import depthlab
from depthlab import ConfigError, FrontierConfig, ModelFactory, Store, TrainConfig
from depthlab.cli import main

NETS = textwrap.dedent('''
    import torch
    from torch import nn


    class Muted(nn.Module):
        """Constant logits from a depth on: a net that cannot train."""
        def forward(self, x):
            return x * 0.0


    def build(depth, width=32, fails_from=3):
        layers = [nn.Flatten(), nn.Linear(784, width), nn.Tanh()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Tanh()]
        layers.append(nn.Linear(width, 10))
        if depth >= fails_from:
            layers.append(Muted())
        return nn.Sequential(*layers)
''')

SMALL = dict(
    max_depth=3,
    lrs=(0.3,),
    epochs=1,
    train_size=2000,
    eval_size=300,
    evals_per_epoch=2,
    threshold=0.6,
    device="cpu",
)


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def build(depth, width=8):
    from torch import nn

    return nn.Sequential(
        nn.Flatten(),
        *[m for _ in range(depth) for m in (nn.Linear(784 if _ == 0 else width, width), nn.Tanh())],
        nn.Linear(width, 10),
    )


def test_frontier_and_train_are_the_functions_and_the_subpackage_still_imports():
    from depthlab import frontier
    from depthlab.depth_frontier import protocol
    from depthlab.depth_frontier.search import find_frontier

    assert (
        callable(frontier)
        and frontier is depthlab.frontier
        and depthlab.frontier.__module__ == "depthlab.api"
    )
    assert callable(find_frontier) and protocol.FrontierConfig is FrontierConfig
    assert depthlab.train.__module__ == "depthlab.api"


def test_the_depth_frontier_package_imports_under_its_own_name_beside_the_function():
    """`import depthlab.depth_frontier.search as s` works (the function `depthlab.frontier` no
    longer shadows the package), in a fresh interpreter too."""
    import depthlab.depth_frontier.search as search
    from depthlab.depth_frontier import protocol

    assert search.find_frontier is depthlab.depth_frontier.find_frontier
    assert protocol.FrontierConfig is FrontierConfig and callable(depthlab.frontier)
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import depthlab.depth_frontier.search as s\n"
            "from depthlab.depth_frontier.outputs import depth_label\n"
            "import depthlab\nassert s.find_frontier and callable(depthlab.frontier)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr


def test_a_factory_config_is_hashed_by_its_source_and_never_fused(nets):
    from depthlab.engine.fused_layers import fusion_key

    factory = ModelFactory.from_file(f"{nets}:build")
    config = TrainConfig(model=factory, model_args={"depth": 4, "width": 8})
    assert config.model_name == "nets.build" and config.canonical()["model"] == "nets.build"
    assert config.canonical()["factory"]["source_sha256"] == factory.sha256
    assert fusion_key(config) is None
    assert pickle.loads(pickle.dumps(config)).hash() == config.hash()
    nets.write_text(NETS.replace("width=32", "width=33"))
    edited = TrainConfig(model=ModelFactory.from_file(f"{nets}:build"), model_args={"depth": 4, "width": 8})
    assert edited.hash() != config.hash()
    moved = TrainConfig(
        model=ModelFactory(factory.function, factory.source, "elsewhere/nets.py"),
        model_args={"depth": 4, "width": 8},
    )
    assert moved.hash() == config.hash()  # where the file lives is not what it computes
    as_function = TrainConfig(model=build, model_args={"depth": 2})
    assert isinstance(as_function.model, ModelFactory) and as_function.model.function == "build"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(model_args={"width": 2}), "needs a positive integer depth"),
        (dict(model_args={"depth": 0}), "needs a positive integer depth"),
        (dict(model_args={"depth": 2, "width": [1]}), "must be a number, string or boolean"),
        (dict(model=42), "a preset name or a function"),
        (dict(lr=-1.0), "learning rate must be positive"),
        (dict(dataset="npz:/no/such.npz"), "no such file"),
    ],
)
def test_configs_validate_when_built(kw, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(**{"model": build, "model_args": {"depth": 2}, **kw})
    assert "\n" not in str(info.value)


def test_frontier_config_validates_when_built():
    with pytest.raises(ConfigError, match="--threshold must be in"):
        FrontierConfig(threshold=2.0)


def test_train_records_into_a_store_and_reuses_it(mnist, tmp_path):
    config = TrainConfig(
        model=build, model_args={"depth": 2}, train_size=600, test_size=200, epochs=2, lr=0.1, device="cpu"
    )
    first = depthlab.train(config, mnist, store=tmp_path / "s.db", progress=False)
    again = depthlab.train(config, mnist, store=tmp_path / "s.db", progress=True)
    assert not first.reused and again.reused and again.test_error == first.test_error
    frame = first.to_frame()
    assert list(frame.columns) == ["epoch", "train_error", "test_error", "loss", "lr", "seconds"]
    assert len(frame) == 2 and frame.test_error.between(0, 1).all()
    with Store(tmp_path / "s.db") as store:
        runs = store.to_frame()
        assert len(store.runs()) == 1
    assert {
        "id",
        "status",
        "model",
        "depth",
        "lr",
        "precision",
        "epochs",
        "train_size",
        "test_error",
        "seconds",
    } <= set(runs.columns)
    assert runs.model[0] == "test_api.build" and runs.depth[0] == 2 and runs.status[0] == "done"


def test_an_npz_dataset_trains_a_preset_and_a_factory(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (200, 28, 28)).astype(np.uint8),
        y_train=rng.integers(0, 10, 200),
        x_test=rng.integers(0, 256, (50, 28, 28)).astype(np.uint8),
        y_test=np.arange(50) % 10,
    )
    from depthlab.data.registry import check_dataset_name

    assert check_dataset_name(f"npz:{path}").input_shape == (1, 28, 28)
    for model, args in (("cnn-tanh", {"depth": 3}), (build, {"depth": 1})):
        result = depthlab.train(
            TrainConfig(
                model=model, model_args=args, dataset=f"npz:{path}", epochs=1, batch_size=50, device="cpu"
            ),
            progress=False,
        )
        assert result.status == "done" and len(result.to_frame()) == 1


def _answer(result):
    return [(m.model, m.max_trainable_depth, m.first_failing_depth, sorted(m.depths)) for m in result.models]


def test_a_factory_frontier_steps_by_its_depth_step_and_retrains_when_edited(mnist, nets, tmp_path):
    store = tmp_path / "f.db"
    factory = ModelFactory.from_file(f"{nets}:build")
    found = depthlab.frontier(factory, store=store, progress=False, data=mnist, **SMALL)
    assert _answer(found) == [("nets.build", 2, 3, [1, 2, 3])]
    frame = found.to_frame()
    assert list(frame.columns) == [
        "model",
        "max_trainable_depth",
        "capped",
        "lr",
        "error",
        "first_failing_depth",
        "fraction",
    ]
    assert frame.max_trainable_depth[0] == 2 and not frame.capped[0]
    from matplotlib.figure import Figure

    assert isinstance(found.plot(), Figure) and isinstance(found.plot("error"), Figure)
    again = depthlab.frontier(factory, store=store, progress=False, data=mnist, **SMALL)
    assert again.models[0].trials == again.models[0].trials_reused > 0
    nets.write_text(NETS.replace("fails_from=3", "fails_from=4"))
    edited = depthlab.frontier(
        ModelFactory.from_file(f"{nets}:build"), store=store, progress=False, data=mnist, **SMALL
    )
    assert edited.models[0].trials_reused == 0 and edited.models[0].max_trainable_depth == 3


@pytest.mark.slow
def test_a_factory_frontier_is_the_same_on_worker_processes_and_ray(mnist, nets, tmp_path):
    from depthlab.sweep.executors import ExecutorSpec

    factory = ModelFactory.from_file(f"{nets}:build")
    here = depthlab.frontier(factory, progress=False, data=mnist, **SMALL)
    workers = depthlab.frontier(
        factory, store=tmp_path / "w.db", workers=2, progress=False, data=mnist, **SMALL
    )
    assert _answer(workers) == _answer(here) == [("nets.build", 2, 3, [1, 2, 3])]
    pytest.importorskip("ray")
    on_ray = depthlab.frontier(
        factory,
        store=tmp_path / "r.db",
        executor=ExecutorSpec(kind="ray"),
        progress=False,
        data=mnist,
        **SMALL,
    )
    assert _answer(on_ray) == _answer(here)


CLI_SMALL = [
    "--max-depth",
    "3",
    "--lrs",
    "0.3",
    "--epochs",
    "1",
    "--train-size",
    "2000",
    "--eval-size",
    "300",
    "--evals-per-epoch",
    "2",
    "--threshold",
    "0.6",
    "--device",
    "cpu",
    "--json",
]


def _cli_frontier(capsys, nets, store, data_root, out, *extra):
    import json

    from depthlab.cli import main

    code = main(
        [
            "frontier",
            "--model-file",
            f"{nets}:build",
            *CLI_SMALL,
            "--store",
            str(store),
            "--out",
            str(out),
            "--data-dir",
            str(data_root),
            *extra,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [
        (
            m["model"],
            m["max_trainable_depth"],
            m["first_failing_depth"],
            sorted(map(int, m["depths"])),
            m["trials_reused"],
        )
        for m in json.loads(captured.out.splitlines()[-1])["models"]
    ]


@pytest.mark.slow
def test_the_cli_searches_a_model_file_the_same_on_workers_and_ray_and_retrains_when_edited(
    capsys, nets, tmp_path, data_root
):
    here = _cli_frontier(capsys, nets, tmp_path / "a.db", data_root, tmp_path / "a")
    assert here == [("nets.build", 2, 3, [1, 2, 3], 0)]
    assert _cli_frontier(capsys, nets, tmp_path / "w.db", data_root, tmp_path / "w", "--workers", "2") == here
    assert _cli_frontier(capsys, nets, tmp_path / "a.db", data_root, tmp_path / "a") == [
        ("nets.build", 2, 3, [1, 2, 3], 3)
    ]
    nets.write_text(NETS.replace("fails_from=3", "fails_from=4"))
    assert _cli_frontier(capsys, nets, tmp_path / "a.db", data_root, tmp_path / "a") == [
        ("nets.build", 3, None, [1, 2, 3], 0)
    ]
    pytest.importorskip("ray")
    nets.write_text(NETS)
    on_ray = _cli_frontier(capsys, nets, tmp_path / "r.db", data_root, tmp_path / "r", "--executor", "ray")
    assert on_ray == here


def test_a_model_file_failing_at_its_smallest_depth_is_one_line_exit_2(nets, tmp_path, capsys):
    from depthlab.cli import main

    nets.write_text(NETS + "\n\ndef broken(depth):\n    return nn.Linear(3, 10)\n")
    code = main(
        ["train", "--model-file", f"{nets}:broken", "--depth", "2", "--store", str(tmp_path / "s.db")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nets.broken(depth=2) fails on a batch" in err
    assert not (tmp_path / "s.db").exists()


def test_lr_sweep_and_ablate_take_a_model_file(nets, tmp_path, data_root, capsys):
    import json

    from depthlab.cli import main

    nets.write_text(
        NETS.replace(
            "def build(depth, width=32, fails_from=3):", "def build(depth, width=32, fails_from=3, bn=False):"
        )
    )
    common = [
        "--model-file",
        f"{nets}:build",
        "--depth",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "500",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--data-dir",
        str(data_root),
        "--json",
    ]
    assert (
        main(
            [
                "lr-sweep",
                *common,
                "--lrs",
                "0.1,0.3",
                "--store",
                str(tmp_path / "s.db"),
                "--out",
                str(tmp_path / "sweep"),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])["rows"]
    assert [r["lr"] for r in rows] == [0.1, 0.3] and all(r["status"] == "done" for r in rows)
    assert (
        main(
            [
                "ablate",
                *common,
                "--toggle",
                "bn",
                "--seeds",
                "1",
                "--store",
                str(tmp_path / "s.db"),
                "--out",
                str(tmp_path / "ablate"),
            ]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out.splitlines()[-1])["rows"]) == 2
    with Store(tmp_path / "s.db") as store:
        assert {r.model for r in store.runs()} == {"nets.build"} and store.count() == 4


def test_an_empty_store_frames_with_its_columns(tmp_path):
    from depthlab.store.sqlite import RUN_FRAME_COLUMNS

    with Store(tmp_path / "e.db") as store:
        frame = store.to_frame()
    assert list(frame.columns) == list(RUN_FRAME_COLUMNS) and len(frame) == 0


# -- one runner, one identity (issue #29): the API and the CLI run one frontier on the same trials

ONE_FRONTIER = {
    "depths": (3, 6),
    "lrs": (0.1,),
    "epochs": 1,
    "train_size": 500,
    "eval_size": 200,
    "evals_per_epoch": 1,
    "device": "cpu",
}
ONE_FRONTIER_FLAGS = [
    "frontier",
    "--models",
    "cnn-tanh",
    "--depths",
    "3,6",
    "--lrs",
    "0.1",
    "--epochs",
    "1",
    "--train-size",
    "500",
    "--eval-size",
    "200",
    "--evals-per-epoch",
    "1",
    "--device",
    "cpu",
    "--workers",
    "1",
    "--json",
]


def stored_trials(path) -> dict:
    """Every trial of a store by config hash: status, config, threads and per-epoch numbers."""
    with Store(path, reading=True) as store:
        return {
            r.config_hash: (
                r.status,
                json.dumps(r.config, sort_keys=True),
                (r.result or {}).get("threads"),
                json.dumps(
                    [{k: v for k, v in e.items() if k != "seconds"} for e in store.epochs(r.id)],
                    sort_keys=True,
                ),
            )
            for r in store.runs()
        }


def cli_frontier(store, data_root, out, capsys) -> dict:
    code = main([*ONE_FRONTIER_FLAGS, "--store", str(store), "--data-dir", str(data_root), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)["models"][0]


def test_the_api_and_the_cli_run_one_frontier_on_the_same_trials(data_root, tmp_path, capsys):
    """Same hashes, same threads, same stored numbers from Python and from the shell, and each
    reuses the other's store without training. The process has 2 threads, as on a 2-core machine:
    the API once trained on them, unpinned, under the hash of a 1-thread run."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        by_api = depthlab.frontier(
            "cnn-tanh", store=tmp_path / "api.db", progress=False, data_dir=data_root, **ONE_FRONTIER
        ).models[0]
        by_cli = cli_frontier(tmp_path / "cli.db", data_root, tmp_path / "out-cli", capsys)
        api_trials, cli_trials = stored_trials(tmp_path / "api.db"), stored_trials(tmp_path / "cli.db")
        assert len(api_trials) >= 2 and api_trials == cli_trials
        assert {threads for _, _, threads, _ in api_trials.values()} == {1}
        assert by_api.trials_reused == 0 and by_cli["trials_reused"] == 0
        assert by_cli["max_trainable_depth"] == by_api.max_trainable_depth and by_cli["lr"] == by_api.lr
        again_cli = cli_frontier(tmp_path / "api.db", data_root, tmp_path / "out-again", capsys)
        again_api = depthlab.frontier(
            ["cnn-tanh"], store=tmp_path / "cli.db", progress=False, data_dir=data_root, **ONE_FRONTIER
        ).models[0]
    finally:
        torch.set_num_threads(before)
    assert again_cli["trials"] == again_cli["trials_reused"] == by_api.trials  # trained nothing
    assert again_api.trials == again_api.trials_reused == by_cli["trials"]
    assert (
        stored_trials(tmp_path / "api.db") == api_trials and stored_trials(tmp_path / "cli.db") == cli_trials
    )


def test_the_api_and_the_cli_parse_models_in_one_place():
    """`frontier_models`: "all", comma-separated presets, factories and lists, one error wording."""
    from depthlab.api import frontier_models
    from depthlab.models import CLASSIC_PRESETS

    assert frontier_models("all") == list(CLASSIC_PRESETS)
    assert (
        frontier_models(" cnn-tanh, cnn-elu ")
        == frontier_models(["cnn-tanh", "cnn-elu"])
        == ["cnn-tanh", "cnn-elu"]
    )
    assert isinstance(frontier_models(build)[0], ModelFactory)
    with pytest.raises(ConfigError, match="unknown model 'cnn-nope'"):
        frontier_models(["cnn-tanh", "cnn-nope"])
    with pytest.raises(ConfigError, match="--models is empty"):
        frontier_models(" , ", "--models")


def test_train_from_python_and_the_shell_pins_the_same_threads(data_root, tmp_path, capsys):
    """A config that leaves threads unset runs on the process's threads from both entry points,
    and records them: in a 2-thread process, `depthlab.train` and ``depthlab train`` store one
    run (the second reuses the first) whose threads and hash say 2, never the 1-thread key."""
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=1, train_size=300, device="cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = depthlab.train(config, store=tmp_path / "t.db", progress=False, data_dir=data_root)
        code = main(
            [
                "train",
                "cnn-tanh",
                "--depth",
                "3",
                "--epochs",
                "1",
                "--train-size",
                "300",
                "--device",
                "cpu",
                "--store",
                str(tmp_path / "t.db"),
                "--data-dir",
                str(data_root),
                "--json",
            ]
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0, capsys.readouterr().err
    assert result.threads == 2 and result.config["threads"] == 2
    with Store(tmp_path / "t.db", reading=True) as store:
        rows = store.runs()
    assert len(rows) == 1 and rows[0].config_hash != config.hash()  # not the key of a 1-thread run
