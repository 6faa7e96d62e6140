"""What a depth-frontier search returns: the verdict at one depth (`DepthResult`), one model's
frontier (`ModelFrontier`) and a search over several models (`FrontierResult`), with their JSON,
table, frame and plot forms. How the search finds them is `depthlab.depth_frontier.search`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .criterion import Cell, TrialVerdict
from .points import optimizer_of, plain_lr, point_key
from .protocol import FrontierConfig


@dataclass
class DepthResult:
    """The verdict at one depth: trainable or not, with the lr that trained it (if any)."""

    depth: int
    trainable: bool
    lr: float | None  # the first lr (in search order) at which a majority of seeds trained
    error: float | None  # the median seed error at that lr; when failing, the best over lrs
    fraction: float  # fraction of seeds that trained at that lr (best over lrs when failing)
    epochs: float | None  # median epochs to meet the criterion at that lr
    trials: list[TrialVerdict] = field(default_factory=list)

    def to_dict(self) -> dict:
        cells: dict[str, dict] = {}
        for t in self.trials:
            cell = cells.setdefault(point_key(t.lr), {"trained": 0, "seeds": 0, "errors": []})
            cell["trained"] += t.trained
            cell["seeds"] += 1
            cell["errors"].append(t.error)
        return {
            "trainable": self.trainable,
            "lr": plain_lr(self.lr),
            **_optimizer_entry(self.lr),
            "error": self.error,
            "fraction": self.fraction,
            "epochs": self.epochs,
            "lrs_tried": cells,
        }


def _optimizer_entry(lr) -> dict:
    """``{"optimizer": name}`` for a point that names its optimizer, else nothing (the JSON of a
    search with SGD alone is as it was; its optimizer is in the config)."""
    name = optimizer_of(lr)
    return {"optimizer": name} if name else {}


@dataclass
class ModelFrontier:
    model: str
    max_trainable_depth: int | None
    lr: float | None
    error: float | None
    first_failing_depth: int | None
    fraction: float | None
    depths: dict[int, DepthResult]
    monotone: bool
    seconds: float
    trials: int
    trials_reused: int
    next_trial: Cell | None = (
        None  # (depth, lr, seed) the search needs next (lr: a search point); None: finished
    )
    trial_seconds: float = 0.0  # training time of its trials (when they were trained, reused or not)
    band: tuple[int | None, int | None] | None = (
        None  # --seeds auto: (every seed trains, some seed trains) to here
    )
    label: str | None = None  # --seeds auto: "66 [51–72]"

    @property
    def capped(self) -> bool:
        """The search finished with every depth it tried trainable: the frontier is at least the cap."""
        return self.next_trial is None and bool(self.max_trainable_depth) and self.first_failing_depth is None

    def to_dict(self) -> dict:
        nxt = None
        if self.next_trial is not None:
            depth, lr, seed = self.next_trial
            nxt = {"depth": depth, "lr": plain_lr(lr), "seed": seed, **_optimizer_entry(lr)}
        return {
            "model": self.model,
            "max_trainable_depth": self.max_trainable_depth,
            "capped": self.capped,
            "lr": plain_lr(self.lr),
            **_optimizer_entry(self.lr),
            "error": self.error,
            "first_failing_depth": self.first_failing_depth,
            "fraction": self.fraction,
            "monotone": self.monotone,
            "seconds": round(self.seconds, 1),
            "trials": self.trials,
            "trials_reused": self.trials_reused,
            "next_trial": nxt,
            "trial_seconds": round(self.trial_seconds, 1),
            **(
                {
                    "band": list(self.band),
                    "label": self.label,
                    "seed_fractions": {str(d): r.fraction for d, r in sorted(self.depths.items())},
                }
                if self.band is not None
                else {}
            ),
            "depths": {str(d): r.to_dict() for d, r in sorted(self.depths.items())},
        }


@dataclass
class FrontierResult:
    config: FrontierConfig
    models: list[ModelFrontier]
    seconds: float

    def to_dict(self) -> dict:
        config = asdict(self.config)
        lrs = config["lrs"]
        config["lrs"] = (
            {name: list(grid) for name, grid in lrs.items()} if isinstance(lrs, dict) else list(lrs)
        )
        config["optimizers"] = list(config["optimizers"])
        return {
            "config": config,
            "seconds": round(self.seconds, 1),
            "models": [m.to_dict() for m in self.models],
        }

    def plot(self, kind: str = "depth", *, ax=None):
        """The frontier as a matplotlib Figure (`depthlab.depth_frontier.outputs.plot_frontier`): ``"depth"``
        bars of each model's max trainable depth, ``"error"`` the best error at each depth tried."""
        from .outputs import plot_frontier

        return plot_frontier(self, kind, ax=ax)

    def _table(self) -> tuple[str, tuple, list]:
        from .outputs import PRINTED_HEADERS, printed_rows

        n = len(self.models)
        return (
            f"FrontierResult: {n} model{'s' * (n != 1)}, {self.seconds:.1f} s",
            PRINTED_HEADERS,
            printed_rows(self),
        )

    def __repr__(self) -> str:
        """The printed table of ``depthlab frontier``, one line per model (the per-depth map is
        in ``.models`` and ``to_dict()``)."""
        from ..report.tables import format_table

        title, headers, rows = self._table()
        return f"{title}\n{format_table(headers, rows)}"

    def _repr_html_(self) -> str:
        from ..report.tables import html_table

        title, headers, rows = self._table()
        return html_table(headers, rows, caption=title)

    def to_frame(self):
        """One row per model: ``model``, ``max_trainable_depth``, ``capped`` (`ModelFrontier.capped`:
        the search finished and every depth it tried trains), ``lr``, ``error`` (a fraction), ``first_failing_depth``,
        ``fraction``, and ``optimizer`` (the one that trained) when the search names its optimizer
        (`FrontierConfig.names_optimizer`: anything but SGD alone)."""
        from ..report.tables import data_frame

        named = self.config.names_optimizer
        return data_frame(
            {
                "model": m.model,
                "max_trainable_depth": m.max_trainable_depth,
                "capped": m.capped,
                "lr": plain_lr(m.lr),
                "error": m.error,
                "first_failing_depth": m.first_failing_depth,
                "fraction": m.fraction,
                **({"optimizer": optimizer_of(m.lr)} if named else {}),
            }
            for m in self.models
        )
