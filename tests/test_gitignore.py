"""Everything the README's examples write into the checkout is git-ignored: stores, their
checkpoint folders (`<store>-checkpoints/`), `--out` folders, saved figures. The carried
snapshots under `runs/` are the exception: they are committed on purpose."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_outputs() -> set[str]:
    text = (REPO / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```(?:bash|python)\n(.*?)```", text, flags=re.S))
    paths = set(re.findall(r"--(?:out|store|snapshot) ([^\s\\]+)", blocks))
    paths |= set(re.findall(r'(?:savefig\(|store=)"([^"]+)"', blocks))
    written = set()
    for path in paths:
        if path.startswith(("/", "runs/")) or path.upper() == path:  # elsewhere, carried, or a placeholder
            continue
        if path.endswith(".db"):
            written |= {path, f"{path}-checkpoints/trial.pt", f"{path}-wal"}
        elif "." not in Path(path).name:  # a folder: what goes in it
            written.add(f"{path}/table.csv")
        else:
            written.add(path)
    return written


def test_the_readme_examples_write_only_what_git_ignores():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    written = sorted(_readme_outputs())
    assert {
        "f.db",
        "out/table.csv",
        "phase-mlp/table.csv",
        "frontier.png",
        "runs.db-checkpoints/trial.pt",
    } <= set(written)
    found = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=REPO,
        input="\n".join(written),
        capture_output=True,
        text=True,
    )
    ignored = set(found.stdout.split())
    assert [p for p in written if p not in ignored] == []
    kept = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", "runs/frontier-full/store.db"], cwd=REPO
    )
    assert kept.returncode == 1  # the carried snapshot is not ignored
