"""`frontier --dry-run` (issue 22 item 7): the plan and an estimated CPU time from measured
per-layer costs, before anything trains or any store or folder is made."""

from depthlab.cli import main, plan


def test_dry_run_prints_the_plan_and_an_estimate_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plan, "layer_costs", lambda: {"plain": 30e-6, "bn": 45e-6})
    store = tmp_path / "f.db"
    assert main(["frontier", "--quick", "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("plan: 8 model(s)") and "depths probed first 3, 6, 9" in out[0]
    assert "lrs 0.01, 0.1, 1" in out[0] and "1 epoch(s) of 10,000 images" in out[0]
    assert (
        out[1].startswith("estimated CPU time on this machine: ")
        and "30 us per image per layer, 45" in out[1]
    )
    assert not store.exists() and not (tmp_path / "depthlab-out").exists()


def test_layer_costs_are_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def measure(model, depth):
        calls.append((model, depth))
        return 0.1

    first = plan.layer_costs(measure=measure)
    assert first == {"plain": 0.1 / (6 * 256), "bn": 0.1 / (6 * 256)} and calls
    n = len(calls)
    assert plan.layer_costs(measure=measure) == first and len(calls) == n  # from the cache
    assert plan.probe_depths(300) == [3, 6, 12, 24, 48, 96, 192, 300] and plan.probe_depths(9) == [3, 6, 9]


def test_the_dry_run_of_seeds_auto_counts_its_boundary_rechecks(tmp_path, capsys, monkeypatch):
    """It used to be an internal error: the plan multiplied by the string "auto"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plan, "layer_costs", lambda: {"plain": 30e-6, "bn": 45e-6})
    args = ["frontier", "--models", "cnn-elu", "--quick", "--dry-run", "--store", str(tmp_path / "f.db")]

    def plan_and_estimate(extra):
        assert main(args + extra) == 0
        return capsys.readouterr().out.splitlines()[:2]

    (_, one), (auto_plan, auto) = plan_and_estimate([]), plan_and_estimate(["--seeds", "auto"])
    assert "; 1 seed, then 3-5 at the boundary;" in auto_plan
    assert "4 to 24 boundary re-check trials per model" in auto  # 2 depths x (2 seeds .. 4 seeds x 3 lrs)
    assert "re-check" not in one and one.split(" (")[0] != auto.split(" (")[0]  # the rechecks cost more
