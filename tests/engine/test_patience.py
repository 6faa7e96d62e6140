"""--patience N stops after N epochs without improvement (Keras, Lightning), and runs stored
under the old rule (N+1) are not reused as runs of this one (issue 22)."""

import pytest
from fakedata import synthetic_dataset

from depthlab.engine.config import TrainConfig
from depthlab.engine.loop import train


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(1024, 256)


def _config(**kw):
    return TrainConfig(
        **{
            **dict(
                model="cnn-tanh",
                model_args={"depth": 3},
                epochs=6,
                batch_size=64,
                device="cpu",
                schedule="2@0.1,1@50,3@1e-9",
            ),
            **kw,
        }
    )


@pytest.mark.parametrize("patience", [1, 2])
def test_patience_n_stops_after_n_epochs_without_improvement(data, patience):
    # two good epochs, then an lr that wrecks the network and one too small to recover it
    result = train(_config(patience=patience), data)
    errors = [e.test_error for e in result.epochs]
    assert errors[1] < 0.2 and min(errors[2:]) > 0.5  # epoch 001 stays the best
    assert result.stopped_early and len(errors) == 2 + patience
    assert result.reason == f"early stopping after epoch {1 + patience}"
    assert result.test_error == errors[1]  # the best weights, restored


def test_the_hash_of_a_run_with_patience_is_not_an_old_rule_run():
    import hashlib
    import json

    from depthlab.engine.config import DEFAULT_PRECISION

    def old_hash(c):  # the hash before the rule changed: no marker
        d = c.canonical()
        for key in ("device", "compile"):
            d.pop(key)
        if d["precision"] == DEFAULT_PRECISION:
            d.pop("precision")
        if d["threads"] is None:
            d.pop("threads")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    assert _config().hash() == old_hash(_config())  # without patience: existing stores replay
    assert _config(patience=2).hash() != old_hash(_config(patience=2))
    assert _config(patience=2).hash() != _config(patience=3).hash() != _config().hash()
