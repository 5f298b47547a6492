"""Where the repository and its presets are, the smallest GPT the tests
launch on the command line, and the environment they launch it in."""

import os

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
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO_ROOT, _OFFLINE_SHIM] if offline else [REPO_ROOT])
  env.update(overrides)
  return env
