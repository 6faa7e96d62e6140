"""Your own model: a factory ``build(depth: int, **params) -> nn.Module`` wherever a preset name goes.

A factory travels as its source text (the whole file it is defined in), not as a reference to
an importable module: worker processes and Ray tasks rebuild it from that text, so a function in
a file, in a notebook cell or on another machine runs the same everywhere, and the store records
the source's SHA-256 so that an edited factory never reuses stale trials.

The network takes the dataset's batches ``(N, C, H, W)`` and returns 10 logits ``(N, 10)``, or
a list of such tensors for several loss heads (the last one is the prediction). Which depths are
valid is the factory's business; the frontier searches multiples of ``depth_step`` (1 unless
the function has an attribute ``depth_step``, e.g. ``build.depth_step = 3``, or the frontier is
given ``depth_step=`` / ``--depth-step``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.util
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, UserCodeExit, users_code


class FactoryError(Exception):
    """A factory that raised, returned something that is not a module, or produced outputs of
    the wrong shape. Not a `ConfigError`: inside a sweep it fails that trial (its reason one
    line), while the command line checks the smallest depth first and reports it as bad input."""


@dataclass(frozen=True)
class ModelFactory:
    """A model factory by its source: ``function`` defined in ``source`` (read from ``origin``)."""

    function: str
    source: str = field(repr=False)
    origin: str = "<python>"  # where the source came from, for messages; not part of the identity
    depth_step: int = 1

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def name(self) -> str:
        """A label for tables and file names: ``nets.build`` for ``build`` in ``nets.py``, ``build``
        for one defined in a notebook."""
        return f"{Path(self.origin).stem}.{self.function}" if self.origin.endswith(".py") else self.function

    def __str__(self) -> str:
        return self.name

    def identity(self) -> dict:
        """What the store records in the run's config and hashes: the function and its source's hash."""
        return {"factory": self.function, "source_sha256": self.sha256, "origin": self.origin}

    @classmethod
    def from_file(cls, spec: str) -> ModelFactory:
        """``"path/to/nets.py:build"`` (the function defaults to ``build``)."""
        path_text, _, function = (
            spec.rpartition(":") if spec.rpartition(":")[2].isidentifier() else (spec, "", "")
        )
        path = Path(path_text or spec)
        function = function or "build"
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        factory = cls(function, source, str(path))
        fn = factory.load()
        return cls(function, source, str(path), _depth_step(fn, str(path)))

    @classmethod
    def from_callable(cls, fn: Callable) -> ModelFactory:
        """A function defined in a file (its whole file is the source) or in a notebook cell or
        other interactive session (its own source: it must then import what it uses itself)."""
        if isinstance(fn, ModelFactory):
            return fn
        if not callable(fn) or not getattr(fn, "__name__", "").isidentifier():
            raise ConfigError(
                f"a model must be a preset name or a function build(depth, **params), got {fn!r}"
            )
        module = inspect.getmodule(fn)
        file = getattr(module, "__file__", None)
        if (
            file
            and Path(file).is_file()
            and module.__name__ != "__main__"
            and "<locals>" not in fn.__qualname__
        ):
            source, origin = Path(file).read_text(), file
        else:
            try:
                source, origin = textwrap.dedent(inspect.getsource(fn)), "<python>"
            except (OSError, TypeError):
                raise ConfigError(
                    f"cannot read the source of {fn.__name__!r} (a script piped to stdin or typed "
                    "at the >>> prompt keeps none, and workers rebuild the model from its source): "
                    "save the script as a file and run that, define the function in an imported "
                    f"module or a notebook cell, or pass ModelFactory.from_file('nets.py:"
                    f"{fn.__name__}')"
                ) from None
        return cls(fn.__name__, source, origin, _depth_step(fn, origin))

    def boolean_params(self) -> tuple[str, ...]:
        """The keyword parameters with a True/False default: the toggles ``depthlab ablate`` switches."""
        try:
            params = inspect.signature(self.load()).parameters.values()
        except (TypeError, ValueError):
            return ()
        return tuple(p.name for p in params if isinstance(p.default, bool))

    def load(self) -> Callable[..., nn.Module]:
        """The function itself, executed from the source (once per process and source)."""
        return _load(self.source, self.function, self.origin)

    def build(self, depth: int, input_shape=(1, 28, 28), num_classes: int = 10, **params: Any) -> nn.Module:
        """Call the factory and check what it returns on a zero batch of ``input_shape``."""
        try:
            with users_code(f"{self.name}(depth={depth})"):
                model = self.load()(depth, **params)
        except (FactoryError, UserCodeExit):
            raise
        except Exception as exc:
            raise FactoryError(
                f"{self.name}(depth={depth}) raised {type(exc).__name__}: {exc}"[:300]
            ) from None
        if not isinstance(model, nn.Module):
            raise FactoryError(
                f"{self.name}(depth={depth}) returned {type(model).__name__}, not a torch.nn.Module"
            )
        check_outputs(model, self.name, depth, tuple(input_shape), num_classes)
        return model


def check_outputs(model: nn.Module, name: str, depth: int, input_shape: tuple, num_classes: int) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), users_code(f"{name}(depth={depth})'s network, on a batch of zeros,"):
            out = model(torch.zeros(2, *input_shape))
    except UserCodeExit:
        raise
    except Exception as exc:
        raise FactoryError(
            f"{name}(depth={depth}) fails on a batch of shape (N, {', '.join(map(str, input_shape))}): "
            f"{type(exc).__name__}: {exc}"[:300]
        ) from None
    finally:
        model.train(was_training)
    outs = out if isinstance(out, (list, tuple)) else [out]
    for o in outs:
        if not isinstance(o, torch.Tensor) or tuple(o.shape) != (2, num_classes):
            shape = tuple(o.shape[1:]) if isinstance(o, torch.Tensor) else type(o).__name__
            raise FactoryError(
                f"{name}(depth={depth}) must return {num_classes} logits per image (N, {num_classes}) "
                f"or a list of such, got {shape} per image"
            )


class _SourceLoader(importlib.abc.SourceLoader):
    """Imports a module from source text: the user's model file, run as ``python nets.py`` would."""

    def __init__(self, source: str, origin: str):
        self.source, self.origin = source, origin

    def get_filename(self, fullname: str) -> str:
        return self.origin

    def get_data(self, path) -> bytes:
        return self.source.encode()


@functools.lru_cache(maxsize=32)
def _load(source: str, function: str, origin: str) -> Callable[..., nn.Module]:
    name = f"depthlab_factory_{hashlib.sha256(source.encode()).hexdigest()[:12]}"
    loader = _SourceLoader(source, origin)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader, origin=origin))
    try:
        with users_code(f"{origin}, when loaded,"):
            loader.exec_module(module)
    except UserCodeExit:
        raise
    except Exception as exc:
        raise ConfigError(f"{origin}: {type(exc).__name__}: {exc}"[:300]) from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"{origin} defines no function {function!r}")
    return fn


def _depth_step(fn: Callable, origin: str) -> int:
    step = getattr(fn, "depth_step", 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ConfigError(f"{origin}: depth_step must be a positive integer, got {step!r}")
    return step


def as_model(model) -> str | ModelFactory:
    """What a config holds as its model: a preset name as it is, anything else (a function
    ``build(depth, **params)`` or a `ModelFactory`) as a `ModelFactory`."""
    return model if isinstance(model, str) else ModelFactory.from_callable(model)
