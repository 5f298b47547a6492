"""Trains a preset: python -m experiments.train --config FILE [--workdir DIR]

Extra `--config.KEY=VALUE` flags override the preset. The workdir defaults
to runs/PRESET, or runs/PRESET-KEY-VALUE... where the overrides change the
training (`cli.default_workdir`). A second launch in the same workdir
resumes from its latest checkpoint.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import before_jax, cli, config_checks

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Preset file.')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (default: see above).')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; settings are '
             '--config.KEY=VALUE')
  if _CONFIG.value is None:
    cli.fail('--config PRESET_FILE is required (a preset whose get_config '
             'returns None counts as none)')
  config = _CONFIG.value
  preset = os.path.splitext(os.path.basename(
      flags.FLAGS['config'].config_filename))[0]
  workdir = (_WORKDIR.value if _WORKDIR.value is not None
             else cli.default_workdir(preset, sys.argv[1:]))
  config_checks.check_values(config)
  config_checks.check_given(config, sys.argv[1:])
  cli.resolve_paths(config)
  overridden = cli.config_overrides(sys.argv[1:])
  cli.check_workdir(config, workdir, overridden)
  before_jax.use_compilation_cache(config.cache_dir)
  before_jax.set_cpu_devices(before_jax.cpu_device_count(
      config.cpu_devices, config.batch_size // config.grad_accum_steps,
      config.num_devices))
  if config.multihost:
    from lm_jax.train.parallel import initialize_distributed
    initialize_distributed(config.coordinator_address, config.num_processes,
                           config.process_id)
  cli.setup_logging()
  from lm_jax.train.loop import train_and_evaluate
  # Checked again with the workdir held: a launch in it may have ended
  # since.
  results = cli.run_guarded(
      lambda: train_and_evaluate(
          config, workdir,
          lambda: cli.check_workdir(config, workdir, overridden)),
      interrupted='relaunch the same command to resume from the last '
      'checkpoint')
  print('final ' + ' '.join(f'{k}={v:.4f}' for k, v in results.items()))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser)
