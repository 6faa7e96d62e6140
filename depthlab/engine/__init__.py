"""The training engine: the run config, its set-up, the training loop and its checkpoints.

One set-up, one loop: `setup.set_up` (device, precision policy, data splits and batchers,
evaluation points; `Setup.new_model` builds the seeded network) and `setup.forward_backward` (the
one backward pass; `setup.train_step` the one optimisation step around it) serve every trainer.
`loop.run_epochs` is the one epoch loop (steps, evaluation points, epoch metrics); what steers or
follows a run is a `loop.LoopCallback` (divergence, monitors, rank cancellation, mid-epoch
checkpoints and resumption in `loop`; progress, TensorBoard and `LambdaCallback` in
`callbacks`); it drives a stepper (`stepper.SingleStepper`: one network, any optimiser, patience;
`fused.FusedStepper`: G members as one fused network). `loop.train` and `fused.train_fused` are
the entry points; `run.run_safely` turns a crash into a failed `RunResult`.
"""

from .config import TrainConfig
from .device import resolve_device
from .fused import train_fused
from .loop import LoopCallback, train
from .schedule import Schedule, parse_schedule
from .setup import Setup, set_up

__all__ = [
    "LoopCallback",
    "Schedule",
    "Setup",
    "TrainConfig",
    "parse_schedule",
    "resolve_device",
    "set_up",
    "train",
    "train_fused",
]
