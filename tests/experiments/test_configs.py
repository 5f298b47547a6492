"""Every preset in experiments/configs trains one step on the real data.

Presets keep their model and optimizer settings; only the run length, the
evaluation and the checkpoint schedule are cut (and, for the GPU-sized
shakespeare_char recipe, the batch: 8 windows of 64 characters; for the
translation presets, 16 sentence pairs, because their smoke run also
beam-searches a batch of test sentences with untrained weights, which never
stop before the length limit).
"""

import importlib
import os

import pytest

from lm_jax.train import checkpoint, loop
from lm_jax.train.logging import read_metrics

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'experiments', 'configs')
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
  return config


def test_presets_are_found():
  assert {'shakespeare_char', 'shakespeare_char_cpu', 'ptb_kn5', 'ptb_kn3',
          'shakespeare_char_ngram'} <= set(PRESETS)


@pytest.mark.parametrize('preset', PRESETS)
def test_preset_trains_one_step(preset, shared_data_dir, shared_cache_dir,
                                tmp_path):
  config = one_step_config(preset, shared_data_dir, shared_cache_dir)
  if preset in PRETRAINED_FROM:
    key, source = PRETRAINED_FROM[preset]
    config[key] = str(tmp_path / source)
    loop.train_and_evaluate(
        one_step_config(source, shared_data_dir, shared_cache_dir),
        config[key])
    tmp_path = tmp_path / preset

  results = loop.train_and_evaluate(config, str(tmp_path))

  if config.task == 'ngram':  # estimated by counting: one record, a model
    records = read_metrics(str(tmp_path))
    assert [r['step'] for r in records] == [1]
    assert records[0]['eval_perplexity'] > 1 and results['eval_loss'] > 0
    assert os.path.exists(tmp_path / 'model.arpa')
    return

  records = read_metrics(str(tmp_path))
  assert [r['step'] for r in records if 'train_loss' in r] == [1]
  assert [r['step'] for r in records if 'eval_loss' in r] == [1]
  assert results['eval_loss'] > 0
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [1]
  reader.close()
