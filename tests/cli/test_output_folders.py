"""Issue 22 item 6: each command's default output folder comes from its store and its name, and a
folder holding another command's results is refused without --force."""

from pathlib import Path

from depthlab.cli import main
from depthlab.report import OWNER_FILE, check_output_owner, default_output_dir


def test_default_folder_from_store_and_command():
    assert default_output_dir("runs/f.db", "frontier") == "depthlab-out/f/frontier"
    assert default_output_dir(None, "diagnose") == "depthlab-out/depthlab/diagnose"


def test_another_commands_folder_needs_force(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    (out / OWNER_FILE).write_text("lr-sweep\n")
    check_output_owner(out, "lr-sweep")                     # its own folder: fine
    check_output_owner(out, "frontier", force=True)         # --force: fine
    args = ["frontier", "--models", "cnn-tanh", "--max-depth", "6", "--epochs", "1", "--lrs", "0.1",
            "--device", "cpu", "--data-dir", str(tmp_path / "none"), "--store", str(tmp_path / "s.db"),
            "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds the results of `depthlab lr-sweep`" in err and "--force" in err
    assert not (tmp_path / "s.db").exists()                 # refused before the store is opened
    assert main(args + ["--force"]) == 2                    # now it gets as far as the (missing) data
    assert "already holds" not in capsys.readouterr().err


def test_frontier_writes_to_its_default_folder_and_marks_it(tmp_path, capsys, monkeypatch):
    from depthlab.store.sqlite import Store

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mine.db"
    Store(store).close()
    # --status with no trials trains nothing and writes the partial table into --out
    code = main(["frontier", "--models", "cnn-tanh", "--max-depth", "6", "--epochs", "1", "--lrs", "0.1",
                 "--device", "cpu", "--store", str(store), "--status", "--out", "depthlab-out/mine/frontier"])
    capsys.readouterr()
    folder = Path("depthlab-out/mine/frontier")
    assert code == 0 and (folder / OWNER_FILE).read_text().strip() == "frontier"
    assert (folder / "frontier.csv").is_file()
