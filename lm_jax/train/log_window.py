"""The training metrics between two log lines, and the clock behind
tokens/s and ms/step.

The loop hands every step's metrics to a `LogWindow`, which keeps them on
device until a log line needs them (reading them at each step would make
the host wait for the device), and leaves evaluations and checkpoint saves
out of its clock through `paused`, as the loop does each step function's
first call for each batch shape too: that call traces and compiles it (or
loads it from the compilation cache), seconds to minutes that a step's time
would not show.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

import jax
import numpy as np

from lm_jax.train import parallel

# Training steps dispatched ahead of the one the host waits for.
MAX_STEPS_IN_FLIGHT = 4
# Steps' metrics kept on device between two logs at most; beyond, the older
# ones are summed on the host (log_every=0 would keep every step's).
MAX_PENDING = 1000


def window_sums(pending: list) -> dict:
  """Host float64 (sum, weight) of each metric over `pending` steps' values
  (a leaf is one step's value, or several steps' stacked)."""
  return jax.tree.map(
      lambda *xs: sum(np.sum(x, dtype=np.float64) for x in xs),
      *parallel.to_host(pending))


class LogWindow:
  """The training metrics since the last log line: each step's, on device
  until the host needs them, and the clock, tokens and steps behind
  tokens/s and ms/step."""

  def __init__(self, resumed: Optional[dict], start_step: int):
    # A resumed run starts from the sums its checkpoint kept of the steps
    # logged before it; their tokens took no time in this process.
    self._pending = [resumed] if resumed else []
    self._carried_tokens = resumed['loss'][1] if resumed else 0.0
    self._step = start_step
    self._start = time.perf_counter()

  def add(self, metrics: dict, timed: bool = True, steps: int = 1) -> None:
    """One call's metrics (of `steps` steps). Untimed (`timed` False): a
    call whose time, left out through `paused`, was mostly compiling; its
    tokens and steps leave tokens/s and ms/step with it."""
    # Summed on the host at log time: adding on device would dispatch a
    # few tiny ops every step.
    self._pending.append(metrics)
    if not timed:
      self._carried_tokens += float(window_sums([metrics])['loss'][1])
      self._step += steps
    if len(self._pending) > MAX_STEPS_IN_FLIGHT:
      # Dispatch stays a few steps ahead, not hundreds: with hundreds of
      # multi-device steps queued, XLA's CPU backend has left one device
      # out of a gradient all-reduce until its rendezvous timed out and
      # aborted the run (with log_every=500, never with 250 or less).
      jax.block_until_ready(self._pending[-1 - MAX_STEPS_IN_FLIGHT])
    if len(self._pending) > MAX_PENDING:
      self._pending = [window_sums(self._pending)]

  def pause(self, seconds: float) -> None:
    """Leaves `seconds` (an evaluation's, a save's) out of tokens/s and
    ms/step."""
    self._start += seconds

  def sums(self) -> Optional[dict]:
    """The window's (sum, weight) pairs so far, for a checkpoint."""
    if not self._pending:
      return None
    self._pending = [window_sums(self._pending)]
    return self._pending[0]

  def take(self, step: int
           ) -> tuple[dict, Optional[float], Optional[float]]:
    """(sums, tokens per second, seconds per step) of the window, which
    ends at `step`, once the device has finished its steps (the rates None
    where every step was untimed); the next window's steps start from here,
    its clock from `restart_clock`."""
    host = window_sums(self._pending)
    tokens = float(host['loss'][1] - self._carried_tokens)
    seconds = max(time.perf_counter() - self._start, 1e-9)
    timed_steps = step - self._step
    self._pending, self._carried_tokens, self._step = [], 0.0, step
    if timed_steps <= 0:
      return host, None, None
    return host, tokens / seconds, seconds / timed_steps

  def restart_clock(self) -> None:
    """After the log line: writing it is no step's time."""
    self._start = time.perf_counter()


@contextlib.contextmanager
def paused(state: Any, window: LogWindow):
  """Leaves the time inside (an evaluation, a checkpoint save) out of
  tokens/s and ms/step."""
  # The steps still in flight are training time.
  jax.block_until_ready(state)
  start = time.perf_counter()
  yield
  seconds = time.perf_counter() - start
  window.pause(seconds)
