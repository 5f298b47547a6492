"""Where a run's numbers go: console, metrics.jsonl, TensorBoard, a PNG,
and a profiler trace on request.

Only the first host writes the numbers; the others return early from every
call. Each host writes its own trace.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Optional

from lm_jax import atomic_files

METRICS_FILE = 'metrics.jsonl'
CONFIG_FILE = 'config.json'
# The run-config keys that fix a BERT encoder's parameter shapes: a run
# that starts from another (`init_from`) takes them from it
# (`masked_lm.adopt_pretrained`). Here, beside config.json's reader, for
# the command line, which checks relaunches before JAX may be imported.
ARCHITECTURE_KEYS = ('num_layers', 'num_heads', 'embed_dim', 'mlp_ratio',
                     'mlp_hidden_dim', 'max_positions', 'type_vocab_size',
                     'layer_norm_epsilon', 'activation', 'pre_norm')

log = logging.getLogger('lm_jax')


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
    atomic_files.write_text(self.path, ''.join(map(_json_line, kept)))
    # TensorBoard drops the old events past the restored step (they are
    # about to be logged again), those of an attempt that crashed before its
    # first checkpoint included.
    self._open_tensorboard(purge_step=resume_step + 1)

  def _open_tensorboard(self, purge_step: int) -> None:
    try:
      from tensorboardX import SummaryWriter  # Optional at run time.
    except ImportError:
      log.warning('tensorboardX is not installed: no TensorBoard events')
      return
    self._tb = SummaryWriter(os.path.join(self.workdir, 'tensorboard'),
                             purge_step=purge_step)

  def write(self, step: int, values: dict[str, float]) -> None:
    if not self.active:
      return
    record = {'step': int(step), **{k: float(v) for k, v in values.items()}}
    with open(self.path, 'a') as f:
      f.write(_json_line(record))
    self._add_scalars(step, values)

  def _add_scalars(self, step: int, values: dict[str, float]) -> None:
    if self._tb is not None:
      for k, v in values.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def replace(self, step: int, *records: dict[str, float]) -> None:
    """Writes `records` at `step` in place of the records there that hold
    any of their keys (a log line or evaluation recorded again); `step`
    is the last step written."""
    if not self.active:
      return
    keys = set().union(*records)
    kept = [r for r in read_metrics(self.workdir)
            if r['step'] != step or not keys & r.keys()]
    atomic_files.write_text(self.path, ''.join(map(_json_line, kept)))
    if self._tb is not None:
      # TensorBoard drops its events from `step` on; the kept ones there
      # are logged again.
      self._tb.close()
      self._open_tensorboard(purge_step=step)
      for record in kept:
        if record['step'] == step:
          self._add_scalars(step, {k: v for k, v in record.items()
                                   if k != 'step'})
    for values in records:
      self.write(step, values)

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


def _json_line(record: dict) -> str:
  """A record as one line of strict JSON: a NaN or infinite value (a run
  that diverged) is written as null, which json.dumps would write as the
  bare NaN / Infinity that jq, JavaScript and others reject."""
  return json.dumps({k: None if isinstance(v, float) and not math.isfinite(v)
                     else v for k, v in record.items()},
                    allow_nan=False) + '\n'


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`, less a line cut short by a kill
  (empty if there are none); a value written as null (not finite) reads as
  NaN."""
  path, records = os.path.join(workdir, METRICS_FILE), []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        records.append({k: math.nan if v is None else v
                        for k, v in record.items()})
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


def architecture_of(run_config: dict) -> dict:
  """The `ARCHITECTURE_KEYS` settings a run's config.json holds."""
  return {k: run_config[k] for k in ARCHITECTURE_KEYS if k in run_config}


class ProfileTrace:
  """The `profile_steps` window of a run: a `jax.profiler` trace in
  `WORKDIR/profile`, started before the window's first step and stopped
  after its last, or when the run stops.

  Args:
    spec: 'START:STOP' (steps, 1-based, inclusive), or '' for none.
    workdir: the run's directory.
    start: the steps already done (a resumed run traces nothing that began
      before them).
    end: the run's last step; a window past it is cut there, since a trace
      never stopped is never written.
  """

  def __init__(self, spec: str, workdir: str, start: int, end: int):
    import jax  # Here, as in MetricWriter: reading metrics needs no JAX.
    self._jax = jax
    window = tuple(int(s) for s in spec.split(':')) if spec else None
    if window and window[0] <= start:
      log.info('profile_steps %s began before step %d, where this run '
               'resumes: no trace', spec, start)
      window = None
    if window and window[1] > end:
      window = (window[0], end) if window[0] <= end else None
    self.window, self._active = window, False
    self._directory = os.path.join(workdir, 'profile')
    if jax.process_count() > 1:
      # Processes on one machine share a host name, and so a trace file.
      self._directory = os.path.join(self._directory,
                                     f'process_{jax.process_index()}')

  def before(self, step: int) -> None:
    """Called with the steps done so far, before the next ones."""
    if self.window and step + 1 == self.window[0]:
      self._jax.profiler.start_trace(self._directory)
      self._active = True

  def after(self, step: int, state) -> None:
    """Called with the steps done so far and the state they produced."""
    if self._active and step == self.window[1]:
      self._jax.block_until_ready(state)
      self.close()

  def close(self) -> None:
    if self._active:
      self._active = False
      self._jax.profiler.stop_trace()


def format_number(value: float) -> str:
  """4 significant digits, or whole from 10,000 up: counts such as
  tokens/s read as 18410, not 1.841e+04."""
  return f'{value:.0f}' if 1e4 <= abs(value) < 1e15 else f'{value:.4g}'


def progress_line(step: int, total_steps: int, values: dict[str, float],
                  seconds_per_step: Optional[float]) -> str:
  """The console line of a log step: step, `values`, ms/step and ETA
  (None: the steps since the last line were compiling, untimed)."""
  shown = ' '.join(f'{k}={format_number(v)}' for k, v in values.items())
  if seconds_per_step is None:
    return f'step {step}/{total_steps} {shown} (compiling: untimed)'
  eta = (total_steps - step) * seconds_per_step
  return (f'step {step}/{total_steps} {shown} '
          f'({seconds_per_step * 1e3:.1f} ms/step, ETA {eta:.0f}s)')
