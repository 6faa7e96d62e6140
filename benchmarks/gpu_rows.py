"""Render the GPU rows of `benchmarks/gpu_session.sh rows` against the CPU figures.

    python benchmarks/gpu_rows.py OUT/gpu-rows.jsonl [--json OUT/gpu-rows.json]
    python benchmarks/gpu_rows.py benchmarks/results/gpu-*.json      # the recorded sessions

A ``.jsonl`` file holds one row per line as the session script wrote it; ``--json`` saves them
as one object (the machine, the rows) for benchmarks/results/. The CPU figure of each row, with
the command, machine and date it was measured with, comes from benchmarks/results/cpu-reference.json;
the ratio is printed only where both ran the same workload and the GPU row finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "results" / "cpu-reference.json"


def read_rows(path: Path) -> dict:
    """A session: ``{"device": ..., "rows": [...]}`` from a saved JSON or the script's JSON lines."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        return {
            "device": gpu_name(),
            "rows": [json.loads(line) for line in text.splitlines() if line.strip()],
        }
    return json.loads(text)


def gpu_name() -> str | None:
    """The CUDA device this runs on, if any (the session script renders on the GPU machine)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def table(session: dict, reference: dict) -> str:
    """The markdown table: row, GPU seconds (or why none), the CPU figure, the ratio."""
    lines = [
        f"GPU: {session.get('device') or 'unknown'}",
        "",
        "| row | GPU wall | CPU figure | CPU / GPU |",
        "|---|---|---|---|",
    ]
    for row in session["rows"]:
        cpu = reference.get(row["row"], {})
        if row.get("timed_out"):
            gpu = f"> {row['limit_s']} s (cut off)"
        elif row["rc"]:
            gpu = f"failed (exit {row['rc']})"
        else:
            gpu = f"{row['seconds']:.1f} s"
        ratio = f"{cpu['seconds'] / row['seconds']:.1f}x" if cpu.get("seconds") and not row["rc"] else "n/a"
        lines.append(f"| {row['row']} | {gpu} | {cpu.get('figure', 'not measured')} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sessions", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="save the (one) session as JSON here")
    args = parser.parse_args(argv)
    reference = json.loads(REFERENCE.read_text())["rows"]
    for path in args.sessions:
        session = read_rows(path)
        print(f"{path}:\n{table(session, reference)}\n")
        if args.json:
            args.json.write_text(json.dumps(session, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
