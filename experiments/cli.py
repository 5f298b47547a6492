"""Command-line plumbing shared by the entry points: config loading, paths
from the environment, and one-line errors for bad input."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shlex
import sys
from typing import Callable, Collection, NoReturn, Optional, Sequence

from absl import flags
import ml_collections

from lm_jax.train.logging import (CONFIG_FILE, METRICS_FILE,
                                  architecture_of, read_run_config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, 'experiments', 'configs')


def _quiet_failed_checkpoint_reads() -> None:
  """Orbax reads a checkpoint inside `asyncio.run`; when a corrupt one fails
  the restore, tensorstore's reads still in flight call back into the
  closed loop from their threads, and each 'Event loop is closed' goes to
  `sys.unraisablehook` as a traceback, after or amid the one error line.
  So does each of Orbax's read coroutines that failed after the first, its
  exception never retrieved, when it is collected (60 lines of TensorStore
  spec apiece), and asyncio logs the same for their tasks and futures. The
  first failure is what the caller reports. (Only Orbax runs asyncio here.)
  """
  logging.getLogger('asyncio').addFilter(
      lambda record: 'exception was never retrieved' not in record.getMessage())
  previous = sys.unraisablehook
  orbax_dir = f'{os.sep}orbax{os.sep}'

  def hook(info):
    if (issubclass(info.exc_type, RuntimeError)
        and str(info.exc_value) == 'Event loop is closed'):
      return
    code = getattr(info.object, 'cr_code', None)  # a coroutine's
    if code is not None and orbax_dir in code.co_filename:
      return
    previous(info)

  sys.unraisablehook = hook


def setup_logging() -> None:
  """lm_jax's progress lines on stderr; other libraries' INFO chatter off."""
  _quiet_failed_checkpoint_reads()
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)
  log = logging.getLogger('lm_jax')
  if not log.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s',
                                           '%H:%M:%S'))
    log.addHandler(handler)
  log.setLevel(logging.INFO)
  log.propagate = False


def fail(message: str, code: int = 2) -> NoReturn:
  """Prints one line to stderr and exits."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def presets() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                if f.endswith('.py') and f not in ('base.py', '__init__.py'))


# Flags naming a file or folder. The shell expands `~` in `--workdir ~/x`
# but not in `--workdir=~/x`, which would make a folder named '~' here.
_PATH_FLAGS = ('workdir', 'sweep_dir', 'hf_dir', 'out', 'export',
               'attention_png')


def expand_home(arg: str) -> str:
  """`--PATH_FLAG=~/x` as the shell expands `--PATH_FLAG ~/x`."""
  name, eq, value = arg.partition('=')
  if eq and name.lstrip('-') in _PATH_FLAGS and value.startswith('~'):
    return f'{name}={os.path.expanduser(value)}'
  return arg


def flags_parser(argv: list[str]) -> list[str]:
  """absl's parser, with flag errors (an unknown preset or config key, a
  value of the wrong type) reduced to one line and exit code 2; path flags'
  `~` expanded (`expand_home`)."""
  argv = [argv[0], *map(expand_home, argv[1:])]
  for arg in argv[1:]:
    # The presets are flat: a key is a plain name (ml_collections would
    # read 'a.b' or 'a[0]' as a path into it and fail obscurely).
    if arg.startswith('--config.'):
      key = arg[len('--config.'):].split('=', 1)[0]
      if not re.fullmatch(r'[A-Za-z_]\w*', key):
        fail(f'{arg.split("=", 1)[0]}: a config key is a plain name (see '
             'experiments/configs/base.py for the keys)')
  try:
    remaining = flags.FLAGS(argv)
    if 'config' in flags.FLAGS and flags.FLAGS['config'].value is not None:
      # config_flags defers a preset file's load error to its first use.
      flags.FLAGS['config'].value.get('task')
    return remaining
  except flags.Error as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "Could not override" in message or 'Key' in message:
      message += ' (see experiments/configs/base.py for the keys)'
    fail(message)
  except (AttributeError, KeyError) as e:
    # ml_collections' error for --config.KEY=VALUE with an unknown KEY; the
    # same errors from inside a preset's get_config are the preset's.
    overridden = set(config_overrides(argv[1:]))
    key, *hint = re.findall(r"[A-Za-z_][\w.]*(?=\\*['\"])", str(e)) or ['']
    if key not in overridden:
      fail(f'cannot load the preset: {type(e).__name__}: {e}')
    fail(f'unknown config key {key!r}'
         + (f'; did you mean {hint[0]!r}?' if hint else '')
         + ' (see experiments/configs/base.py for the keys)')
  except (FileNotFoundError, ImportError, OSError) as e:
    given = [b if a == '--config' else a.split('=', 1)[1]
             for a, b in zip(argv, argv[1:] + [''])
             if a == '--config' or a.startswith('--config=')]
    what = f'cannot load the preset file {given[0]}' if given else str(
        e).splitlines()[0]
    fail(f'{what} (presets: {", ".join(presets())})')


# Settings that name files or folders. A launch records them absolute, so
# config.json means the same from any directory, and a relaunch compares
# where they lead rather than how they were spelt.
_PATH_SETTINGS = ('data_dir', 'cache_dir', 'similarity_dir', 'text_file',
                  'init_from', 'pretrained_lm', 'elmo_bilm')


def resolve_paths(config: ml_collections.ConfigDict) -> None:
  """Fills `data_dir` and `cache_dir` from the environment when unset,
  and makes every path setting absolute.

  data_dir: --config.data_dir, else $LM_JAX_DATA; fails if it is set and
    not a folder (a prepared copy in the cache would otherwise hide the
    typo, and config.json record a folder that is not there).
  cache_dir: --config.cache_dir, else $LM_JAX_CACHE, else ~/.cache/lm_jax.
  """
  with config.unlocked():
    source = '--config.data_dir'
    if not config.data_dir:
      config.data_dir = os.environ.get('LM_JAX_DATA', '')
      source = 'LM_JAX_DATA'
    if not config.cache_dir:
      config.cache_dir = os.environ.get(
          'LM_JAX_CACHE', os.path.join(os.path.expanduser('~'), '.cache',
                                       'lm_jax'))
    for key in _PATH_SETTINGS:
      if config.get(key):
        config[key] = os.path.abspath(os.path.expanduser(config[key]))
  if config.data_dir and not os.path.isdir(config.data_dir):
    fail(f'the data dir {config.data_dir} (from {source}) is not a folder; '
         'point it at the folder holding the raw corpora, or leave it unset '
         'to use downloads and datasets prepared earlier')


def _read_run_config(workdir: str) -> Optional[dict]:
  """`workdir`'s config.json; None if there is none, one error line if it
  is not a run's."""
  try:
    return read_run_config(workdir)
  except FileNotFoundError:
    return None
  except ValueError as e:  # its message names the file
    fail(f'{e}; restore it or use another workdir')
  except OSError as e:
    path = os.path.join(workdir, CONFIG_FILE)
    fail(f'{path} is unreadable ({type(e).__name__}: '
         f'{str(e).splitlines()[0] if str(e) else ""}); restore it or use '
         'another workdir')


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with; keys added since it
  was trained take their defaults (what the code did before them)."""
  if os.path.isfile(workdir):
    fail(f'{workdir} is a file, not a run directory; pass the folder '
         'that holds config.json')
  config = _read_run_config(workdir)
  if config is None:
    fail(f'{workdir} holds no run (no config.json); train one first with '
         './launch.sh train PRESET --workdir DIR')
  # pylint: disable-next=import-outside-toplevel
  from experiments.configs import base
  defaults = json.loads(base.get_config().to_json_best_effort())
  return ml_collections.ConfigDict({**defaults, **config})


# What makes a run another kind of run: training one of these into a
# workdir of another would overwrite that run's files.
_RUN_KIND = ('task', 'model', 'corpus')

# Settings that leave a run's training as it is: how it is evaluated,
# logged and saved, where its files are, and its devices (1 or N give the
# same steps). They do not name a run (`default_workdir`).
_BOOKKEEPING = frozenset({
    'eval_every', 'eval_steps', 'final_eval_full', 'eval_streams',
    'log_every', 'checkpoint_every', 'keep_checkpoints', 'async_checkpoint',
    'profile_steps', 'steps_per_call', 'num_devices', 'cpu_devices',
    'coordinator_address', 'num_processes', 'process_id', 'multihost',
    'data_dir', 'cache_dir', 'similarity_dir', 'beam_size', 'length_penalty',
    'max_decode_length'})

# What a relaunch may change in a run with results: the bookkeeping, how
# long it goes (a schedule that decays over num_train_steps then stretches
# from the step it resumes at), and switches between equal computations
# (fused kernels, the unroll; their roundings differ). Any other change
# would leave config.json describing steps that were not taken with it.
_RELAUNCH_MAY_CHANGE = _BOOKKEEPING | {
    'num_train_steps', 'num_epochs', 'fused_attention', 'fused_lstm',
    'fused_cross_entropy', 'folded_output', 'rnn_unroll'}


def run_name(settings: dict[str, str]) -> str:
  """A stable, filesystem-safe directory name, e.g. `batch_size-12_lr-0.1`."""
  return '_'.join(re.sub(r'[^A-Za-z0-9.+-]', '_', f'{k}-{settings[k]}')
                  for k in sorted(settings))


def config_overrides(args: Sequence[str]) -> dict[str, str]:
  """The `--config.KEY=VALUE` (or `--config.KEY VALUE`) flags in `args`, as
  {KEY: VALUE}; a bare boolean `--config.KEY` is 'true'."""
  out, i = {}, 0
  while i < len(args):
    arg = args[i]
    if arg.startswith('--config.'):
      key, sep, value = arg[len('--config.'):].partition('=')
      if not sep:
        following = args[i + 1] if i + 1 < len(args) else '--'
        value = 'true' if following.startswith('--') else following
        i += not following.startswith('--')
      out[key] = value
    i += 1
  return out


def default_workdir(preset: str, args: Sequence[str]) -> str:
  """`runs/PRESET`, or for a launch whose `--config.KEY=VALUE` flags change
  the training, `runs/PRESET-KEY-VALUE...` (`run_name`): such a launch is
  another run, not a relaunch of the preset's own."""
  settings = {k: v for k, v in config_overrides(args).items()
              if k not in _BOOKKEEPING}
  name = f'{preset}-{run_name(settings)}' if settings else preset
  return os.path.join(ROOT, 'runs', name)


def _has_results(workdir: str) -> bool:
  """Whether `workdir` holds a checkpoint or a metrics record (a counting
  run, such as an n-gram model's, has no checkpoints)."""
  directory = os.path.join(workdir, 'checkpoints')
  if os.path.isdir(directory) and any(
      name.isdigit() for name in os.listdir(directory)):
    return True
  metrics = os.path.join(workdir, METRICS_FILE)
  return os.path.isfile(metrics) and os.path.getsize(metrics) > 0


def _differs(key: str, before, now) -> bool:
  if key in _PATH_SETTINGS and before and now:  # 'runs/lm' is /repo/runs/lm
    return os.path.realpath(before) != os.path.realpath(now)
  return before != now


def _adopted_architecture(config: ml_collections.ConfigDict) -> dict:
  """The settings a run started from another (`init_from`) took from it:
  the source run's architecture keys (`masked_lm.adopt_pretrained`)."""
  if not config.get('init_from'):
    return {}
  return architecture_of(_read_run_config(config.init_from) or {})


def _check_relaunch(previous: dict, config: ml_collections.ConfigDict,
                    workdir: str, overridden: Collection[str]) -> None:
  """Fails if a relaunch of the run in `workdir` changes a setting its
  results were trained with (see `_RELAUNCH_MAY_CHANGE`)."""
  if not _has_results(workdir):
    return  # nothing trained yet: the run starts again as launched
  current = json.loads(config.to_json_best_effort())
  adopted = _adopted_architecture(config)
  changed = sorted(k for k in previous.keys() & current.keys()
                   if k not in _RELAUNCH_MAY_CHANGE
                   and _differs(k, previous[k], current[k])
                   and adopted.get(k, current[k]) != previous[k])
  if changed:
    shown = ', '.join(f'{k}={previous[k]!r} (now {current[k]!r})'
                      for k in changed[:3])
    more = f' and {len(changed) - 3} more' if len(changed) > 3 else ''
    if set(changed) & set(overridden):
      fix = 'drop those overrides, or pick another --workdir'
    elif all(isinstance(previous[k], (bool, int, float, str))
             and k not in adopted for k in changed):
      # Flags the first launch had, or a pull that changed the preset. The
      # workdir is named: with the flags, the default one would differ.
      flags_then = ' '.join(shlex.quote(f'--config.{k}={previous[k]}')
                            for k in changed)
      fix = (f'to resume it, relaunch with --workdir {shlex.quote(workdir)} '
             f'{flags_then}; to train it anew, move {workdir} away or pick '
             'another --workdir')
    else:  # values no flag can set back
      fix = f'move {workdir} away to train it anew, or pick another --workdir'
    fail(f'{workdir} holds a run trained with {shown}{more}; a relaunch '
         f'resumes it and cannot change that: {fix}')


def check_workdir(config: ml_collections.ConfigDict, workdir: str,
                  overridden: Collection[str] = ()) -> None:
  """Fails, before anything is written, where `workdir` cannot take a run
  of `config`: a file, the workdir of another kind of run, or of this run
  trained with other settings (`overridden`: the keys the command's
  --config flags set, for the advice)."""
  if not workdir:
    fail('--workdir is empty; name a run directory')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    fail(f'{workdir} is a file, not a run directory; pick another --workdir')
  ancestor = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    fail(f'{ancestor} is a file, so {workdir} cannot be made; pick another '
         '--workdir')
  previous = _read_run_config(workdir)
  if previous is None:
    return
  if any(previous.get(k) != config.get(k) for k in _RUN_KIND):
    held = ', '.join(f'{k} {previous.get(k)!r}' for k in _RUN_KIND)
    fail(f'{workdir} holds another run ({held}); pick another --workdir '
         'for this one')
  _check_relaunch(previous, config, workdir, overridden)


def _reader_gone() -> bool:
  """Whether stdout is a pipe whose reader has closed it."""
  try:
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLERR)
    return any(event & select.POLLERR for _, event in poller.poll(0))
  except (AttributeError, OSError, ValueError):  # no stdout, or no poll
    return False


def run_guarded(main: Callable[[], object],
                interrupted: Optional[str] = None) -> object:
  """Runs `main`, turning expected user errors into one line and exit 2.

  Missing data (`DataNotFoundError`) and missing checkpoints are both
  `FileNotFoundError`s; other `OSError`s are paths that cannot be read or
  written (a file where a folder should be, no permission, a full disk).
  A reader that stops early (`| head`) ends the command quietly, exit 1.
  With `interrupted` (what to do next), Ctrl-C, once it has unwound `main`
  (which closes what it holds open, a checkpoint being saved), ends in the
  line 'interrupted; ' + `interrupted`, exit 130, not a traceback.
  """
  try:
    result = main()
    if sys.stdout is not None:  # None where it was closed (`>&-`)
      sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
    return result
  except KeyboardInterrupt:
    if interrupted is None:
      raise
    fail(f'interrupted; {interrupted}', 130)
  except BrokenPipeError:
    if not _reader_gone():  # another pipe than stdout's
      raise
    # Python flushes stdout again at exit, which would fail the same way.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
  except (FileNotFoundError, BlockingIOError) as e:  # a held workdir
    fail(str(e))
  except OSError as e:
    if not e.filename:  # not about a path (a timeout, a lost connection)
      raise
    fail(f'{e.filename}: {e.strerror or e}; check the path and its '
         'permissions')
  except ValueError as e:
    fail((str(e).splitlines() or [f'{type(e).__name__} (no message)'])[0])
