"""Every preset in experiments/configs trains one step on the real data.

Presets keep their model and optimizer settings, and run on as many of
the test process's CPU devices as `./launch.sh train` would give them here
(one where the preset asks for one); only the run length, the evaluation
and the checkpoint schedule are cut (and, for the GPU-sized
shakespeare_char recipe, the batch: 8 windows of 64 characters; for the
translation presets, 16 sentence pairs, because their smoke run also
beam-searches a batch of test sentences with untrained weights, which never
stop before the length limit).
"""

import fcntl
import importlib
import os
import shutil

import jax
import pytest

from experiments import before_jax, cli
from lm_jax.train import checkpoint, loop
from lm_jax.train.logging import read_metrics
from tests.command_line import CONFIG_DIR

PRESETS = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                 if f.endswith('.py') and f not in ('base.py', '__init__.py'))
SMALLER_BATCH = {'shakespeare_char': {'batch_size': 8, 'block_size': 64}}
# Beam search of an untrained model runs to the length limit: keep it short.
SMALLER_TRANSLATION_BATCH = {'batch_size': 16, 'max_decode_length': 8}
# Presets that start from another preset's run: preset -> (the config key
# naming that run's workdir, the other preset).
PRETRAINED_FROM = {'sst2_ulmfit': ('pretrained_lm', 'sst2_lm'),
                   'sst2_bilstm_elmo': ('elmo_bilm', 'sst2_bilm'),
                   'udpos_bilstm_elmo': ('elmo_bilm', 'udpos_bilm')}
SOURCES = {source for _, source in PRETRAINED_FROM.values()}


def one_step_config(preset, data_dir, cache_dir):
  config = importlib.import_module(f'experiments.configs.{preset}').get_config()
  if config.get('init_from'):
    pytest.skip('starts from another run: tests/experiments/'
                'test_bert_presets.py gives it one')
  config.num_train_steps, config.eval_steps = 1, 1
  config.num_epochs = 0  # else the run length comes from the epochs
  config.final_eval_full = False
  config.eval_every, config.checkpoint_every = 0, 0
  config.update(SMALLER_BATCH.get(preset, {}))
  if config.task == 'translate':
    config.update(SMALLER_TRANSLATION_BATCH)
  config.data_dir, config.cache_dir = data_dir, cache_dir
  if not config.num_devices:
    # The whole test mesh would shard a preset its real run does not (a
    # third of a smoke run's time, for a preset of one device).
    rows = config.batch_size // config.grad_accum_steps
    most = min(jax.device_count(),
               before_jax.cpu_device_count(config.cpu_devices, rows))
    config.num_devices = max(d for d in range(1, most + 1) if rows % d == 0)
  return config


def shared_one_step_run(preset, data_dir, cache_dir, run_dir) -> str:
  """The workdir of `preset`'s one-step run in `run_dir`, which the test
  run's workers share: the first test to need it trains it, under a lock;
  the others (its own smoke test, the presets starting from it) reuse it."""
  workdir = os.path.join(run_dir, preset)
  done = workdir + '.done'
  with open(workdir + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(done):
      shutil.rmtree(workdir, ignore_errors=True)  # a failed attempt's
      loop.train_and_evaluate(one_step_config(preset, data_dir, cache_dir),
                              workdir)
      open(done, 'w').close()
  return workdir


def test_presets_are_found():
  assert {'shakespeare_char', 'shakespeare_char_cpu', 'ptb_kn5', 'ptb_kn3',
          'shakespeare_char_ngram'} <= set(PRESETS)


@pytest.mark.parametrize('preset', PRESETS)
def test_preset_trains_one_step(preset, shared_data_dir, shared_cache_dir,
                                shared_run_dir, tmp_path):
  config = one_step_config(preset, shared_data_dir, shared_cache_dir)
  if preset in SOURCES:
    workdir = shared_one_step_run(preset, shared_data_dir, shared_cache_dir,
                                  shared_run_dir)
  else:
    if preset in PRETRAINED_FROM:
      key, source = PRETRAINED_FROM[preset]
      config[key] = shared_one_step_run(source, shared_data_dir,
                                        shared_cache_dir, shared_run_dir)
    workdir = str(tmp_path)
    loop.train_and_evaluate(config, workdir)

  records = read_metrics(workdir)
  if config.task == 'ngram':  # estimated by counting: one record, a model
    assert [r['step'] for r in records] == [1]
    assert records[0]['eval_perplexity'] > 1
    assert records[0]['eval_loss'] > 0
    assert os.path.exists(os.path.join(workdir, 'model.arpa'))
    return

  assert [r['step'] for r in records if 'train_loss' in r] == [1]
  evaluated = [r for r in records if 'eval_loss' in r]
  assert [r['step'] for r in evaluated] == [1]
  assert evaluated[0]['eval_loss'] > 0
  reader = checkpoint.Checkpointer(workdir, async_save=False)
  assert reader.steps() == [1]
  reader.close()
