"""`depthlab info` (issue 22 item 4): versions, devices, precision, data root and its datasets
(present or not, nothing loaded), the default store."""

import json

from fakedata import write_idx_folder

from depthlab.cli import main


def test_info_names_versions_devices_the_data_root_and_what_is_there(tmp_path, capsys, monkeypatch):
    write_idx_folder(tmp_path / "FashionMNIST" / "raw", 16, 8, gz=True)
    monkeypatch.setenv("DEPTHLAB_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    for word in (
        "depthlab ",
        "python ",
        "torch ",
        "numpy ",
        "pandas",
        "ray",
        "dks",
        "tensorboard",
        "pillow",
        "devices: cpu",
        "precision: fp32",
        f"data root: {tmp_path} (from DEPTHLAB_DATA",
        "store: depthlab.db",
    ):
        assert word in text, (word, text)
    assert "fashion-mnist  present" in text and "cifar10        not present" in text
    assert main(["info", "--json", "--data-dir", str(tmp_path / "none")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["data_root"] == {
        "path": str(tmp_path / "none"),
        "from": "--data-dir",
        "exists": False,
        "datasets": {n: None for n in doc["data_root"]["datasets"]},
    }
    assert set(doc["optional"]) == {"pandas", "ray", "dks", "tensorboard", "pillow"}
    assert doc["precision"]["default"] == "fp32" and doc["store"]["default"] == "depthlab.db"


def test_models_aligns_its_preset_rows(capsys):
    from depthlab.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("presets:")
    header, rows = (
        lines[start + 1],
        [line for line in lines[start + 3 :] if line.startswith("  ") and not line.startswith("axes")],
    )
    col = header.index("description")
    assert rows and all(line[col - 2] == " " and line[col - 1] == " " and line[col] != " " for line in rows)


def test_one_vocabulary_help_everywhere_and_examples_at_the_end(capsys):
    import click

    from depthlab.cli import cli, main

    missing = [
        (name, p.opts)
        for name, c in cli.commands.items()
        for p in c.params
        if isinstance(p, click.Option) and not p.help and not p.hidden and name != "phase"
    ]
    assert not missing, missing  # every option says what it does
    assert "depth" not in {p.name for p in cli.commands["frontier"].params}  # cannot apply: not offered
    assert "--weight-decay" in [o for p in cli.commands["ablate"].params for o in p.opts]
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    tail = text[text.index("Examples:") :]
    assert (
        tail.count("depthlab ") >= 3
        and "Data root: --data-dir, else $DEPTHLAB_DATA" in tail
        and "Store:" in tail
    )
    assert main(["train", "--help"]) == 0
    assert "one of: mnist, mnist32, fashion-mnist, cifar10" in " ".join(capsys.readouterr().out.split())


def test_info_devices_asks_torch_and_adds_its_answer(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["info", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not {"devices", "auto_device", "cuda"} & set(plain) and "torch_threads" not in plain["precision"]
    assert main(["info", "--devices", "--json"]) == 0
    probed = json.loads(capsys.readouterr().out)
    assert probed["devices"][0] == "cpu" and probed["auto_device"] in ("cpu", "cuda", "mps")
    assert probed["precision"]["torch_threads"] >= 1 and "cuda_runtime" in probed["versions"]
    assert {k: v for k, v in probed.items() if k not in ("devices", "auto_device", "cuda")} == {
        **plain,
        "precision": {**plain["precision"], "torch_threads": probed["precision"]["torch_threads"]},
        "versions": {**plain["versions"], "cuda_runtime": probed["versions"]["cuda_runtime"]},
    }
    assert main(["info", "--devices"]) == 0
    text = capsys.readouterr().out
    assert "(--device auto picks " in text and "torch CPU threads" in text and "  machine: " in text
    assert main(["info"]) == 0
    assert "--devices asks torch" in capsys.readouterr().out


def test_info_lists_every_registered_dataset():
    from depthlab.cli.info import DATASET_FILES
    from depthlab.data import DATASETS

    assert list(DATASET_FILES) == list(DATASETS)


def test_the_nvidia_driver_is_read_from_proc_else_path(tmp_path, monkeypatch):
    from depthlab.cli import info

    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    monkeypatch.setattr(info, "NVIDIA_VERSION_FILE", version)
    assert info.nvidia_driver() == "550.54.15"
    monkeypatch.setattr(info, "NVIDIA_VERSION_FILE", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert info.nvidia_driver() is None
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert info.nvidia_driver() == "nvidia-smi on PATH"


def test_the_torch_build_is_read_from_its_metadata(monkeypatch):
    from types import SimpleNamespace

    from depthlab.cli import info

    def wheel(version, requires=None):
        monkeypatch.setattr(
            info.importlib.metadata,
            "distribution",
            lambda name: SimpleNamespace(version=version, requires=requires),
        )

    wheel("2.13.0+cpu")
    assert info.torch_build() == "cpu"
    wheel("2.5.1+cu124")
    assert info.torch_build() == "cu124"
    wheel("2.5.1", ["filelock", "nvidia-cuda-runtime-cu12==12.4.127; platform_system == 'Linux'"])
    assert info.torch_build() == "cu12"
    wheel("2.5.1", ["filelock"])
    assert info.torch_build() == "default"
