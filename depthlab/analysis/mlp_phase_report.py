"""The outputs of the wide-MLP phase grid (`depthlab phase --family mlp`): the heatmap PNG, one
CSV row per cell, and a JSON summary with the protocol, the theory agreement and the measured
wall time per depth (read back from the store, so a resumed grid reports when it trained)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from ..report.figures import save_figure
from ..report.outputs import safe_child, write_text_atomic
from ..report.tables import format_table, write_csv
from ..store import Store
from .mlp_phase import PhaseGrid, PhaseGridConfig, TheoryAgreement, plot_phase_heatmap

CELL_HEADERS = ("depth", "sigma_w2", "sigma_b2", "train_accuracy")


def depth_seconds(config: PhaseGridConfig, store: Store | None) -> dict[int, float | None]:
    """The training wall time of each depth as the store recorded it (the sum of its cells'
    shares of their fused group's time; None where a cell of that depth is missing)."""
    out: dict[int, float | None] = {}
    for depth in config.depths:
        total = 0.0
        for s in config.sigma_w2s:
            found = store.find_finished(config.cell_hash(depth, s)) if store is not None else None
            seconds = found.result.get("seconds") if found is not None and found.result else None
            if not isinstance(seconds, (int, float)):
                total = math.nan
                break
            total += seconds
        out[int(depth)] = None if math.isnan(total) else round(total, 1)
    return out


def phase_summary(grid: PhaseGrid, agreement: TheoryAgreement, seconds: dict[int, float | None]) -> dict:
    """A JSON-safe summary: protocol and grid, the agreement, per-depth seconds, the cells."""
    c, iqr = agreement.c, agreement.iqr_ratio
    return {
        "family": "mlp",
        "config": dataclasses.asdict(grid.config),
        "trained": grid.trained,
        "reused": grid.reused,
        "agreement": agreement.to_json(),
        "fit": None
        if c is None
        else f"deepest trainable depth = {c:.2f} xi_c (ratio IQR "
        f"{iqr[0]:.2f}-{iqr[1]:.2f} over {sum(agreement.used)} sigma_w2)",
        "depth_seconds": {str(d): s for d, s in seconds.items()},
        "cells": grid.to_rows(),
    }


def write_phase_outputs(grid: PhaseGrid, summary: dict, folder: Path, threshold: float) -> list[Path]:
    """``phase-mlp-<act>.png`` (heatmap), ``phase-mlp-cells.csv`` and ``phase-mlp.json`` in ``folder``."""
    png = save_figure(
        plot_phase_heatmap(grid, threshold=threshold), safe_child(folder, f"phase-mlp-{grid.config.act}.png")
    )
    csv = write_csv(
        safe_child(folder, "phase-mlp-cells.csv"),
        CELL_HEADERS,
        [[r[h] for h in CELL_HEADERS] for r in grid.to_rows()],
    )
    js = write_text_atomic(safe_child(folder, "phase-mlp.json"), json.dumps(summary, indent=2))
    return [png, csv, js]


def phase_table(grid: PhaseGrid) -> str:
    """Train accuracy as a table: one row per depth, one column per sigma_w2 (- unmeasured)."""
    rows = [
        [d] + ["-" if math.isnan(a) else f"{a:.2f}" for a in grid.accuracy[i]]
        for i, d in enumerate(grid.depths)
    ]
    return format_table(["depth \\ sigma_w2"] + [f"{s:g}" for s in grid.sigma_w2s], rows)


def agreement_lines(agreement: TheoryAgreement) -> list[str]:
    """The agreement in words: per sigma_w2 the deepest passing depth against xi_c, then the fit."""

    def fmt(x):
        return "-" if x is None else "inf" if math.isinf(x) else f"{x:.1f}"

    rows = [
        [f"{s:g}", fmt(x), "-" if d is None else d, "censored" if cens else "fit" if used else "no xi_c"]
        for s, x, d, cens, used in zip(
            agreement.sigma_w2s, agreement.xi, agreement.deepest, agreement.censored, agreement.used
        )
    ]
    lines = [format_table(["sigma_w2", "xi_c", f"deepest acc > {agreement.threshold:g}", "used"], rows)]
    if agreement.c is None:
        lines.append("fit: no uncensored sigma_w2 (every frontier is below or beyond the grid)")
    else:
        lo, hi = agreement.iqr_ratio
        lines.append(
            f"fit: deepest trainable depth = {agreement.c:.2f} xi_c (median ratio {agreement.median_ratio:.2f}, "
            f"IQR {lo:.2f}-{hi:.2f}, {sum(agreement.used)} sigma_w2; theory's bound: 6 xi_c)"
        )
    return lines
