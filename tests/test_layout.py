"""The package's shape (issue #20, "One engine"): small modules, one training engine (one place that
differentiates a loss), imports pointing down the layers, and one precision policy for every device."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depthlab.engine.config import TrainConfig
from depthlab.engine.device import precision_policy
from depthlab.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1] / "depthlab"
MAX_FUNCTION_LINES = 60  # a function read at a glance; a module is split by concept, not by a line count


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def _long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of each function or method, nested ones counted in their parent, over ``limit``."""
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [(n.name, n.end_lineno - n.lineno + 1) for n in nodes if n.end_lineno - n.lineno + 1 > limit]


def test_no_function_is_over_the_line_limit():
    long = {
        f"{p.relative_to(PACKAGE)}:{name}": n
        for p, text in _sources().items()
        for name, n in _long_functions(text, MAX_FUNCTION_LINES)
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_function_length_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def f():\n{body}\n", MAX_FUNCTION_LINES) == [("f", MAX_FUNCTION_LINES + 1)]
    assert _long_functions(f"def f():\n{body}\n", MAX_FUNCTION_LINES + 1) == []


# Test files that check a promise of the whole project rather than one package (DEVELOPERS.md).
WHOLE_PROJECT_TESTS = {
    "test_bad_input.py",
    "test_fuzz.py",
    "test_gitignore.py",
    "test_imports.py",
    "test_layout.py",
    "test_reliability.py",
    "test_security.py",
}


def test_the_tests_mirror_the_packages():
    tests = Path(__file__).resolve().parent
    units = {p.stem for p in PACKAGE.iterdir() if (p / "__init__.py").exists() or p.suffix == ".py"}
    units.add("benchmarks")  # tests of the repository's benchmarks/ scripts mirror that folder
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= units, f"test folders that mirror no package or module: {sorted(folders - units)}"
    assert {p.name for p in tests.glob("test_*.py")} <= WHOLE_PROJECT_TESTS, (
        "a package's tests go in tests/<package>/"
    )
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "pytest imports test files by name: names must be unique"


def test_backward_is_called_from_at_most_two_places():
    """Single runs, fused groups, the lr range test and the diagnostics share their step."""
    calls = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p, text in _sources().items()
        for i, line in enumerate(text.splitlines(), 1)
        if re.search(r"\.backward\(", line)
    ]
    assert 1 <= len(calls) <= 2, calls


def test_imports_point_down_the_layers():
    """The import-linter contract of pyproject.toml (no import cycle, no upward import) is kept."""
    exe = Path(sys.executable).with_name("lint-imports")
    lint = str(exe) if exe.exists() else shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed")
    done = subprocess.run(
        [lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "precision,autocast,tf32", [("fp32", None, False), ("bf16", torch.bfloat16, False), ("tf32", None, True)]
)
def test_a_cuda_run_is_fp32_unless_its_config_asks_otherwise(precision, autocast, tf32):
    """The policy for a CUDA device (a device type only: no GPU needed): no autocast unless bf16."""
    assert TrainConfig(device="cuda").precision == "fp32"  # the default, on every device
    policy = precision_policy(torch.device("cuda"), precision)
    assert policy.autocast is autocast and policy.amp == (autocast is not None) and policy.tf32 is tf32
    cpu = precision_policy(torch.device("cpu"), precision) if precision != "tf32" else None
    assert cpu is None or (cpu.autocast is autocast and not cpu.tf32)


def test_tf32_and_unknown_precisions_are_refused_where_they_do_not_apply():
    with pytest.raises(ConfigError, match="tf32 needs a CUDA device"):
        precision_policy(torch.device("cpu"), "tf32")
    with pytest.raises(ConfigError, match="unknown precision"):
        precision_policy(torch.device("cuda"), "fp16")


def test_the_precision_is_in_the_hash_only_when_not_the_default():
    base = TrainConfig()
    assert (
        TrainConfig(precision="fp32").hash() == base.hash()
        and TrainConfig(precision="bf16").hash() != base.hash()
    )


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_a_cpu_step_computes_its_activations_in_the_configs_precision(precision, dtype):
    from fakedata import synthetic_dataset

    from depthlab.engine.setup import set_up
    from depthlab.engine.stepper import SingleStepper

    config = TrainConfig(
        model="cnn-tanh",
        model_args={"depth": 3},
        train_size=64,
        test_size=32,
        batch_size=32,
        epochs=1,
        device="cpu",
        precision=precision,
    )
    config.validate()
    stepper = SingleStepper(set_up(config, synthetic_dataset(64, 32)))
    seen: list[torch.dtype] = []
    convs = [m for m in stepper.model.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [c.register_forward_hook(lambda m, i, out: seen.append(out.dtype)) for c in convs]
    batch = {config.seed: next(iter(stepper.setup.train_batches[config.seed]))}
    try:
        stepper.step(batch, 0, 1)
    finally:
        for h in handles:
            h.remove()
    assert seen and set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in stepper.model.parameters())  # weights stay fp32
    assert torch.isfinite(stepper.loss_sum)  # a finite loss was summed
