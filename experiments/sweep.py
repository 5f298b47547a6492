"""Hyperparameter sweeps: every combination of a grid, one training run each.

  python -m experiments.sweep --preset=PRESET --grid=KEY=v1,v2 [--grid=...]
      [--parallel=N] [--sweep_dir=DIR] [--config.KEY=VALUE ...]

Each run is `experiments.train` in a subprocess, in `<sweep_dir>/<run name>`,
its output in `train.log` there; the `--config.KEY=VALUE` flags go to every
run unchanged. Finished runs are skipped and interrupted ones resume from
their checkpoints, so an interrupted sweep is simply launched again. At the
end, `summary.csv` and `summary.md` in the sweep directory list the runs,
best eval_loss first.
"""

from __future__ import annotations

import concurrent.futures
import csv
import importlib.util
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from absl import app
from absl import flags
import ml_collections

from experiments import cli

_PRESET = flags.DEFINE_string('preset', None,
                              'Name of experiments/configs/PRESET.py.')
_GRID = flags.DEFINE_multi_string('grid', [], 'KEY=v1,v2,...: the values of '
                                  'one config key; repeat for more keys.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Runs trained at once.')
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None,
                                 'Default: <repo>/sweeps/PRESET.')

_OVERRIDES: list[str] = []  # the --config.KEY=VALUE flags, for every run
_PARSERS = {bool: flags.BooleanParser(), int: flags.IntegerParser(),
            float: flags.FloatParser()}  # as config_flags parses them
RUN_FILE = 'sweep_run.json'  # a run's settings and wall time, by the sweep


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


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
  """Every combination of the grid's values; the last key varies fastest."""
  return [dict(zip(grid, values)) for values in itertools.product(
      *grid.values())]


def run_name(settings: dict[str, str]) -> str:
  """A stable, filesystem-safe directory name, e.g. `batch_size-12_lr-0.1`."""
  return '_'.join(re.sub(r'[^A-Za-z0-9.+-]', '_', f'{k}-{settings[k]}')
                  for k in sorted(settings))


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Separates `--config.KEY=VALUE` flags (or `--config.KEY VALUE`) from the
  rest of argv, returning (overrides as `--config.KEY=VALUE`, rest)."""
  overrides, rest, args = [], [], list(argv)
  while args:
    arg = args.pop(0)
    if not arg.startswith('--config.'):
      rest.append(arg)
    elif '=' in arg or not args:
      overrides.append(arg)
    else:
      overrides.append(f'{arg}={args.pop(0)}')
  return overrides, rest


def check_setting(config: ml_collections.ConfigDict, key: str, value: str
                  ) -> object:
  """The parsed `value` of `config`'s (possibly dotted) `key`.

  Raises:
    ValueError: `key` is not in `config`, or `value` does not parse as its type.
  """
  node = config
  for part in key.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ValueError(f'{key!r} is not a config key (see '
                       'experiments/configs/base.py for the keys)')
    node = node[part]
  try:
    return _PARSERS[type(node)].parse(value) if type(node) in _PARSERS else value
  except ValueError:
    raise ValueError(f'{key}={value!r} is not a valid '
                     f'{type(node).__name__}') from None


def load_preset(preset: str) -> ml_collections.ConfigDict:
  """`get_config()` of experiments/configs/PRESET.py."""
  path = os.path.join(cli.CONFIG_DIR, f'{preset}.py')
  spec = importlib.util.spec_from_file_location(f'_preset_{preset}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def read_records(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`, skipping unreadable lines."""
  records = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          pass  # a line cut short by an interruption
  except FileNotFoundError:
    pass
  return records


def is_finished(records: Sequence[dict], num_train_steps: int) -> bool:
  """Whether the records hold the final evaluation at `num_train_steps`."""
  return any(r.get('step') == num_train_steps and
             any(k.startswith('eval_') for k in r) for r in records)


def summarize(records: Sequence[dict]) -> dict[str, object]:
  """final_step, the last eval_* figures, the last train_loss, the median
  tokens_per_sec of one run's records (keys absent where there are none)."""
  out = {}
  if records:
    out['final_step'] = max(r['step'] for r in records)
  evals = [r for r in records if 'eval_loss' in r]
  if evals:
    out.update((k, v) for k, v in evals[-1].items() if k.startswith('eval_'))
  train = [r['train_loss'] for r in records if 'train_loss' in r]
  if train:
    out['train_loss'] = train[-1]
  speeds = [r['tokens_per_sec'] for r in records if 'tokens_per_sec' in r]
  if speeds:
    out['tokens_per_sec'] = statistics.median(speeds)
  return out


def summary_table(rows: Sequence[dict], keys: Sequence[str]
                  ) -> tuple[list[str], list[dict]]:
  """(columns, rows sorted best eval_loss first, failed and missing last)."""
  evals = sorted({k for r in rows for k in r if k.startswith('eval_')},
                 key=lambda k: (k != 'eval_loss', k))
  columns = [*keys, 'status', 'final_step', *evals, 'train_loss',
             'tokens_per_sec', 'wall_s']
  def rank(r):
    loss = r.get('eval_loss')
    bad = r['status'] == 'failed' or loss is None or math.isnan(loss)
    return (bad, math.inf if bad else loss, run_name({k: r[k] for k in keys}))
  return columns, sorted(rows, key=rank)


def markdown(columns: Sequence[str], rows: Sequence[dict]) -> str:
  """A Markdown table: floats to 4 significant digits, blanks for missing."""
  def cell(key, v):
    if v is None:
      return ''
    if isinstance(v, float):
      return f'{v:.1f}' if key in ('wall_s', 'tokens_per_sec') else f'{v:.4g}'
    return str(v)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(cell(c, r.get(c)) for c in columns) + ' |'
            for r in rows]
  return '\n'.join(lines) + '\n'


def write_summary(sweep_dir: str, rows: Sequence[dict], keys: Sequence[str]
                  ) -> str:
  """Writes summary.csv and summary.md in `sweep_dir`; returns the Markdown."""
  columns, rows = summary_table(rows, keys)
  with open(os.path.join(sweep_dir, 'summary.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  table = markdown(columns, rows)
  with open(os.path.join(sweep_dir, 'summary.md'), 'w') as f:
    f.write(table)
  return table


def last_line(path: str) -> str:
  """The last non-blank line of a text file ('' if none)."""
  try:
    with open(path, errors='replace') as f:
      lines = [line.strip() for line in f if line.strip()]
  except FileNotFoundError:
    return ''
  return lines[-1][:300] if lines else ''


def run_one(cmd: Sequence[str], workdir: str, env: Optional[dict] = None,
            procs: Optional[set] = None) -> tuple[str, float, str]:
  """Runs `cmd` with its output appended to `workdir/train.log`.

  Returns:
    (status 'ok' or 'failed', wall seconds, the log's last line on failure).
  """
  os.makedirs(workdir, exist_ok=True)
  log_path = os.path.join(workdir, 'train.log')
  start = time.perf_counter()
  with open(log_path, 'a') as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if procs is not None:
      procs.add(proc)
    code = proc.wait()
    if procs is not None:
      procs.discard(proc)
  wall = time.perf_counter() - start
  return ('ok', wall, '') if code == 0 else ('failed', wall, last_line(log_path))


def _run_file(workdir: str) -> dict:
  try:
    with open(os.path.join(workdir, RUN_FILE)) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return {}


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; settings are --grid=KEY=v1,v2 '
             'or --config.KEY=VALUE')
  preset = _PRESET.value
  if preset not in cli.presets():
    cli.fail(f'unknown preset {preset!r}; presets: {", ".join(cli.presets())}')
  if _PARALLEL.value < 1:
    cli.fail('--parallel must be at least 1')
  try:
    grid = parse_grid(_GRID.value)
    if not grid:
      raise ValueError('no --grid=KEY=v1,v2,... given')
    config = load_preset(preset)
    fixed = dict(o[len('--config.'):].partition('=')[::2] for o in _OVERRIDES)
    for key in set(fixed) & set(grid):
      raise ValueError(f'{key!r} is both a --grid key and a --config override')
    for key, value in [*fixed.items(),
                       *((k, v) for k, vs in grid.items() for v in vs)]:
      check_setting(config, key, value)
  except ValueError as e:
    cli.fail(str(e))
  except Exception as e:  # noqa: BLE001 - a broken preset file.
    cli.fail(f'cannot load preset {preset!r}: {type(e).__name__}: {e}')

  sweep_dir = os.path.abspath(_SWEEP_DIR.value or
                              os.path.join(cli.ROOT, 'sweeps', preset))
  os.makedirs(sweep_dir, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (cli.ROOT, os.environ.get('PYTHONPATH')) if p))
  runs = combinations(grid)
  lock, procs, rows = threading.Lock(), set(), [None] * len(runs)

  def say(i, name, status, wall=None, note=''):
    timing = '' if wall is None else f' {wall:.1f}s'
    with lock:
      print(f'[{i + 1}/{len(runs)}] {status:<8} {name}{timing}{note}',
            flush=True)

  def launch(i):
    settings, name = runs[i], run_name(runs[i])
    workdir = os.path.join(sweep_dir, name)
    steps = check_setting(config, 'num_train_steps', {
        **fixed, **settings}.get('num_train_steps', str(config.num_train_steps)))
    records = read_records(workdir)
    previous = _run_file(workdir).get('wall_s')
    if is_finished(records, steps):
      say(i, name, 'skipped', previous, ' (finished earlier)')
      status, wall = 'skipped', previous
    else:
      say(i, name, 'start', None, ' (resuming)' if records else '')
      cmd = [sys.executable, '-m', 'experiments.train',
             f'--config={os.path.join(cli.CONFIG_DIR, preset + ".py")}',
             f'--workdir={workdir}', *_OVERRIDES,
             *(f'--config.{k}={v}' for k, v in settings.items())]
      status, wall, error = run_one(cmd, workdir, env, procs)
      wall += previous or 0.0
      with open(os.path.join(workdir, RUN_FILE), 'w') as f:
        json.dump({'settings': settings, 'status': status, 'wall_s': wall}, f)
      say(i, name, status, wall, f': {error}' if error else '')
      records = read_records(workdir)
    rows[i] = {**settings, 'status': status, **summarize(records),
               'wall_s': wall}

  pool = concurrent.futures.ThreadPoolExecutor(_PARALLEL.value)
  try:
    list(pool.map(launch, range(len(runs))))
  except KeyboardInterrupt:
    for proc in list(procs):
      proc.terminate()
    pool.shutdown(cancel_futures=True)
    cli.fail('interrupted; launch the sweep again to resume it', 130)
  pool.shutdown()
  print(f'\n{sweep_dir}/summary.md:\n')
  print(write_summary(sweep_dir, rows, list(grid)), end='')
  failed = sum(r['status'] == 'failed' for r in rows)
  if failed:
    print(f'error: {failed} of {len(rows)} runs failed', file=sys.stderr)
    sys.exit(1)


def _flags_parser(argv: list[str]) -> list[str]:
  """Keeps the --config.KEY=VALUE flags aside for the runs; absl parses the
  rest."""
  _OVERRIDES[:], rest = split_overrides(argv[1:])
  return cli.flags_parser(argv[:1] + rest)


if __name__ == '__main__':
  flags.mark_flag_as_required('preset')
  app.run(main, flags_parser=_flags_parser)
