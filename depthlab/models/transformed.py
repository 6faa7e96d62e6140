"""DKS and TAT: activations transformed for the network's depth, through DeepMind's ``dks`` package.

Deep Kernel Shaping (Martens et al. 2021, arXiv:2110.01765) and Tailored Activation
Transformation (Zhang et al. 2022, ICLR) make a deep network without normalisation or skips
trainable by replacing each activation ``phi`` by ``output_scale * (phi(input_scale * x +
input_shift) + output_shift)``, with parameters solved so that the network's *kernel maps* (how
the mean squared value q and the correlation c of two inputs pass through the whole net at
initialisation) stay well behaved at any depth. Here the activations are selected by name in the
families that take ``act`` (``stages`` and ``mlp``)::

    create_model("stages", depth=30, act="tat-leaky-relu")
    create_model("mlp", depth=100, act="dks-tanh")

Names: ``dks-NAME`` and ``tat-NAME`` for NAME in tanh, softplus, leaky-relu, elu, gelu
(`TRANSFORMED`). The package's defaults are used: DKS with zeta = C'_f(1) = 1.5 and local
Q'(1) = 1; TAT with eta = C_f(0) = 0.9 for leaky ReLU and tau = C''_f(1) = 0.3 for smooth
activations. (ReLU itself is left out: TAT rejects it and DKS "highly discourages" it.)

The network's depth enters through the *subnetwork maximizing function* M_{f,r}(x) of the TAT
paper's appendix: the largest value, over all subnetworks f from the input to any layer, of the
network's map built from the per-layer map r. A plain chain (the ``stages`` CNN without skips,
the ``mlp``) of D nonlinear layers has M(x, r) = r applied D times (`chain_subnet_max_func`); it
is what the package's ResNet example computes for a net without shortcuts. Average pooling, the
linear readout and the optional batch norm are not nonlinear layers and are left out of the
count, as the package's example leaves out its max and mean pooling. With skips (``post``,
``rezero``, ``fixup``) or batch norm the activation is still built for the plain chain of
``depth`` layers: the package's residual rule assumes weighted sums (sqrt(1 - w^2) branch +
w shortcut) that these skips are not, so such combinations run but are outside the methods'
guarantees.

Three further requirements of the methods, all inside the model so that no data pipeline
changes (`PerLocationNorm`, `suo_init_`):

* **Data normalisation** (``input_norm="pln"``, the default): every input location must have
  q = 1. The model's first layer is the
  package's ``per_location_normalization`` (homogeneous coordinate "one", its default; run
  under ``torch.device(x.device)`` because the package makes that column on the default
  device): for an
  image, each pixel's channel vector gets a constant 1 appended and is rescaled to mean square 1
  (so a 1-channel image becomes 2 channels and the first conv takes C + 1 inputs); for the
  ``mlp``, each flattened example gets the 1 appended and is rescaled (per-example
  normalisation, 784 -> 785 for MNIST). ``input_norm="none"`` feeds the standardised input as
  it is (q = 1 on average over the data set only): for a 1-channel image the constant channel
  holds 76% of q at the input and makes the layer-1 outputs of different images alike; the
  measurement behind keeping the package's default is in docs/THEORY.md ("DKS/TAT input").
* **Weights**: the package's scaled-uniform-orthogonal (SUO) sampling, delta (centre tap only)
  for the 3x3 convs and plain for the linear layers, readout included; all biases zero. The rule:
  a DKS/TAT activation with ``init`` left at the family's default (``normal:0.05`` for stages,
  ``lecun-in`` for mlp) gets SUO, and the spec records ``init="suo"`` (so the stored config says
  what was sampled; an explicitly written default is read the same way); any other ``init``
  string is honoured as given, and ``init="suo"`` selects SUO for any activation. ``init="critical"`` is refused with a DKS/TAT
  activation (the mean-field theory has no table for it).
* The package's PyTorch ``scaled_uniform_orthogonal_`` reads a weight as ``[in, out, ...]`` (the
  JAX layout) while ``nn.Conv2d`` and ``nn.Linear`` store ``[out, in, ...]``: called directly its
  rescaling ``max(sqrt(out / in), 1)`` would be computed the wrong way round and an expanding
  layer (4 -> 8 channels) would halve q. `suo_init_` hands it the transposed view, so the layer
  preserves q as the method requires (tests/models/test_transformed.py checks it).

The package's own targets at every depth, or a refusal: a chain of D leaky ReLUs cannot reach
C_f(0) = eta = 0.9 when even the ReLU chain (negative slope 0, the most nonlinear) stays below
it, i.e. for D <= 12 (c_relu(12) = 0.897, c_relu(13) = 0.907); the package's solver then finds
no slope, and such a net is refused with one line (`ConfigError`: "outside TAT's range") where
it is validated, never built for a lower eta. DKS's target C'_f(1) = 1.5 and TAT's tau for
smooth activations are reached at every depth tried (3 to 96). A TAT leaky-ReLU spec records
the eta it is built for (``tat_eta``, always the package's 0.9).

The package is an optional extra (``pip install 'depthlab[dks]'``, which also installs
``absl-py``: dks 0.1.2 imports it without declaring it); without it a DKS/TAT activation fails
at ``validate()`` with one line. Nothing here imports ``dks`` at module level.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from ..errors import ConfigError

METHODS = {"dks": "DKS", "tat": "TAT"}
BASES = {"tanh": "tanh", "softplus": "softplus", "leaky-relu": "leaky_relu", "elu": "elu", "gelu": "gelu"}
TRANSFORMED = tuple(f"{m}-{b}" for m in METHODS for b in BASES)
SUO = "suo"  # the init name of the package's scaled-uniform-orthogonal sampling

DKS_ZETA = 1.5  # the package's default c_slope_1_target: C'_f(1) of the whole net
TAT_ETA = 0.9  # the package's default c_val_0_target: C_f(0) of a leaky-ReLU net
TAT_TAU = 0.3  # the package's default c_curve_target: C''_f(1) of a smooth-activation net

INSTALL_HINT = "pip install 'depthlab[dks]'"


def is_transformed(name) -> bool:
    """Whether ``name`` asks for a DKS/TAT activation (``dks-...`` / ``tat-...``)."""
    return isinstance(name, str) and name.partition("-")[0] in METHODS and "-" in name


def split_name(name: str) -> tuple[str, str]:
    """``"tat-leaky-relu"`` -> ``("TAT", "leaky_relu")``: the package's method and activation name."""
    if name not in TRANSFORMED:
        raise ConfigError(f"unknown activation {name!r}; the DKS/TAT ones are: {', '.join(TRANSFORMED)}")
    method, _, base = name.partition("-")
    return METHODS[method], BASES[base]


def _import_dks(name: str):
    try:
        from dks.pytorch import activation_transform, data_preprocessing, parameter_sampling_functions
    except ImportError:
        raise ConfigError(f"activation {name!r} needs the dks package: {INSTALL_HINT}") from None
    return activation_transform, data_preprocessing, parameter_sampling_functions


def check_transformed(name: str, init: str | None = None, depth: int | None = None) -> None:
    """validate() of a DKS/TAT activation: a known name, the package importable, a usable init,
    and with ``depth`` the package's targets reachable for a chain that deep (solved once, cached)."""
    split_name(name)
    _import_dks(name)
    if isinstance(init, str) and init.partition(":")[0] == "critical":
        raise ConfigError(
            f"init {init!r} has no critical point for activation {name!r}: leave init at its "
            f"default (the package's orthogonal sampling) or name another scheme"
        )
    if isinstance(depth, int) and depth > 0:
        transformed_activation(name, depth)


def chain_subnet_max_func(depth: int):
    """M_{f,r}(x) of a plain chain of ``depth`` nonlinear layers: ``r`` applied ``depth`` times."""

    def subnet_max_func(x, r_fn):
        for _ in range(depth):
            x = r_fn(x)
        return x

    return subnet_max_func


def target(name: str) -> str:
    """The package's default target that the transformation of ``name`` solves for, in words."""
    method, base = split_name(name)
    if method == "DKS":
        return f"C'_f(1) = {DKS_ZETA}"
    return f"C_f(0) = {TAT_ETA}" if base == "leaky_relu" else f"C''_f(1) = {TAT_TAU}"


def out_of_range_message(name: str, depth: int) -> str:
    """The one line that refuses a DKS/TAT net at a depth its target cannot be reached at."""
    method, _ = split_name(name)
    return (
        f"activation {name!r} at depth {depth} is outside {method}'s range: a chain of {depth} layers cannot "
        f"reach the package's target {target(name)} (its solver finds no parameters)"
    )


@functools.cache
def transformed_activation(name: str, depth: int):
    """The package's transformed activation (a callable on tensors) for a chain of ``depth``
    layers, with the package's own targets (`target`); a depth where they cannot be reached is
    refused (`ConfigError`), never solved for other targets."""
    if not isinstance(depth, int) or depth <= 0:
        raise ConfigError(f"a DKS/TAT activation needs a positive network depth, got {depth!r}")
    method, base = split_name(name)
    activation_transform, _, _ = _import_dks(name)
    try:
        with warnings.catch_warnings():  # the solver's quadrature overflows harmlessly in its tails
            warnings.simplefilter("ignore", RuntimeWarning)
            acts = activation_transform.get_transformed_activations(
                [base], method=method, subnet_max_func=chain_subnet_max_func(depth)
            )
    except ValueError:  # the package's solver found no parameters
        raise ConfigError(out_of_range_message(name, depth)) from None
    return acts[base]


class TransformedActivation(nn.Module):
    """A DKS/TAT activation as a module (rebuilt from ``(name, depth)`` when unpickled)."""

    def __init__(self, name: str, depth: int):
        super().__init__()
        self.name, self.depth = name, depth
        self.fn = transformed_activation(name, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"{self.name}, depth={self.depth}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("fn", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.fn = transformed_activation(self.name, self.depth)


# How a DKS/TAT net takes its input (the spec's ``input_norm``): "pln", the default, is the
# package's per-location normalisation with its homogeneous coordinate 1 (one more channel);
# "none" feeds the data set's standardised input as it is (q = 1 on average over the data, not
# at every location). The default is recorded as None, so that stored runs keep their keys; the
# choice for 1-channel images is measured in docs/THEORY.md ("DKS/TAT input").
INPUT_NORMS = ("pln", "none")
DEFAULT_INPUT_NORM = "pln"


def resolve_input_norm(value: str | None) -> str | None:
    """The spec's recorded ``input_norm``: None for the default (`DEFAULT_INPUT_NORM`), else as given."""
    return None if value == DEFAULT_INPUT_NORM else value


def check_input_norm(value: str | None, act) -> None:
    """validate() of ``input_norm``: one of `INPUT_NORMS`, and only with a DKS/TAT activation."""
    if value is None:
        return
    if not is_transformed(act):
        raise ConfigError(f"input_norm is for DKS/TAT activations, not {act!r}")
    if value not in INPUT_NORMS:
        raise ConfigError(f"unknown input_norm {value!r}; choose one of: {', '.join(INPUT_NORMS)}")


def input_layer(spec, *, flatten: bool = False) -> tuple[nn.Module | None, int]:
    """The first layer a spec's input goes through and how many inputs it adds: for a DKS/TAT
    activation at the default input_norm the package's normalisation (`PerLocationNorm`, one
    more), else nothing."""
    if not is_transformed(spec.act) or spec.input_norm is not None:
        return None, 0
    return PerLocationNorm(spec.act, flatten=flatten), PerLocationNorm.EXTRA


def resolve_tat_eta(value: float | None, act) -> float | None:
    """The spec's recorded ``tat_eta``: the package's eta for a TAT leaky-ReLU net, None otherwise.
    Recorded so that the config hash says which target a net was built for: a stored TAT net
    without it (built with an eta lowered at depth <= 20) is not reused as one of these."""
    return TAT_ETA if value is None and act == "tat-leaky-relu" else value


def check_tat_eta(value: float | None, act) -> None:
    """validate() of ``tat_eta``: only on a TAT leaky-ReLU net, and only the package's value."""
    if value is None:
        return
    if act != "tat-leaky-relu":
        raise ConfigError(f"tat_eta is for the tat-leaky-relu activation, not {act!r}")
    if value != TAT_ETA:
        raise ConfigError(f"tat_eta is the package's C_f(0) target {TAT_ETA}, got {value!r}")


class PerLocationNorm(nn.Module):
    """The package's per-location normalisation as a first layer: NCHW images are normalised per
    pixel over the channels, or with ``flatten`` (and for any input that is not 4-d) flattened and
    normalised per example; a homogeneous coordinate 1 is appended first (``EXTRA`` more channels /
    features out than in)."""

    EXTRA = 1

    def __init__(self, name: str = "dks", *, flatten: bool = False):
        super().__init__()
        self.flatten = flatten
        _, self._pre, _ = _import_dks(name)

    def extra_repr(self) -> str:
        return "per example" if self.flatten else "per location"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.dim() == 4 and not self.flatten
        x = x.permute(0, 2, 3, 1) if image else x.flatten(1)
        with torch.device(x.device):  # the package makes its column of ones on the default device
            out = self._pre.per_location_normalization(x, homog_mode="one").to(x.dtype)
        return out.permute(0, 3, 1, 2).contiguous() if image else out

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_pre", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        _, self._pre, _ = _import_dks("dks")


def suo_init_(layer: nn.Module, *, delta: bool = True) -> None:
    """The package's scaled-uniform-orthogonal sampling for a conv (delta: centre tap only) or
    linear layer, bias zero. The package reads weights as [in, out, ...]: it gets the transposed view."""
    _, _, sampling = _import_dks(SUO)
    with torch.no_grad(), warnings.catch_warnings():
        # it indexes the centre tap with a list, which torch >= 2.9 warns about (the result is
        # checked in tests/models/test_transformed.py)
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence")
        sampling.scaled_uniform_orthogonal_(layer.weight.detach().transpose(0, 1), delta=delta)
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()


def resolve_init(init: str, act: str, default: str) -> str:
    """The init rule: a DKS/TAT activation with ``init`` at the family default gets ``suo``."""
    return SUO if is_transformed(act) and init == default else init
