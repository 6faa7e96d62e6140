"""Sharing a store's trials between processes: the driver's side of the store's claims
(`depthlab.store.claims`). A driver claims a trial when it hands it to its executor (not
when a search asks for it: two sweeps then split the waiting trials between them, each taking
the next one the other has not started); a trial that another live process has claimed is not
trained here but awaited, and its result is read back from the
store once that process records it (as if it had been found there at the start). A claim given
up without a result (the trial failed, was cancelled, or its process is gone) is taken over and
the trial trained here. Two identical sweeps on one store therefore train each trial once.
"""

from __future__ import annotations

import copy
import time

from .jobs import Job
from .requests import describe_args


class SharedWork:
    """A mixin of `depthlab.sweep.driver.TrialRunner` (driver thread only): ``_elsewhere`` holds
    the trials awaited from other processes, looked at every ``claim_poll`` seconds by its
    event loop (`_look_elsewhere`)."""

    claim_poll = 2.0  # seconds between looks at the trials other processes train

    def _claimed(self, fresh: list[tuple[Job, str]]) -> list[tuple[Job, str]]:
        """Claim the trials of a group about to be dispatched (one transaction) and return those
        to train here. A trial claimed by another live process is awaited; one whose result was
        stored since its request looked (another process finished it meanwhile) is read back."""
        if self.store is None or not fresh:
            return fresh
        # a trial that must not reuse a stored result trains here whatever runs elsewhere
        elsewhere = self.store.claim([key for trial, key in fresh if trial.reuse])
        mine = []
        for trial, key in fresh:
            if key in elsewhere:
                self._elsewhere[key] = trial
                if self.log is not None:
                    pid, host = elsewhere[key]
                    self.log(
                        f"{trial.config.model} {describe_args(trial.config.model_args)}lr {trial.config.lr:g}: "
                        f"in flight in another process (pid {pid} on {host}); waiting for its result"
                    )
                continue
            found = self._stored(trial.config) if trial.reuse else None
            if found is not None:
                self.store.release([key])
                self._read_back(key, found)
            else:
                mine.append((trial, key))
        return mine

    def _look_elsewhere(self) -> None:
        """Look at the awaited trials: a stored result is read back, and a trial whose claim was
        given up or went stale is claimed and queued to train here."""
        self._looked = time.monotonic()
        for key, trial in list(self._elsewhere.items()):
            found = self._stored(trial.config)
            if found is None and self.store.claim([key]):
                continue  # still in flight there
            del self._elsewhere[key]
            if found is not None:
                self._read_back(key, found)
            else:  # ours now; `_claimed` looks at the store once more when it is dispatched
                self._enqueue([(trial, key)], attempt=1)
        self._dispatch()

    def _read_back(self, key: str, found) -> None:
        """Fill every request waiting for ``key`` with its stored result."""
        for request, index, _ in self._inflight.pop(key):
            self.trials_reused += 1
            request.fill(index, copy.copy(found))
