"""Compiling the training step with ``torch.compile``: the settings it needs, when it pays, and
falling back to eager mode when it fails.

Every private PyTorch setting prnn uses lives here, each behind a check that the running
version has it.

When compiling pays: the compiled step is faster (measured 1.3-1.4x for GRU4Rec's; see
docs/gru4rec.md), but compiling costs seconds before the first compiled step, so it wins on
the whole run only when the training is long enough. ``CompileDecision`` times the first eager
steps of a fit and compiles only when the steps left would save more than compiling costs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time

import torch

log = logging.getLogger(__name__)

#: compiled step time / eager step time, measured on the 2-core development machine
#: (benchmarks/train_speed.py); the decision assumes this gain
COMPILED_STEP_SPEEDUP = 1.3
#: CPU seconds a first compilation costs (5-20 s there, warm and cold on-disk cache)
COMPILE_SECONDS = 12.0
#: eager steps timed before deciding
STEPS_TIMED = 256


@contextlib.contextmanager
def compile_settings(enabled: bool):
    """Settings for compiling the training step, around an epoch's steps only (not evaluation
    or callbacks: they are process-wide).

    - Sizes are never "duck-shaped". A planned step's tensors are views into its chunk's
      buffers (``prnn.training.step_plan``). By default dynamo gives one symbol to sizes and
      offsets that happen to be equal when it traces (an offset of 32 and a batch of 32),
      recompiles at the next step, where they differ, and after its limit of recompilations
      runs the step eagerly. Without duck shaping the step compiles once per fit and phase.
    - Python floats (learning rate, momentum, the loss's scale) are constants of the graph. By
      default dynamo first traces them as tensors, then restarts the whole trace (seconds),
      and turns each into a tensor at every call.
    """
    if not enabled:
        yield
        return
    with contextlib.ExitStack() as settings:
        try:
            from torch.fx.experimental import _config as fx_config
        except ImportError:  # pragma: no cover - older or newer PyTorch
            fx_config = None
        # both settings are recent (duck shaping's switch since PyTorch 2.5): skipped where absent
        if fx_config is not None and hasattr(fx_config, "use_duck_shape"):
            settings.enter_context(fx_config.patch(use_duck_shape=False))
        dynamo_config = getattr(getattr(torch, "_dynamo", None), "config", None)
        if dynamo_config is not None and hasattr(dynamo_config, "specialize_float"):
            settings.enter_context(dynamo_config.patch(specialize_float=True))
        yield


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile can build CPU code here (it needs a C++ compiler)."""
    if device.type != "cpu":
        return True
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


class CompileDecision:
    """Whether the training step runs compiled, decided once per fit.

    ``requested`` True or False is the user's choice; None decides by measurement: the first
    ``STEPS_TIMED`` steps run eagerly and are timed in CPU time (the process's, not the wall
    clock: on a busy machine both the steps and the compilation take longer in wall time, and
    the wall clock would make the decision flip with the neighbours' load), then the step
    compiles if the steps left
    in the fit, run ``COMPILED_STEP_SPEEDUP`` times faster, would save more than
    ``COMPILE_SECONDS`` per graph (one per training phase). Undecided, a step whose loss is
    not compiled whole (``whole_step=False``: losses other than cross-entropy) stays eager. A
    compilation that fails falls back to eager mode with one warning.
    """

    def __init__(
        self,
        requested: bool | None,
        total_steps: int,
        device: torch.device,
        n_graphs: int = 1,
        whole_step: bool = True,
    ) -> None:
        self.total_steps = total_steps
        self.compile_seconds = COMPILE_SECONDS * n_graphs
        self.decided = requested is not None
        self.compiled = bool(requested)
        self.reason = "requested" if requested is not None else "undecided"
        if requested is None and not whole_step:
            # the loss's gradient comes from autograd, eagerly, and splits the compiled step:
            # measured slower than eager (BPR-max, rsc15_100k, 10 epochs: 70 s against 50 s)
            self.decided, self.compiled = True, False
            self.reason = "the loss's gradient runs eagerly and splits the compiled step"
        elif requested is None and not compiler_available(device):
            self.decided, self.compiled = True, False
            self.reason = "no C++ compiler found"
        self._steps = 0
        self._started: float | None = None

    def before_step(self) -> None:
        if not self.decided and self._steps == 0:
            self._started = time.process_time()

    def after_step(self) -> None:
        """Count an eager step; after ``STEPS_TIMED`` of them, decide."""
        if self.decided:
            return
        self._steps += 1
        if self._steps < STEPS_TIMED and self._steps < self.total_steps:
            return
        seconds_per_step = (time.process_time() - self._started) / self._steps
        left = (self.total_steps - self._steps) * seconds_per_step
        saving = left * (1.0 - 1.0 / COMPILED_STEP_SPEEDUP)
        self.decided = True
        self.compiled = saving > self.compile_seconds
        self.reason = (
            f"{left:.0f} s of eager training left would save ~{saving:.0f} s compiled, "
            f"{'more' if self.compiled else 'less'} than compiling costs "
            f"(~{self.compile_seconds:.0f} s)"
        )
        log.info("training step %s: %s", "compiled" if self.compiled else "eager", self.reason)

    def failed(self, error: Exception) -> None:
        """A compilation failed: train on eagerly, with one warning line."""
        self.compiled = False
        self.decided = True
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        log.warning(
            "compiling the training step failed (%s: %s); training eagerly",
            type(error).__name__,
            first_line[:200],
        )
