"""Fuzzing the parsers with hypothesis (issue 5): whatever a user types or a file contains,
the schedule parser, the model spec/override parser (presets, axes, init strings, ``--param``),
the learning-rate and depth grids, the idx and CIFAR readers and the output-path guards either
succeed or raise the error the CLI turns into one line (ConfigError / DataError), never
another exception and never a hang (every example has a deadline).

Derandomised (a fixed seed per test) so CI is repeatable; example counts are modest."""

from __future__ import annotations

import math
import struct
from datetime import timedelta

import numpy as np
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from depthlab.cli.app import model_overrides
from depthlab.data.readers import _IDX_DTYPES, parse_cifar_batch, parse_idx
from depthlab.depth_frontier.protocol import FrontierConfig, parse_depths, parse_lrs
from depthlab.engine.memory import MAX_DEPTH
from depthlab.engine.schedule import Schedule, parse_schedule
from depthlab.errors import ConfigError, DataError
from depthlab.models import PRESETS, create_model, resolve_model
from depthlab.models.init import init_conv_, parse_init
from depthlab.report.outputs import safe_child, safe_output_dir

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FEW = settings(FUZZ, max_examples=80)


def tokens(*words: str, max_size: int = 12):
    """Strings glued from grammar tokens and random characters: they reach deeper than pure noise."""
    return st.lists(st.one_of(st.sampled_from(words), st.text(max_size=3)), max_size=max_size).map("".join)


NUMBERS = ("0", "1", "2", "3", "0.1", "1e-3", "1e400", "-1", ".5", "5.", "inf", "nan", "9" * 30, "١")

# ---------------------------------------------------------------------------------------------
# Schedules


@st.composite
def schedule_texts(draw):
    """Schedules from the grammar (numbers drawn from good and bad ones), sometimes mutated."""
    good = st.sampled_from(("1", "2", "3", "10", "0.1", "0.01", "1e-3", "0.5", "5.", ".5"))
    num = st.one_of(
        good,
        good,
        good,
        st.sampled_from(NUMBERS),
        st.integers(-5, 300).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
    )
    prefix = draw(st.sampled_from(("", "warmup:{}+", "hold:{}@{}+", "warmup:{}+warmup:{}+")))
    body = draw(
        st.sampled_from(
            (
                "constant",
                "cosine",
                "multistep:{}",
                "multistep:{},{}",
                "multistep:{},{}:{}",
                "{}@{}",
                "{}@{},{}@{}",
                "piecewise:{}@{},{}@{},{}@{}",
            )
        )
    )
    text = (prefix + body).format(*(draw(num) for _ in range(12)))
    if draw(st.booleans()):  # one random edit
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=2)) + text[i + draw(st.integers(0, 2)) :]
    return text


@FUZZ
@given(
    st.one_of(
        st.text(),
        schedule_texts(),
        schedule_texts(),
        tokens(
            "warmup:", "hold:", "multistep:", "piecewise:", "cosine", "constant", "@", ",", "+", ":", *NUMBERS
        ),
    )
)
@example("multistep:" + "9" * 5000)  # int() refuses huge digit strings with ValueError
@example("2@0.07,3@0.01")
@example("warmup:2+multistep:3,5:0.5")
def test_parse_schedule_gives_a_schedule_or_config_error(text):
    try:
        schedule = parse_schedule(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        event("config error")
        return
    event(f"parsed: {schedule.kind}")
    assert isinstance(schedule, Schedule)
    for epoch in (0.0, 0.5, 1.0, 3.7, 100.0):
        lr = schedule.lr_at(epoch, 0.1, 10)
        assert isinstance(lr, float) and lr >= 0 and not math.isnan(lr)


# ---------------------------------------------------------------------------------------------
# Model specs: preset names, axis overrides, init strings, --param KEY=VALUE

AXES = ("depth", "act", "init", "norm", "skip", "heads", "width", "n", "shortcut", "bn_impl", "bn")
INITS = (
    "normal:",
    "scaled:",
    "lecun-in",
    "lecun-out",
    "glorot",
    "he",
    "orthogonal",
    "torch-default",
    "delta-orthogonal",
    "delta-orthogonal:",
    "critical",
    ":",
    ",",
    *NUMBERS,
)


@FUZZ
@given(st.one_of(st.text(), tokens(*INITS, max_size=6)))
@example("normal:1e200")  # the variance overflows
@example("delta-orthogonal:critical")
def test_parse_init_gives_a_spec_or_config_error_and_the_spec_initialises(scheme):
    try:
        spec = parse_init(scheme)
    except ConfigError:
        return
    conv = torch.nn.Conv2d(4, 6, 3)
    init_conv_(conv, scheme, act="tanh", depth=9)
    assert spec.kind and torch.isfinite(conv.weight).all() and torch.isfinite(conv.bias).all()


VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        (
            "3",
            "6",
            "9",
            "12",
            "0",
            "-3",
            "1e9",
            "tanh",
            "elu",
            "relu",
            "bn",
            "none",
            "post",
            "rezero",
            "fixup",
            "1",
            "2",
            "0.5",
            "inf",
            "nan",
            "true",
            "false",
            "A",
            "B",
            "torch",
            "scratch",
            "normal:0.05",
            "lecun-in",
            "critical",
            "delta-orthogonal",
        )
    ),
)


@FEW
@given(
    st.one_of(st.sampled_from(sorted(PRESETS)), st.text(max_size=12)),
    st.dictionaries(st.one_of(st.sampled_from(AXES), st.text(max_size=6)), VALUES, max_size=4),
)
@example("cnn-tanh", {"width": "inf"})  # passed validation, then overflowed in the builder
@example("cnn-elu-multihead", {"depth": "6", "init": "delta-orthogonal"})
def test_resolve_model_gives_a_spec_or_config_error_and_the_spec_builds(name, overrides):
    try:
        family, spec = resolve_model(name, **overrides)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        event("config error")
        return
    # Building and running a valid spec must work too (small ones: a depth of 1e9 is legal but slow).
    width = getattr(spec, "width", 1)
    if getattr(spec, "depth", 0) > 24 or (math.isfinite(width) and width > 4) or getattr(spec, "n", 0) > 3:
        return
    shape = (1, 28, 28) if "mnist" in family.datasets else (3, 32, 32)
    model = create_model(name, shape, 10, **overrides)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *shape))
    out = out[-1] if isinstance(out, (list, tuple)) else out
    assert out.shape == (2, 10)
    event("built and ran")


@FUZZ
@given(
    st.lists(st.one_of(st.text(max_size=12), tokens("=", "-", "_", *AXES, *NUMBERS, max_size=4)), max_size=4)
)
def test_param_flags_parse_to_overrides_or_config_error(params):
    try:
        overrides = model_overrides(params=tuple(params))
    except ConfigError:
        return
    assert all(isinstance(k, str) and k for k in overrides)
    try:
        resolve_model("cnn-tanh", **overrides)
    except ConfigError:
        pass


# ---------------------------------------------------------------------------------------------
# Learning-rate and depth grids


@FUZZ
@given(st.one_of(st.text(), tokens("log:", ":", ",", "-", *NUMBERS, "100000000")))
@example("log:0.001:1:100000000")  # would build 1e8 floats
def test_lr_grid_parses_or_config_error(text):
    try:
        lrs = parse_lrs(text)
    except ConfigError:
        return
    assert 0 < len(lrs) <= 1000 and all(math.isfinite(v) and v > 0 for v in lrs)


@FUZZ
@given(st.one_of(st.text(), tokens(",", "-", *NUMBERS)))
def test_depth_list_parses_or_config_error(text):
    try:
        depths = parse_depths(text)
    except ConfigError:
        return
    assert depths and all(isinstance(d, int) for d in depths)
    try:  # which depths a model takes is the config's check: a built-in family's are positive multiples of 3
        FrontierConfig(depths=depths, max_depth=max(3, -(-max(depths) // 3) * 3)).validate_models(
            ["cnn-tanh"]
        )
    except ConfigError:
        assert any(d <= 0 or d % 3 for d in depths) or max(depths) > MAX_DEPTH
        return
    assert all(d > 0 and d % 3 == 0 for d in depths)


# ---------------------------------------------------------------------------------------------
# The idx reader (and the CIFAR batch reader): random bytes, and headers that lie


@st.composite
def idx_payloads(draw):
    """A header with a plausible magic and random dims, then a data part of a random length
    (often exactly the length the header announces)."""
    zero = draw(st.sampled_from((0, 0, 0, 1, 0xFFFF)))
    code = draw(st.one_of(st.sampled_from(sorted(_IDX_DTYPES)), st.integers(0, 255)))
    ndim = draw(st.integers(0, 6))
    dims = draw(
        st.lists(st.one_of(st.integers(0, 5), st.integers(0, 2**32 - 1)), min_size=ndim, max_size=ndim)
    )
    header = struct.pack(">HBB", zero, code, ndim) + struct.pack(">" + "I" * ndim, *dims)
    itemsize = np.dtype(_IDX_DTYPES[code]).itemsize if code in _IDX_DTYPES else 1
    announced = math.prod(dims) * itemsize
    size = (
        draw(st.one_of(st.just(announced), st.integers(0, 64)))
        if announced <= 4096
        else draw(st.integers(0, 64))
    )
    cut = draw(st.integers(0, len(header)))  # sometimes the header itself is truncated
    body = draw(st.binary(min_size=size, max_size=size))
    return header[:cut] if draw(st.booleans()) and cut < len(header) else header + body


@FUZZ
@given(st.one_of(st.binary(max_size=64), idx_payloads()))
@example(
    struct.pack(">HBB", 0, 0x08, 4) + struct.pack(">IIII", 65536, 65536, 65536, 65536)
)  # 2^64 wraps to 0 in int64
@example(struct.pack(">HBB", 0, 0x0D, 2) + struct.pack(">II", 2, 2) + bytes(16))
def test_parse_idx_gives_an_array_or_data_error(payload):
    try:
        array = parse_idx(payload, "fuzz")
    except DataError as exc:
        assert str(exc).startswith("fuzz: ")
        event("data error")
        return
    event("parsed")
    assert isinstance(array, np.ndarray) and 1 <= array.ndim <= 4


@FEW
@given(st.binary(max_size=256))
@example(b"\x80\x02}q\x00.")  # an empty dict
@example(b"cos\nsystem\n(S'true'\ntR.")  # code: refused by the restricted unpickler
def test_cifar_batch_reader_gives_arrays_or_data_error(payload):
    try:
        images, labels = parse_cifar_batch(payload, "fuzz")
    except DataError:
        return
    assert images.shape[1:] == (3, 32, 32) and len(images) == len(labels)


# ---------------------------------------------------------------------------------------------
# Output paths: a name or a relative folder can never land outside its output folder


@FUZZ
@given(st.one_of(st.text(max_size=20), tokens("..", "/", "\\", ".", "a", "\x00", "~", max_size=6)))
@example("../x")
@example("..")
def test_safe_child_stays_in_its_folder(tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "out"
    try:
        path = safe_child(folder, name)
    except ConfigError:
        return
    assert path.parent == folder and path.name == name


@FEW
@given(st.one_of(st.text(max_size=16), tokens("..", "/", ".", "a", "b", max_size=8)))
@example("../../etc")
@example("/tmp")
@example("a/../../b")
def test_safe_output_dir_with_a_base_stays_inside_it(tmp_path_factory, relative):
    base = tmp_path_factory.getbasetemp() / "base"
    base.mkdir(exist_ok=True)
    try:
        path = safe_output_dir(relative, base=base)
    except ConfigError:
        return
    root = base.resolve()
    assert path == root or root in path.parents
    assert path.is_dir()
