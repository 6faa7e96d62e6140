"""Reading a stored row safely: its JSON parsed with bounded nesting, every column and field a
reader relies on checked for its type (and its range where one is clear). A store may come from
elsewhere or be edited by hand; what it holds is data to check, never trusted, and a row that
fails is named by its id (`StoreError`, one line) instead of failing deep inside a reader."""

from __future__ import annotations

import json
import math
import sqlite3

from ..records.record import RunStatus

MAX_JSON_DEPTH = 32  # a config or result nests a few levels; more is not a record depthlab wrote


STATUSES = {s.value for s in RunStatus} - {RunStatus.CANCELLED.value}  # cancelled runs are never stored


EPOCH_NUMBERS = ("train_error", "test_error", "loss", "lr", "seconds")


class BadRecord(ValueError):
    """What is wrong with a stored record, in words (the store adds the row's id)."""


def json_depth(text: str) -> int:
    """How deep the arrays and objects of JSON text nest, counted without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(text, what: str):
    """JSON text of a stored column, parsed; `BadRecord` for anything else (bytes, a pickle, a
    parse error) and for nesting deeper than `MAX_JSON_DEPTH` (checked before parsing, so a
    config nested 50,000 deep is one line, not a RecursionError)."""
    if not isinstance(text, str):
        raise BadRecord(f"{what} is not JSON text")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise BadRecord(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRecord(f"{what}: {type(exc).__name__}") from None


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_or_none(value) -> bool:
    return value is None or is_number(value)


def _count_or_none(value, least: int) -> bool:
    """An int of at least ``least``, or None (a field not set)."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= least)


def _error_or_none(value) -> bool:
    """An error rate: a fraction in [0, 1], NaN (a diverged run) or None."""
    return value is None or (is_number(value) and (math.isnan(value) or 0.0 <= value <= 1.0))


def check_config(config) -> None:
    if not isinstance(config, dict):
        raise BadRecord(f"config is a JSON {type(config).__name__}, not an object")
    model_args = config.get("model_args", {})
    if not isinstance(model_args, dict):
        raise BadRecord("config model_args is not an object")
    if not _count_or_none(model_args.get("depth"), 1):
        raise BadRecord("config model_args.depth is not a positive integer")
    if not _number_or_none(config.get("lr")):
        raise BadRecord("config lr is not a number")
    for key, least in (("epochs", 1), ("batch_size", 1), ("train_size", 1), ("seed", 0), ("depth", 1)):
        if not _count_or_none(config.get(key), least):
            raise BadRecord(f"config {key} is not an integer of at least {least}")


def check_epoch(epoch, where: str = "result epoch") -> None:
    """One epoch's metrics (a result's epoch object, or a row of the epochs table as a dict)."""
    if not isinstance(epoch, dict):
        raise BadRecord(f"{where} is not an object")
    if not _count_or_none(epoch.get("epoch"), 0):
        raise BadRecord(f"{where} number is not an integer of at least 0")
    for key in EPOCH_NUMBERS:
        if not _number_or_none(epoch.get(key)):
            raise BadRecord(f"{where} {key} is not a number")
    for key in ("train_error", "test_error"):
        if not _error_or_none(epoch.get(key)):
            raise BadRecord(f"{where} {key} is not a fraction in [0, 1]")


def check_result(result) -> None:
    if result is None:
        return
    if not isinstance(result, dict):
        raise BadRecord(f"result is a JSON {type(result).__name__}, not an object")
    if "status" in result and result["status"] not in STATUSES:
        raise BadRecord(
            f"result status {str(result['status'])[:40]!r} is not one of {', '.join(sorted(STATUSES))}"
        )
    epochs = result.get("epochs", [])
    if not isinstance(epochs, list):
        raise BadRecord("result epochs are not a list of objects")
    for epoch in epochs:
        check_epoch(epoch)
    if not all(_number_or_none(result.get(k)) for k in ("test_error", "train_error", "seconds")):
        raise BadRecord("result errors or seconds are not numbers")
    if not _error_or_none(result.get("test_error")):
        raise BadRecord("result test_error is not a fraction in [0, 1]")


TEXT_COLUMNS = ("config_hash", "kind", "model", "dataset")
OPTIONAL_TEXT_COLUMNS = ("experiment", "reason", "torch_version", "device")


def check_columns(row: sqlite3.Row) -> None:
    """The plain columns of a runs row (read by name)."""
    if not all(isinstance(row[c], str) for c in TEXT_COLUMNS + ("status",)):
        raise BadRecord("hash, kind, model, dataset or status is not text")
    if row["status"] not in STATUSES:
        raise BadRecord(f"status {row['status'][:40]!r} is not one of {', '.join(sorted(STATUSES))}")
    if not all(row[c] is None or isinstance(row[c], str) for c in OPTIONAL_TEXT_COLUMNS):
        raise BadRecord(f"{', '.join(OPTIONAL_TEXT_COLUMNS)} are not text")
    if not _number_or_none(row["seconds"]) or not is_number(row["created_at"]):
        raise BadRecord("seconds or created_at is not a number")


def decode_run(row: sqlite3.Row) -> tuple[dict, dict | None]:
    """The config and result of a runs row, every part checked; `BadRecord` says what is wrong."""
    check_columns(row)
    config = parse_json(row["config"], "config")
    result = parse_json(row["result"], "result") if row["result"] is not None else None
    check_config(config)
    check_result(result)
    return config, result


def decode_epoch(row: sqlite3.Row, columns: tuple[str, ...]) -> dict:
    """A row of the epochs table as the dict `Store.epochs` returns, checked."""
    metrics = {c: row[c] for c in columns}
    check_epoch(metrics, where="epoch")
    if row["extra"] is not None:
        extra = parse_json(row["extra"], "epoch extra")
        if not isinstance(extra, dict):
            raise BadRecord("epoch extra is not an object")
        metrics.update(extra)
    return metrics
