"""Running trials against the store: a finished config (done or diverged) is never trained
twice, every epoch is recorded as it ends, and an exception inside a run is recorded as
``failed`` with its reason (and tried again by the next attempt at that config)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..engine.config import TrainConfig
from ..engine.device import resolve_device
from ..engine.loop import LoopCallback
from ..engine.run import run_safely
from ..errors import StoreError
from ..records.record import Monitor, RunResult, RunStatus
from ..store.sqlite import Store

# Datasets whose files are checked against the official checksums when loaded: data of that
# name is always the same data, so runs recorded before fingerprints existed may be reused.
STANDARD_DATASETS = ("mnist", "mnist32", "cifar10")

FINGERPRINT_KEY = "data_fingerprint"  # in a stored config: `Dataset.fingerprint()` of the data it ran on
MONITOR_KEY = "monitor"  # in a stored config: ``monitor.describe()``, for a monitor that describes itself


def stored_result(
    store: Store | None,
    config_hash: str,
    *,
    dataset: str | None = None,
    fingerprint: str | Callable[[], str] | None = None,
) -> RunResult | None:
    """The stored result of a finished run of ``config_hash`` (``reused`` set), or None.
    A failure (out of memory, a bug since fixed) is not a result: it is tried again.

    With ``fingerprint`` (the data that would train, or a function giving it) a result is a
    result only for that data: its stored fingerprint must be equal, and one recorded without (by
    a version that did not record it) counts only on a standard checksummed ``dataset``
    (`STANDARD_DATASETS`), the only data whose content its name fixes.
    Without, the data is not checked (a read-only view of the store)."""
    found = store.find_finished(config_hash) if store is not None else None
    if found is None or found.result is None or found.status == RunStatus.FAILED:
        return None
    if fingerprint is not None and not recorded_on(found.config, fingerprint, dataset=dataset):
        return None
    try:
        return RunResult.from_dict(found.result, reused=True)
    except (TypeError, KeyError, ValueError) as exc:  # fields of the right types that do not make a run
        raise StoreError(
            f"{store.path}: run {found.id} has a corrupted record (its result does not read as a "
            f"run: {type(exc).__name__}: {str(exc)[:120]})"
        ) from None


def recorded_on(
    stored: dict | None, fingerprint: str | Callable[[], str], *, dataset: str | None = None
) -> bool:
    """Whether a stored config was recorded on the data of ``fingerprint`` (a value, or a
    function giving it, called only when needed). A config recorded without a fingerprint counts
    only on a standard checksummed dataset (`STANDARD_DATASETS`)."""
    recorded = stored.get(FINGERPRINT_KEY) if isinstance(stored, dict) else None
    if recorded is None:
        return (dataset or (stored or {}).get("dataset")) in STANDARD_DATASETS
    return recorded == (fingerprint() if callable(fingerprint) else fingerprint)


def claim_or_wait(
    store: Store, config_hash: str, stored: Callable[[], RunResult | None], *, poll: float = 2.0
) -> RunResult | None:
    """The stored result of ``config_hash`` (``stored()``), or None once this process holds its
    claim (`Store.claim`) and must train it. While another live process trains it, wait and read
    its result back, so that two processes never train one config at once; a claim given up
    without a result (a failure) or gone stale (its process died) is taken over."""
    told = False
    while True:
        found = stored()
        if found is not None:
            return found
        elsewhere = store.claim([config_hash])
        if not elsewhere:
            found = stored()  # finished elsewhere between the look and the claim
            if found is not None:
                store.release([config_hash])
            return found
        if not told:
            pid, host = elsewhere[config_hash]
            logging.getLogger("depthlab").info(
                f"run {config_hash[:12]} is in flight in another process (pid {pid} on {host}); waiting for its result"
            )
            told = True
        time.sleep(poll)


def stored_config(config: TrainConfig, data: Dataset, monitor: Monitor | None = None) -> dict:
    """What the store keeps as the config of a run of ``config`` on ``data``: the canonical
    config, the data's fingerprint and what ``monitor`` says it decides (its ``describe()``,
    e.g. the frontier's criterion). Neither is part of the hash: old stores keep their keys."""
    described = getattr(monitor, "describe", None)
    return {
        **config.canonical(),
        FINGERPRINT_KEY: data.fingerprint(),
        **({MONITOR_KEY: described()} if callable(described) else {}),
    }


def _stored_or_claimed(
    store: Store, config: TrainConfig, key: str, the_data: Callable[[], Dataset]
) -> RunResult | None:
    """The stored result of ``config`` (hash ``key``) on the data ``the_data()`` gives (loaded only
    when a stored fingerprint must be checked), or None once this process holds its claim and
    must train it (`claim_or_wait`)."""
    return claim_or_wait(
        store,
        key,
        lambda: stored_result(
            store, key, dataset=config.dataset, fingerprint=lambda: the_data().fingerprint()
        ),
    )


def _start_recorded(
    store: Store | None,
    config: TrainConfig,
    key: str,
    data: Dataset,
    monitor: Monitor | None,
    *,
    kind: str,
    experiment: str | None,
) -> int | None:
    """Record in ``store`` (when there is one) that a run of ``config`` (hash ``key``) on ``data``
    starts, on the device it resolves to; its run id, or None without a store. The stored config
    and the device are worked out even without a store, so that bad ones fail the same way."""
    canonical = stored_config(config, data, monitor)
    device = str(resolve_device(config.device))
    return (
        store.start_run(canonical, key, kind=kind, experiment=experiment, device=device)
        if store is not None
        else None
    )


def _finish_recorded(store: Store | None, run_id: int | None, status: str, out: RunResult, **more) -> None:
    """Record in ``store`` (when there is one) that run ``run_id`` ended with ``status`` and
    ``out``'s time, reason and result (``more``: further fields of `Store.finish_run`)."""
    if store is not None:
        store.finish_run(
            run_id, status, seconds=round(out.seconds, 3), reason=out.reason, result=out.to_dict(), **more
        )


def run_recorded(
    config: TrainConfig,
    store: Store | None,
    data: Dataset | None = None,
    *,
    data_dir=None,
    kind: str = "train",
    experiment: str | None = None,
    monitor: Monitor | None = None,
    callbacks: Sequence[LoopCallback] = (),
    reuse: bool = True,
    train_options: dict | None = None,
    extras: Callable | None = None,
    keep_model: bool = False,
) -> RunResult:
    """Train ``config`` (or return its stored result when ``reuse`` and it already finished).

    Returns a `RunResult` (``reused`` telling whether it came from the store): stored and fresh
    results look the same to callers, except that ``keep_model`` keeps a trained run's network as
    its ``model`` (the store keeps no weights: a result read back from it has none).
    ``callbacks`` follow the training (after the one that writes each epoch to the store);
    ``train_options`` are passed on to `train` (e.g. ``checkpoint_path``, ``resume``,
    ``compile_model``: ways of running that do not change the result).
    ``extras(model)`` may measure the trained network (gate values, train-split accuracy of the
    restored weights...); its JSON-able dict is stored with the result as its ``extras``."""
    config.validate()
    key = config.hash()
    loaded: list[Dataset] = [data] if data is not None else []

    def the_data() -> Dataset:  # loaded (and failing on bad data) before anything is written
        if not loaded:
            loaded.append(load_dataset(config.dataset, data_dir))
        return loaded[0]

    if store is not None and reuse:
        found = _stored_or_claimed(store, config, key, the_data)
        if found is not None:
            return found
    data = the_data()
    run_id = _start_recorded(store, config, key, data, monitor, kind=kind, experiment=experiment)

    def record_user_error(out: RunResult) -> None:
        _finish_recorded(store, run_id, RunStatus.FAILED.value, out)

    rows = [EpochRows(store, run_id)] if store is not None else []
    out = run_safely(
        config,
        data,
        monitor=monitor,
        callbacks=[*rows, *callbacks],
        train_options=train_options,
        extras=extras,
        on_user_error=record_user_error,
        keep_model=keep_model,
    )
    _finish_recorded(store, run_id, out.status.value, out, device=out.device)
    out.reused = False
    return out


class EpochRows(LoopCallback):
    """Writes each epoch of run ``run_id`` to the store as it ends (a killed run keeps its epochs)."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def on_epoch_metrics(self, loop, index: int, metrics) -> None:
        self.store.log_epoch(self.run_id, metrics.to_dict())
