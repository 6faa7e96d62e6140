"""`depthlab phase --family mlp`: a tiny grid through the command line writes its heatmap, CSV and
JSON, and a re-run reads every cell back from the store (trains nothing)."""

import csv
import json

from depthlab.cli import main

TINY = [
    "phase",
    "--family",
    "mlp",
    "--width",
    "16",
    "--sigma-w2",
    "1,2",
    "--depths",
    "2,4",
    "--steps",
    "3",
    "--train-size",
    "200",
    "--device",
    "cpu",
]


def test_a_tiny_grid_writes_its_outputs_and_a_rerun_trains_nothing(data_root, tmp_path, capsys):
    args = TINY + [
        "--data-dir",
        str(data_root),
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args + ["--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["trained"], first["reused"]) == (4, 0)
    assert first["config"]["width"] == 16 and first["config"]["depths"] == [2, 4]
    assert set(first["agreement"]) >= {"c", "iqr_ratio", "deepest", "xi"}
    assert all(first["depth_seconds"][d] is not None for d in ("2", "4"))
    out = tmp_path / "out"
    assert (out / "phase-mlp-tanh.png").stat().st_size > 1000
    rows = list(csv.DictReader((out / "phase-mlp-cells.csv").open()))
    assert len(rows) == 4 and {r["depth"] for r in rows} == {"2", "4"}
    assert json.loads((out / "phase-mlp.json").read_text())["cells"] == first["cells"]

    assert main(args) == 0  # the table, from the store
    text = capsys.readouterr().out
    assert "0 cells trained, 4 read from" in text and "depth \\ sigma_w2" in text
    assert main(args + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["trained"], again["reused"]) == (0, 4) and again["cells"] == first["cells"]


def test_stages_flags_are_refused_with_family_mlp(tmp_path, capsys):
    assert main(TINY + ["--lrs", "0.1", "--store", str(tmp_path / "s.db")]) == 2
    assert "--lrs does not apply to --family mlp" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()
