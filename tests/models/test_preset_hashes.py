"""Every preset's config hash, pinned: the hashes are how a store recognises a run already trained,
so moving the families and presets into data (`depthlab.models.catalog`) must leave each one as it
was. The literal values were computed with the registry as it stood before the move (commit
e94cd87); the carried stores are a second, independent witness (their stored hashes)."""

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from depthlab.engine.config import TrainConfig
from depthlab.errors import ConfigError
from depthlab.models import PRESETS, default_dataset

REPO = Path(__file__).resolve().parents[2]

PRESET_HASHES = {
    "stages": "5301f257415b8769",
    "cnn-tanh": "4d61e0bfeb535422",
    "cnn-tanh-lecun": "e3ead7753264a59d",
    "cnn-elu": "c65d4789b95ef9d6",
    "cnn-elu-bn": "91e1c4c6a1cf14f0",
    "resnet-elu-bn": "876a17baeb95e43c",
    "cnn-tanh-bn": "ed5f387650ae893e",
    "resnet-elu": "6eade1858ceac9e7",
    "cnn-elu-multihead": "10636243f4944ed5",
    "cnn-tanh-delta": "53bcdc4a6b158521",
    "resnet-elu-rezero": "ec9581105c70a4dc",
    "resnet-elu-fixup": "1973f6f17959df16",
    "cnn-tanh-critical": "8f06ac2a2503b52e",
    "cnn-relu-he": "0b9c75fe973857bc",
    "cnn-tat-lrelu": "1a4b867c526f824b",
    "cnn-dks-tanh": "7a59e9d8b253f8d9",
    "resnet-cifar": "4d03e4eebcab9688",
    "resnet18": "b3bdb0a2348803e6",
    "cifar-cnn": "29a0513f4e0caac1",
    "resnet20": "6ad9b032fff18793",
    "resnet32": "63bdc51aea5c3c7f",
    "resnet44": "04b5cb18187b9715",
    "resnet56": "15835c0fbcd7a62d",
    "resnet110": "3f0ec65134c23d23",
    "plain18": "8efb3f52eb29d2b7",
    "cifar-cnn-bn": "f999372644ddb107",
    "skipfc": "c5177cccb705deac",
    "strided": "0e8761674c56cfeb",
    "strided-res": "b2717b54aea54dc6",
    "strided-gated": "58d486a27e7d4bce",
    "mlp": "6a95f5f0bc464e03",
}

OVERRIDE_HASHES = [  # the fields left out while None (input_norm, tat_eta) and overrides of each kind
    ("cnn-dks-tanh", {"input_norm": "none"}, "4267b95f5f108f7d"),
    ("mlp", {"act": "tat-leaky-relu", "depth": 24}, "e31eaf4e0c0f7e9f"),
    ("cnn-tanh", {"depth": 30, "width": 2.0}, "17787f31803995df"),
    ("resnet20", {"shortcut": "B"}, "2804c809e97c3425"),
    ("strided-gated", {"gate": "channel", "a0": 0.9}, "2c606df1b52d055a"),
]

CARRIED = ("frontier-full", "seeds-auto", "trainability-fixes", "vanilla-1000")


def _needs_dks(name: str, args: dict) -> bool:
    return any(word in f"{PRESETS[name].values} {args}" for word in ("dks-", "tat-"))


def test_the_presets_are_the_pinned_ones_in_the_same_order():
    assert list(PRESETS) == list(PRESET_HASHES)


@pytest.mark.parametrize("name", list(PRESET_HASHES))
def test_each_presets_config_hash_is_the_one_stored_runs_carry(name):
    if _needs_dks(name, {}):
        pytest.importorskip("dks")
    assert TrainConfig(model=name, dataset=default_dataset(name)).hash() == PRESET_HASHES[name]


@pytest.mark.parametrize("name,args,expected", OVERRIDE_HASHES)
def test_overridden_presets_keep_their_hashes(name, args, expected):
    if _needs_dks(name, args):
        pytest.importorskip("dks")
    assert TrainConfig(model=name, dataset=default_dataset(name), model_args=args).hash() == expected


@pytest.mark.parametrize("store", CARRIED)
def test_every_carried_train_config_hashes_to_its_stored_hash(store):
    path = REPO / "runs" / store / "store.db"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    pytest.importorskip("dks")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # read-only: the carried file must not change
    try:
        rows = db.execute("SELECT config_hash, config FROM runs").fetchall()
    finally:
        db.close()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    checked = 0
    for stored_hash, text in rows:
        config = {k: v for k, v in json.loads(text).items() if k in names}
        try:
            rebuilt = TrainConfig(**config)
        except ConfigError:  # TAT at depth <= 12, refused since issue 30 (no longer a valid config)
            assert config["model_args"].get("act") == "tat-leaky-relu" and config["model_args"]["depth"] <= 12
            continue
        assert rebuilt.hash() == stored_hash, config
        checked += 1
    assert checked >= 2 and checked >= len(rows) - 6
