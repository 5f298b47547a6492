"""Where a run's numbers go: console, metrics.jsonl, TensorBoard, a PNG.

Only the first host writes; the others return early from every call.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

METRICS_FILE = 'metrics.jsonl'
CONFIG_FILE = 'config.json'

log = logging.getLogger('lm_jax')


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file beside it: a reader,
  or a run killed mid-write, sees the old file or the new, never half."""
  temporary = f'{path}.tmp{os.getpid()}'
  try:
    with open(temporary, 'w') as f:
      f.write(text)
    os.replace(temporary, path)
  except OSError as e:
    if os.path.isfile(temporary):
      os.remove(temporary)
    raise OSError(e.errno, e.strerror, path) from None


class MetricWriter:
  """Appends one JSON object per logged step and mirrors it to TensorBoard.

  On resume, records beyond the restored step are dropped first: those
  steps are about to be trained again, and the file must read as if the run
  had never been interrupted.

  Args:
    workdir: the run's directory.
    resume_step: the step training restarts from (0 for a new run).
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    import jax  # Here, so that reading metrics needs no JAX (sweeps).
    self.active = jax.process_index() == 0
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    if not self.active:
      return
    kept = [r for r in read_metrics(workdir) if r['step'] <= resume_step]
    # Replaced whole, so that a kill mid-write cannot lose the history.
    write_atomically(self.path,
                     ''.join(json.dumps(r) + '\n' for r in kept))
    try:
      from tensorboardX import SummaryWriter  # Optional at run time.
      # On resume, TensorBoard drops the old events past the restored step
      # (they are about to be logged again).
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                               purge_step=resume_step + 1 if resume_step
                               else None)
    except ImportError:
      log.warning('tensorboardX is not installed: no TensorBoard events')

  def write(self, step: int, values: dict[str, float]) -> None:
    if not self.active:
      return
    record = {'step': int(step), **{k: float(v) for k, v in values.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self._tb is not None:
      for k, v in values.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def plot(self) -> Optional[str]:
    """Writes `loss.png` (train and eval loss against step)."""
    if not self.active:
      return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    records = read_metrics(self.workdir)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ('train_loss', 'eval_loss'):
      points = [(r['step'], r[key]) for r in records if key in r]
      if points:
        ax.plot(*zip(*points), marker='.' if key == 'eval_loss' else None,
                label=key)
    ax.set_xlabel('step')
    ax.set_ylabel('loss (nats/token)')
    ax.grid(alpha=0.3)
    ax.legend()
    path = os.path.join(self.workdir, 'loss.png')
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
    return path

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`, less a line cut short by a kill
  (empty if there are none)."""
  path, records = os.path.join(workdir, METRICS_FILE), []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          pass
  return records


def read_run_config(workdir: str) -> dict:
  """The settings a run in `workdir` was launched with (its config.json).

  Raises:
    FileNotFoundError: `workdir` holds no config.json.
    ValueError: the file is not a run's config (not JSON, or no task).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):  # a folder of that name is unreadable
    raise FileNotFoundError(f'{workdir} holds no run (no {CONFIG_FILE})')
  with open(path, encoding='utf-8') as f:
    try:
      config = json.load(f)
    except ValueError as e:
      raise ValueError(f'{path} is not JSON ({e})') from None
  if not isinstance(config, dict) or 'task' not in config:
    raise ValueError(f'{path} is not a run config: no task')
  return config


class Progress:
  """Console lines: step, loss, tokens/s, ETA."""

  def __init__(self, total_steps: int, start_step: int):
    self.total, self._t, self._step = total_steps, time.perf_counter(), start_step

  def rate(self, step: int) -> float:
    """Seconds per step since the previous call; resets the clock."""
    now = time.perf_counter()
    seconds = (now - self._t) / max(step - self._step, 1)
    self._t, self._step = now, step
    return seconds

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` (an evaluation, say) out of the next `rate`."""
    self._t += seconds

  def line(self, step: int, values: dict[str, float], seconds_per_step: float
           ) -> str:
    eta = (self.total - step) * seconds_per_step
    shown = ' '.join(f'{k}={v:.4g}' for k, v in values.items())
    return (f'step {step}/{self.total} {shown} '
            f'({seconds_per_step * 1e3:.1f} ms/step, ETA {eta:.0f}s)')
