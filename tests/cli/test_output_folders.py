"""Issue 22 item 6: each command's default output folder comes from its store and its name, and a
folder holding another command's results is refused without --force."""

from pathlib import Path

from depthlab.cli import main
from depthlab.report.outputs import OWNER_FILE, check_output_owner, default_output_dir


def test_default_folder_from_store_and_command():
    assert default_output_dir("runs/f.db", "frontier") == "depthlab-out/f/frontier"
    assert default_output_dir(None, "diagnose") == "depthlab-out/depthlab/diagnose"


def test_another_commands_folder_needs_force(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    (out / OWNER_FILE).write_text("lr-sweep\n")
    check_output_owner(out, "lr-sweep")  # its own folder: fine
    check_output_owner(out, "frontier", force=True)  # --force: fine
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--max-depth",
        "6",
        "--epochs",
        "1",
        "--lrs",
        "0.1",
        "--device",
        "cpu",
        "--data-dir",
        str(tmp_path / "none"),
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds the results of `depthlab lr-sweep`" in err and "--force" in err
    assert not (tmp_path / "s.db").exists()  # refused before the store is opened
    assert main(args + ["--force"]) == 2  # now it gets as far as the (missing) data
    assert "already holds" not in capsys.readouterr().err


def test_frontier_writes_to_its_default_folder_and_marks_it(tmp_path, capsys, monkeypatch):
    from depthlab.store.sqlite import Store

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mine.db"
    Store(store).close()
    # --status with no trials trains nothing and writes the partial table into --out
    code = main(
        [
            "frontier",
            "--models",
            "cnn-tanh",
            "--max-depth",
            "6",
            "--epochs",
            "1",
            "--lrs",
            "0.1",
            "--device",
            "cpu",
            "--store",
            str(store),
            "--status",
            "--out",
            "depthlab-out/mine/frontier",
        ]
    )
    capsys.readouterr()
    folder = Path("depthlab-out/mine/frontier")
    assert code == 0 and (folder / OWNER_FILE).read_text().strip() == "frontier"
    assert (folder / "frontier.csv").is_file()


# ---------------------------------------------------------------------------------------------
# Issue 29: never touch a user's file


STATUS = [
    "frontier",
    "--models",
    "cnn-tanh",
    "--max-depth",
    "6",
    "--epochs",
    "1",
    "--lrs",
    "0.1",
    "--device",
    "cpu",
    "--status",
]


def _user_folder(tmp_path) -> tuple[Path, dict]:
    folder = tmp_path / "myfolder"
    folder.mkdir()
    files = {"frontier.csv": "my,own,table\n", "frontier.json": '{"mine": true}\n'}
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder, files


def test_a_users_folder_is_refused_and_left_byte_for_byte(tmp_path, capsys):
    """`--out myfolder` silently replaced the user's own frontier.csv and frontier.json: the guard
    looked only at folders depthlab had marked."""
    from depthlab.store.sqlite import Store

    store = tmp_path / "s.db"
    Store(store).close()
    folder, files = _user_folder(tmp_path)
    assert main([*STATUS, "--store", str(store), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files depthlab did not write (frontier.csv, frontier.json)" in err
    assert "--force" in err
    assert {p.name: p.read_text() for p in folder.iterdir()} == files  # untouched, and not marked
    assert main([*STATUS, "--store", str(store), "--out", str(folder), "--force"]) == 0
    capsys.readouterr()
    assert (folder / OWNER_FILE).read_text().strip() == "frontier"  # --force: the user asked for it


def test_every_command_refuses_a_users_folder_before_anything_runs(tmp_path, capsys, data_root):
    folder, files = _user_folder(tmp_path)
    store = tmp_path / "s.db"
    commands = [
        [
            "train",
            "cnn-tanh",
            "--depth",
            "3",
            "--epochs",
            "1",
            "--train-size",
            "100",
            "--device",
            "cpu",
            "--data-dir",
            str(data_root),
        ],
        ["theory", "--sigma-w2", "1,2"],
        [
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
            "--data-dir",
            str(data_root),
        ],
        [
            "lr-find",
            "cnn-tanh",
            "--depth",
            "3",
            "--steps",
            "10",
            "--device",
            "cpu",
            "--data-dir",
            str(data_root),
        ],
        [
            "diagnose",
            "cnn-tanh",
            "--depth",
            "3",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--data-dir",
            str(data_root),
        ],
    ]
    for args in commands:
        takes_store = args[0] in ("train", "phase")
        code = main(args + (["--store", str(store)] if takes_store else []) + ["--out", str(folder)])
        err = capsys.readouterr().err
        assert code == 2 and "holds files depthlab did not write" in err, (args, err)
        assert {p.name: p.read_text() for p in folder.iterdir()} == files, args
    assert not store.exists()  # refused before the store is opened


def test_train_out_into_another_commands_folder_is_refused(tmp_path, capsys, data_root):
    out = tmp_path / "o"
    out.mkdir()
    (out / OWNER_FILE).write_text("frontier\n")
    args = [
        "train",
        "cnn-tanh",
        "--depth",
        "3",
        "--epochs",
        "1",
        "--train-size",
        "100",
        "--device",
        "cpu",
        "--data-dir",
        str(data_root),
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "already holds the results of `depthlab frontier`" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists() and sorted(p.name for p in out.iterdir()) == [OWNER_FILE]


def test_train_marks_its_folder_and_another_command_is_then_refused(tmp_path, capsys, data_root):
    out, store = tmp_path / "o", tmp_path / "s.db"
    assert (
        main(
            [
                "train",
                "cnn-tanh",
                "--depth",
                "3",
                "--epochs",
                "1",
                "--train-size",
                "100",
                "--device",
                "cpu",
                "--data-dir",
                str(data_root),
                "--store",
                str(store),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (out / OWNER_FILE).read_text().strip() == "train"
    assert main([*STATUS, "--store", str(store), "--out", str(out)]) == 2
    assert "already holds the results of `depthlab train`" in capsys.readouterr().err


def test_a_folder_holding_only_the_commands_store_is_its_own(tmp_path, capsys):
    """The store (and its -wal, -shm, -checkpoints) beside the outputs is depthlab's, not the user's."""
    from depthlab.store.sqlite import Store

    folder = tmp_path / "run"
    folder.mkdir()
    store = folder / "store.db"
    Store(store).close()
    (folder / "store.db-checkpoints").mkdir()
    assert main([*STATUS, "--store", str(store), "--out", str(folder)]) == 0
    capsys.readouterr()
    assert (folder / "frontier.csv").is_file()
