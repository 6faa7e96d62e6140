"""`depthlab.theory` is the pure maths of the mean-field theory, at the bottom floor: it imports
neither torch nor matplotlib, and every public name is importable from the package itself."""

import subprocess
import sys

import depthlab.theory as theory
from depthlab.theory import depth_scales, maps, phase_diagram


def test_the_theory_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys, depthlab.theory; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_each_public_name_comes_from_its_concepts_module():
    homes = {
        "q_star": maps,
        "c_star": maps,
        "chi_1": maps,
        "correlation_map": maps,
        "mean_field_point": depth_scales,
        "correlation_depth": depth_scales,
        "correlation_depths": depth_scales,
        "phase_grid": phase_diagram,
        "critical_sigma_w2": phase_diagram,
        "critical_init": phase_diagram,
    }
    for name, module in homes.items():
        assert getattr(theory, name) is getattr(module, name)
    assert all(hasattr(theory, name) for name in theory.__all__)


def test_correlation_depths_are_the_points_xi():
    xs = theory.correlation_depths("tanh", 0.05, [1.0, 2.5])
    assert xs == [theory.mean_field_point("tanh", w, 0.05).xi for w in (1.0, 2.5)]
    assert 0 < xs[0] < float("inf") and 0 < xs[1] < float("inf")
