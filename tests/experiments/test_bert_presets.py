"""The BERT presets that start from another run (sst2_minilm,
sst2_bert_small) train one step on the real SST-2 data, from a tiny random
Hugging Face BERT imported in place of the real checkpoint; and the
`import-hf` and `encode` commands work end to end and fail with one error
line on bad input.

(bert_mlm_small, which starts from nothing, is in test_configs.py with
every other preset.)
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import bert_mlm_small
from lm_jax import import_hf
from lm_jax.train import checkpoint, loop
from lm_jax.train.logging import read_metrics
from tests import fake_hf_bert
from tests.command_line import REPO_ROOT, command_env


@pytest.fixture(scope='module')
def tiny_import(tmp_path_factory):
  root = tmp_path_factory.mktemp('tiny_hf_bert')
  fake_hf_bert.write_folder(root / 'hf', seed=2)
  import_hf.import_hf(str(root / 'hf'), str(root / 'run'),
                      bert_mlm_small.get_config())
  return str(root / 'run')


@pytest.mark.parametrize('preset', ['sst2_minilm', 'sst2_bert_small'])
def test_preset_trains_one_step_from_an_import(preset, tiny_import,
                                               shared_data_dir,
                                               shared_cache_dir, tmp_path):
  config = importlib.import_module(f'experiments.configs.{preset}'
                                   ).get_config()
  assert config.init_from.endswith(os.path.join('runs', 'minilm')
                                   if preset == 'sst2_minilm' else
                                   os.path.join('runs', 'bert_mlm_small'))
  config.init_from = tiny_import
  config.num_train_steps, config.eval_steps = 1, 1
  config.final_eval_full = False
  config.eval_every, config.checkpoint_every = 0, 0
  config.data_dir, config.cache_dir = shared_data_dir, shared_cache_dir

  results = loop.train_and_evaluate(config, str(tmp_path))

  records = read_metrics(str(tmp_path))
  assert [r['step'] for r in records if 'train_loss' in r] == [1]
  assert 0 <= results['eval_accuracy'] <= 1 and results['eval_loss'] > 0
  reader = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert reader.steps() == [1]
  reader.close()


def _run(args, tmp_path):
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO_ROOT,
                        env=command_env(),
                        capture_output=True, text=True, timeout=300)


def test_import_and_encode_commands(tmp_path):
  fake_hf_bert.write_folder(tmp_path / 'hf', seed=4)
  done = _run(['experiments.import_hf', '--hf_dir', str(tmp_path / 'hf'),
               '--workdir', str(tmp_path / 'run')], tmp_path)
  assert done.returncode == 0, done.stderr
  assert {'config.json', 'tokenizer.json', 'checkpoints'} <= set(
      os.listdir(tmp_path / 'run'))
  texts = ['the film was great !', 'a dull , unlikely story']
  # Without the suffix, np.savez adds it: the message names the file.
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'run'),
               '--text', texts[0], '--text', texts[1], '--out',
               str(tmp_path / 'out')], tmp_path)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip().endswith(str(tmp_path / 'out.npz'))
  with np.load(tmp_path / 'out.npz') as out:
    assert sorted(out) == ['emb_0', 'emb_1', 'hidden_0', 'hidden_1', 'ids_0',
                           'ids_1']
    assert out['ids_0'][0] == 5 and out['ids_0'][-1] == 6  # [CLS], [SEP]
    assert out['hidden_1'].shape == (len(out['ids_1']), 32)
    assert out['hidden_1'].dtype == np.float32
    mean = out['hidden_0'].mean(0)
    np.testing.assert_allclose(out['emb_0'], mean / np.linalg.norm(mean),
                               rtol=1e-5, atol=1e-6)
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'run'),
               '--text', texts[0], '--out', str(tmp_path / 'long.npz'),
               '--max_length', '65'], tmp_path)
  assert done.returncode == 2 and done.stderr.strip().splitlines() == [
      "error: --max_length 65 exceeds the model's 64 positions"]

  # As a run trained here on sequences of 8 ids: it learnt 8 positions.
  config_file = tmp_path / 'run' / 'config.json'
  config = json.loads(config_file.read_text())
  config.update(num_train_steps=5, block_size=8)
  config_file.write_text(json.dumps(config))
  long_text = ' '.join(texts * 3)
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'run'),
               '--text', long_text, '--out', str(tmp_path / 'cut.npz')],
              tmp_path)
  assert done.returncode == 0 and 'warning' not in done.stderr, done.stderr
  with np.load(tmp_path / 'cut.npz') as out:
    assert len(out['ids_0']) == 8
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'run'),
               '--text', long_text, '--out', str(tmp_path / 'cut.npz'),
               '--max_length', '16'], tmp_path)
  assert done.returncode == 0, done.stderr
  assert 'trained positions below 8 only' in done.stderr
  with np.load(tmp_path / 'cut.npz') as out:
    assert len(out['ids_0']) == 16


def test_encode_checks_the_workdir_before_reading_stdin(tmp_path,
                                                        monkeypatch, capsys):
  """Without --text, a mistyped workdir was only reported once stdin
  ended (at a terminal: after Ctrl-D)."""
  from absl import flags
  from absl.testing import flagsaver
  from experiments import encode

  class Unreadable:
    def __iter__(self):
      raise AssertionError('stdin read before the workdir was checked')

    read = readline = __iter__

  monkeypatch.setattr(sys, 'stdin', Unreadable())
  parsed = flags.FLAGS.is_parsed()
  with flagsaver.flagsaver():
    try:
      flags.FLAGS(['encode', '--workdir', str(tmp_path / 'typo'), '--out',
                   str(tmp_path / 'out.npz')])
      with pytest.raises(SystemExit) as exited:
        encode.main(['encode'])
    finally:
      if not parsed:
        flags.FLAGS.unparse_flags()
  assert exited.value.code == 2
  assert 'holds no run' in capsys.readouterr().err


def test_commands_fail_with_one_error_line(tmp_path):
  done = _run(['experiments.import_hf', '--hf_dir', str(tmp_path / 'none'),
               '--workdir', str(tmp_path / 'run')], tmp_path)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f'error: {tmp_path / "none"} has no config.json; a Hugging Face BERT '
      'folder holds config.json, model.safetensors and vocab.txt']
  assert not (tmp_path / 'run').exists()
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'none'),
               '--text', 'x', '--out', str(tmp_path / 'out.npz')], tmp_path)
  assert done.returncode == 2 and done.stderr.startswith('error: ')
  assert len(done.stderr.strip().splitlines()) == 1
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'none'),
               '--text', 'x', '--out', str(tmp_path / 'out.npz'),
               '--batch_size', '0'], tmp_path)
  assert done.returncode == 2 and 'batch_size' in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1
  done = _run(['experiments.encode', '--workdir', str(tmp_path / 'none'),
               '--text', 'x', '--out', str(tmp_path / 'out.npz'),
               '--max_length', '1'], tmp_path)
  assert done.returncode == 2 and 'max_length >= 2' in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('damage, message', [
    ('workdir_is_a_file', 'is a file'),
    ('truncated_weights', 'model.safetensors is unreadable'),
    ('config_without_layers', 'lacks num_hidden_layers'),
    ('config_not_json', 'config.json is not JSON'),
    ('config_not_an_object', 'config.json holds a JSON list'),
    ('tokenizer_json_not_json', 'tokenizer.json is not JSON'),
    ('tokenizer_config_not_json', 'tokenizer_config.json is not JSON'),
    ('tokenizer_config_not_an_object',
     'tokenizer_config.json holds a JSON str'),
    ('vocab_not_utf8', 'vocab.txt is not UTF-8'),
])
def test_a_bad_folder_or_workdir_is_one_value_error(tmp_path, damage,
                                                     message):
  """What the command turns into one error line, before writing anything;
  a damaged file is named."""
  hf, workdir = tmp_path / 'hf', tmp_path / 'run'
  fake_hf_bert.write_folder(hf, seed=4)
  if damage == 'workdir_is_a_file':
    workdir.write_text('a file')
  elif damage == 'truncated_weights':
    weights = (hf / 'model.safetensors').read_bytes()
    (hf / 'model.safetensors').write_bytes(weights[:100])
  elif damage == 'config_not_an_object':
    (hf / 'config.json').write_text('[]')
  elif damage == 'tokenizer_json_not_json':
    (hf / 'tokenizer.json').write_text('{"normalizer": ')
  elif damage == 'tokenizer_config_not_json':
    (hf / 'tokenizer_config.json').write_text('{"do_lower_case": tru')
  elif damage == 'tokenizer_config_not_an_object':
    (hf / 'tokenizer_config.json').write_text('"BertTokenizer"')
  elif damage == 'vocab_not_utf8':
    (hf / 'vocab.txt').write_bytes(
        (hf / 'vocab.txt').read_bytes() + 'café\n'.encode('latin-1'))
  else:
    config = json.loads((hf / 'config.json').read_text())
    del config['num_hidden_layers']
    (hf / 'config.json').write_text(
        json.dumps(config) if damage == 'config_without_layers' else '{"a')
  with pytest.raises(ValueError, match=message):
    import_hf.import_hf(str(hf), str(workdir), bert_mlm_small.get_config())
  assert workdir.is_file() if damage == 'workdir_is_a_file' else (
      not workdir.exists())
