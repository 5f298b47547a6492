"""Where the repository and its presets are, the smallest GPT the tests
launch on the command line, the environment they launch it in, and what
they check of a command's result and of the folders it may touch."""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'experiments', 'configs')
CPU_PRESET = os.path.join(CONFIG_DIR, 'shakespeare_char_cpu.py')
# shakespeare_char_cpu shrunk to a 1-layer, 32-wide GPT reading batches of 4
# windows of 16 characters: seconds to train a few steps.
TINY_GPT = ['--config.num_layers=1', '--config.embed_dim=32',
            '--config.num_heads=2', '--config.block_size=16',
            '--config.batch_size=4']
# Its sitecustomize.py makes every host-name lookup fail.
_OFFLINE_SHIM = os.path.join(REPO_ROOT, 'tests', 'offline')


def command_env(offline: bool = False, **overrides: str) -> dict[str, str]:
  """The environment of a subprocess running lm_jax's command line.

  This process's, less the tests' forced XLA device count (the entry
  points pick their own devices), with the repository importable, then
  `overrides`. `offline`: no host name resolves in it.
  """
  env = dict(os.environ)
  flags = [f for f in env.pop('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  if flags:
    env['XLA_FLAGS'] = ' '.join(flags)
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO_ROOT, _OFFLINE_SHIM] if offline else [REPO_ROOT])
  env.update(overrides)
  return env


def python_module(module, *args):
  """The command line running `python -m module args...`."""
  return [sys.executable, '-m', module, *args]


def snapshot(folder):
  """Every file's bytes and every folder under `folder` (None if absent)."""
  if not os.path.exists(folder):
    return None
  out = {}
  for root, dirs, files in os.walk(folder):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), folder) + '/'] = None
    for f in files:
      path = os.path.join(root, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, folder)] = fh.read()
  return out


def assert_unchanged(folder, before):
  """`folder` is as `snapshot` saw it: nothing added, removed or changed."""
  after = snapshot(folder)
  if before is None or after is None:
    assert after == before, (
        f'{folder} was created' if before is None else f'{folder} was removed')
    return
  added = sorted(set(after) - set(before))
  removed = sorted(set(before) - set(after))
  changed = sorted(k for k in set(before) & set(after)
                   if before[k] != after[k])
  assert not (added or removed or changed), (
      f'{folder} was touched: added {added}, removed {removed}, '
      f'changed {changed}')


def assert_one_error_line(result, code: int = 0) -> str:
  """The command failed (with exit `code`, where given) with exactly one
  `error:` line on stderr, which is returned."""
  report = (f'exit code {result.returncode}\nstderr:\n{result.stderr}\n'
            f'stdout:\n{result.stdout}')
  assert result.returncode == code if code else result.returncode != 0, report
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, report
  assert lines[0].startswith('error:'), report
  return lines[0]
