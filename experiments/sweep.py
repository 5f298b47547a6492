"""Hyperparameter sweeps: every combination of a grid, one training run each.

  python -m experiments.sweep --preset=PRESET --grid=KEY=v1,v2 [--grid=...]
      [--parallel=N] [--sweep_dir=DIR] [--config.KEY=VALUE ...]

Each run is `experiments.train` in a subprocess, in `<sweep_dir>/<run name>`,
with its output in `train.log` there; the `--config.KEY=VALUE` flags go to
every run unchanged. Finished runs are skipped and interrupted ones resume
from their checkpoints, so an interrupted sweep is simply launched again. At
the end `summary.csv` and `summary.md` in the sweep directory list the runs,
best first (lowest eval_nll where runs report one, as translation does, whose
eval_loss is label-smoothed; else eval_loss).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import importlib
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import IO, Optional, Sequence

from absl import app
from absl import flags
import ml_collections

from experiments import cli, config_checks
from lm_jax import atomic_files
from lm_jax.train.logging import CONFIG_FILE, format_number, read_metrics

_PRESET = flags.DEFINE_string('preset', None,
                              'Name of experiments/configs/PRESET.py.')
_GRID = flags.DEFINE_multi_string('grid', [], 'KEY=v1,v2,...: the values of '
                                  'one config key; repeat for more keys.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Runs trained at once.')
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None,
                                 'Default: <repo>/sweeps/PRESET.')

_OVERRIDES: list[str] = []  # the --config.KEY=VALUE flags, for every run
_PARSERS = {bool: flags.BooleanParser(), int: flags.IntegerParser(),
            float: flags.FloatParser()}  # as config_flags parses overrides
# In each run's workdir: preset, settings, status ('started' while the run
# trains), wall time.
RUN_FILE = 'sweep_run.json'


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
  """`['KEY=v1,v2', ...]` -> `{KEY: [v1, v2], ...}`, in the order given.

  Raises:
    ValueError: a spec without '=', an empty key or value, a repeated key or
      value.
  """
  grid = {}
  for spec in specs:
    key, sep, values = (s.strip() for s in spec.partition('='))
    items = [v.strip() for v in values.split(',')]
    if not sep or not key or not all(items):
      raise ValueError(f'malformed --grid {spec!r}; expected KEY=v1,v2,...')
    if key in grid or len(set(items)) < len(items):
      raise ValueError(f'--grid {spec!r} repeats a key or a value')
    grid[key] = items
  return grid


# Statuses of runs that did not finish: they rank last, fail the sweep, and
# a relaunch resumes them ('started' is a run the sweep was killed during).
_NOT_DONE = ('failed', 'interrupted', 'started')


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
  """Every combination of the grid's values; the last key varies fastest."""
  return [dict(zip(grid, v)) for v in itertools.product(*grid.values())]


def check_setting(config: ml_collections.ConfigDict, key: str, value: str
                  ) -> object:
  """`value` parsed as the type of `config`'s (possibly dotted) `key`.

  Raises:
    ValueError: `key` is not in `config`, or `value` does not parse.
  """
  node = config
  for part in key.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ValueError(f'{key!r} is not a key of the preset\'s config (see '
                       'experiments/configs/base.py)')
    node = node[part]
  parser = _PARSERS.get(type(node))
  try:
    return parser.parse(value) if parser else value
  except ValueError:
    raise ValueError(f'{key}={value!r}: not a {type(node).__name__}') from None


def is_finished(records: Sequence[dict], num_train_steps: int) -> bool:
  """Whether the records hold the final evaluation, at `num_train_steps`."""
  return any(r.get('step') == num_train_steps and
             any(k.startswith('eval_') for k in r) for r in records)


def read_run_file(workdir: str) -> dict:
  """The sweep's notes on a run (`RUN_FILE`); {} if absent or unreadable
  (the run is then judged by its records)."""
  try:
    with open(os.path.join(workdir, RUN_FILE), encoding='utf-8') as f:
      info = json.load(f)
    return info if isinstance(info, dict) else {}
  except (OSError, ValueError):
    return {}


def run_is_done(info: dict, records: Sequence[dict], steps: int) -> bool:
  """A run the sweep launched (`info`: its `read_run_file` notes) is done
  when its training process exited cleanly ('ok': it trains every step,
  epochs and counting runs too); one without notes, when its records hold
  the final evaluation."""
  if 'status' in info:
    return info['status'] == 'ok'
  return is_finished(records, steps)


def summarize(records: Sequence[dict]) -> dict[str, float]:
  """One run's final_step, last eval_* and test_* figures (of the last
  record with an eval_loss: the final evaluation's, test split included),
  last train_loss and median tokens_per_sec, where it has them."""
  out = {'final_step': max(r['step'] for r in records)} if records else {}
  evals = [r for r in records if 'eval_loss' in r]
  if evals:
    out.update((k, v) for k, v in evals[-1].items()
               if k.startswith(('eval_', 'test_')))
  train = [r['train_loss'] for r in records if 'train_loss' in r]
  if train:
    out['train_loss'] = train[-1]
  speeds = [r['tokens_per_sec'] for r in records if 'tokens_per_sec' in r]
  if speeds:
    out['tokens_per_sec'] = statistics.median(speeds)
  return out


def summary_table(rows: Sequence[dict], keys: Sequence[str]
                  ) -> tuple[list[str], list[dict]]:
  """(columns, rows sorted best first by eval_nll where there is one, else
  eval_loss; failed and missing last)."""
  evals = sorted({k for r in rows for k in r
                  if k.startswith(('eval_', 'test_'))},
                 key=lambda k: (k != 'eval_loss', not k.startswith('eval_'), k))
  def rank(r):
    # A label-smoothed loss rises with the smoothing: the true targets'
    # NLL is what compares runs that differ in it.
    loss = r.get('eval_nll', r.get('eval_loss'))
    bad = r['status'] in _NOT_DONE or loss is None or math.isnan(loss)
    name = cli.run_name({k: r[k] for k in keys})
    return bad, math.inf if bad else loss, name
  return ([*keys, 'status', 'final_step', *evals, 'train_loss',
           'tokens_per_sec', 'wall_s'], sorted(rows, key=rank))


def write_summary(sweep_dir: str, rows: Sequence[dict], keys: Sequence[str]
                  ) -> str:
  """Writes summary.csv and summary.md (floats as `format_number` writes
  them) in `sweep_dir`; returns the Markdown table."""
  columns, rows = summary_table(rows, keys)
  with open(os.path.join(sweep_dir, 'summary.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  def cell(v):
    if isinstance(v, float):
      return format_number(v)
    return '' if v is None else str(v)
  table = '\n'.join(['| ' + ' | '.join(columns) + ' |',
                     '|' + '---|' * len(columns)] +
                    ['| ' + ' | '.join(cell(r.get(c)) for c in columns) + ' |'
                     for r in rows]) + '\n'
  with open(os.path.join(sweep_dir, 'summary.md'), 'w') as f:
    f.write(table)
  return table


class Runs:
  """The sweep's running processes, and whether it is stopping: a run
  starts only while it is not, so that stopping reaches every run."""

  def __init__(self):
    self.lock = threading.Lock()
    self.stopping = False
    self._procs = set()

  def start(self, cmd: Sequence[str], log: IO, env: Optional[dict]
            ) -> Optional[subprocess.Popen]:
    """The started process, or None once the sweep is stopping."""
    with self.lock:
      if self.stopping:
        return None
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              env=env)
      self._procs.add(proc)
      return proc

  def finished(self, proc: subprocess.Popen) -> None:
    with self.lock:
      self._procs.discard(proc)

  def stop(self) -> None:
    """Stops the running processes; no more start."""
    with self.lock:
      self.stopping = True
      for proc in self._procs:
        proc.terminate()


# How a run stopped from outside ends: Ctrl-C, the sweep's terminate, a
# closed terminal (whose hangup reaches the runs too).
_STOPPED = (-signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP,
            128 + signal.SIGINT)


def run_one(cmd: Sequence[str], workdir: str, env: Optional[dict] = None,
            runs: Optional[Runs] = None) -> tuple[str, float, str]:
  """Runs `cmd`, its output appended to `workdir/train.log`.

  Returns:
    ('ok', 'failed' or 'interrupted' (by Ctrl-C, a hangup or the sweep
    stopping it, or not started as the sweep stops), wall seconds, on
    failure the log's last line).
  """
  os.makedirs(workdir, exist_ok=True)
  log_path = os.path.join(workdir, 'train.log')
  runs = Runs() if runs is None else runs
  start = time.perf_counter()
  with open(log_path, 'a') as log:
    proc = runs.start(cmd, log, env)
    if proc is None:
      return 'interrupted', 0.0, ''
    code = proc.wait()
    runs.finished(proc)
  wall = time.perf_counter() - start
  if code == 0:
    return 'ok', wall, ''
  if code in _STOPPED:
    return 'interrupted', wall, ''
  with open(log_path, errors='replace') as f:
    lines = [line.strip() for line in f if line.strip()] or [f'exit {code}']
  return 'failed', wall, lines[-1][:300]


def main(argv):
  """Validates the sweep, trains its runs, writes and prints the summary."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; settings are --grid=KEY=v1,v2 '
             'or --config.KEY=VALUE')
  preset, presets = _PRESET.value, cli.presets()
  if preset not in presets:
    cli.fail(f'unknown preset {preset!r}; presets: {", ".join(presets)}')
  try:
    grid = parse_grid(_GRID.value)
    if not grid or _PARALLEL.value < 1:
      raise ValueError('a sweep needs --grid=KEY=v1,v2,... and --parallel >= 1')
    config = importlib.import_module(f'experiments.configs.{preset}'
                                     ).get_config()
    fixed = dict(f[len('--config.'):].partition('=')[::2] for f in _OVERRIDES)
    if any('=' not in f for f in _OVERRIDES) or set(fixed) & set(grid):
      raise ValueError('pass-through settings must be --config.KEY=VALUE, '
                       'with KEY not in the grid')
    for key, values in [*((k, [v]) for k, v in fixed.items()), *grid.items()]:
      parsed = [repr(check_setting(config, key, value)) for value in values]
      if len(set(parsed)) < len(parsed):
        raise ValueError(f'--grid {key}={",".join(values)} repeats a value '
                         '(as the config reads them)')
    for settings in combinations(grid):
      # The checks train makes of each run's settings, before any starts.
      given = {**fixed, **settings}
      run = config.copy_and_resolve_references()
      for key, value in given.items():
        if '.' not in key:
          run[key] = check_setting(config, key, value)
      config_checks.check_values(run)
      config_checks.check_given(run, [f'--config.{k}' for k in given])
  except ValueError as e:
    cli.fail(str(e))
  except Exception as e:  # noqa: BLE001 - a broken preset file
    cli.fail(f'cannot load preset {preset!r}: {type(e).__name__}: {e}')

  sweep_dir = os.path.abspath(_SWEEP_DIR.value or
                              os.path.join(cli.ROOT, 'sweeps', preset))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, (cli.ROOT, os.environ.get('PYTHONPATH')))))
  runs = combinations(grid)
  names = [cli.run_name(r) for r in runs]
  first_of = {}
  for settings, name in zip(runs, names):
    if name in first_of:
      cli.fail(f'grid values {first_of[name]} and {settings} give one run '
               f'name {name!r}; make them differ in letters or digits')
    first_of[name] = settings
  for settings, name in zip(runs, names):
    workdir = os.path.join(sweep_dir, name)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      cli.fail(f'{workdir} is a file, where this sweep keeps a run; move it '
               'away or use another --sweep_dir')
    # A run of another preset, with other settings for every run, or with
    # other grid values that give the same folder name is another run.
    info = read_run_file(workdir)
    earlier = info.get('overrides')
    if earlier is not None and sorted(earlier) != sorted(_OVERRIDES):
      cli.fail(f'{workdir} was trained with '
               f'{" ".join(earlier) or "no --config settings"}, not '
               f'{" ".join(_OVERRIDES) or "none"}; use another --sweep_dir')
    if info.get('preset', preset) != preset:
      cli.fail(f'{workdir} is a run of preset {info["preset"]!r}, not '
               f'{preset!r}; use another --sweep_dir')
    if info.get('settings', settings) != settings:
      cli.fail(f'{workdir} was trained with {info["settings"]}, not '
               f'{settings}; use another --sweep_dir')
  try:
    os.makedirs(sweep_dir, exist_ok=True)
  except OSError as e:
    cli.fail(f'cannot make the sweep folder {sweep_dir}: {e.strerror}; '
             'use another --sweep_dir')
  # One sweep at a time in a folder: a second would start the runs the
  # first has not reached yet, and fail those it has on their workdirs'
  # locks. Held while this process sweeps (the lock goes with `held`).
  held = contextlib.ExitStack()
  try:
    held.enter_context(atomic_files.held_exclusively(sweep_dir))
  except BlockingIOError:
    cli.fail(f'another sweep is running in {sweep_dir}; wait for it to '
             'end, or use another --sweep_dir')
  processes, rows = Runs(), [{}] * len(runs)

  def say(i, status, wall, note=''):
    with processes.lock:
      if processes.stopping:  # nothing below the error line
        return
      print(f'[{i + 1}/{len(runs)}] {status:<7} {cli.run_name(runs[i])}'
            f'{"" if wall is None else f" {wall:.1f}s"}{note}', flush=True)

  def launch(i):
    try:
      launch_run(i)
    except BaseException:
      # Now, not when the main thread, which takes the runs in order,
      # reaches this one's error: the other runs would train on meanwhile.
      processes.stop()
      raise

  def launch_run(i):
    settings = runs[i]
    workdir = os.path.join(sweep_dir, cli.run_name(settings))
    steps = check_setting(config, 'num_train_steps', {
        'num_train_steps': str(config.num_train_steps), **fixed,
        **settings}['num_train_steps'])
    records = read_metrics(workdir)
    info = read_run_file(workdir)  # from earlier launches
    status, wall = 'skipped', info.get('wall_s')  # seconds over all launches
    if run_is_done(info, records, steps):
      say(i, status, wall, ' (finished earlier)')
    else:
      ckpts = os.path.join(workdir, 'checkpoints')
      say(i, 'start', None, ' (resuming)' if os.path.isdir(ckpts) and
          os.listdir(ckpts) else '')
      cmd = [sys.executable, '-m', 'experiments.train',
             f'--config={os.path.join(cli.CONFIG_DIR, preset + ".py")}',
             f'--workdir={workdir}', *_OVERRIDES,
             *(f'--config.{k}={v}' for k, v in settings.items())]
      notes_path = os.path.join(workdir, RUN_FILE)
      notes = {'preset': preset, 'settings': settings,
               'overrides': _OVERRIDES, **info}  # earlier notes' stay
      # Noted before the run starts, so that a sweep killed during it leaves
      # notes for the checks above. Not for a run there without notes (a
      # sweep's, killed before notes came first): train may refuse these
      # settings for it, so they are its only once it trained with them.
      noted = bool(info) or not os.path.exists(
          os.path.join(workdir, CONFIG_FILE))
      if noted:
        os.makedirs(workdir, exist_ok=True)
        atomic_files.write_text(notes_path, json.dumps(
            {**notes, 'status': 'started'}))
      status, seconds, error = run_one(cmd, workdir, env, processes)
      wall = seconds + (wall or 0.0)
      if noted or status == 'ok':
        atomic_files.write_text(notes_path, json.dumps(
            {**notes, 'status': status, 'wall_s': wall}))
      say(i, status, wall, f': {error}' if error else '')
      records = read_metrics(workdir)
    rows[i] = {**settings, 'status': status, **summarize(records),
               'wall_s': wall}

  # `kill` and a closed terminal stop the runs as Ctrl-C does; else the
  # runs would train on unwatched, and hold their workdirs' locks against
  # the relaunch. Not where they are ignored: `nohup` asks for that.
  for signum in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(signum) is not signal.SIG_IGN:
      signal.signal(signum, _interrupt)
  pool = concurrent.futures.ThreadPoolExecutor(_PARALLEL.value)
  try:
    # A folder a run's files cannot be written in, a full disk: one line.
    cli.run_guarded(lambda: list(pool.map(launch, range(len(runs)))))
  except BaseException as e:  # run_guarded's exit too: no run trains on
    processes.stop()
    pool.shutdown(wait=False, cancel_futures=True)
    if isinstance(e, KeyboardInterrupt):
      cli.fail('interrupted; launch the same sweep again to resume it', 130)
    if isinstance(e, Exception):
      cli.fail(f'the sweep stopped its runs on {type(e).__name__}: {e}')
    raise
  pool.shutdown()
  print(f'\n{os.path.join(sweep_dir, "summary.md")}:\n', flush=True)
  print(write_summary(sweep_dir, rows, list(grid)), end='', flush=True)
  failed = sum(r['status'] in _NOT_DONE for r in rows)
  if failed:
    cli.fail(f'{failed} of {len(rows)} runs failed or were stopped; see '
             'their train.log, and launch the sweep again to resume them', 1)


def _interrupt(signum, frame) -> None:
  del signum, frame
  raise KeyboardInterrupt


def _flags_parser(argv: list[str]) -> list[str]:
  """Sets the --config.* flags aside for the runs; absl parses the rest."""
  _OVERRIDES[:] = [a for a in argv[1:] if a.startswith('--config.')]
  return cli.flags_parser([a for a in argv if a not in _OVERRIDES])


if __name__ == '__main__':
  app.run(main, flags_parser=_flags_parser)
