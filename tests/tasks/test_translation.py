"""Tests of the translation task and the translate command, on a tiny
made-up German -> English corpus laid out as Multi30k's files: the task's
vocabularies, batches and losses, a short training run through the one
loop (BLEU and test figures in metrics.jsonl), `experiments.translate` end
to end, and one-line errors for bad input."""

import functools
import gzip
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import multi30k_gru_bahdanau, multi30k_transformer
from lm_jax import tasks
from lm_jax.data import tokenizers
from lm_jax.tasks import translation
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics
from tests.command_line import (CONFIG_DIR, REPO_ROOT, assert_one_error_line,
                                command_env)

LEXICON = {'ein': 'a', 'der': 'the', 'hund': 'dog', 'katze': 'cat',
           'mann': 'man', 'frau': 'woman', 'läuft': 'runs',
           'springt': 'jumps', 'schläft': 'sleeps', 'isst': 'eats',
           'rote': 'red', 'große': 'big', 'kleine': 'small', 'alte': 'old',
           'hier': 'here', 'dort': 'there'}
SLOTS = (('ein', 'der'), ('rote', 'große', 'kleine', 'alte'),
         ('hund', 'katze', 'mann', 'frau'),
         ('läuft', 'springt', 'schläft', 'isst'), ('hier', 'dort'))


def _pair(rng):
  words = [rng.choice(slot) for slot in SLOTS]
  return (' '.join(words).capitalize() + '.',
          ' '.join(LEXICON[w] for w in words).capitalize() + '.')


@pytest.fixture(scope='module')
def tiny_parallel_dir(tmp_path_factory):
  """A data dir with multi30k/{train,val,test_2016_flickr}.{de,en}.gz of
  word-for-word translatable sentences (400 / 40 / 40 pairs)."""
  root = tmp_path_factory.mktemp('tiny_parallel')
  (root / 'multi30k').mkdir()
  rng = np.random.default_rng(0)
  for name, count in (('train', 400), ('val', 40), ('test_2016_flickr', 40)):
    pairs = [_pair(rng) for _ in range(count)]
    for i, lang in enumerate(('de', 'en')):
      with gzip.open(root / 'multi30k' / f'{name}.{lang}.gz', 'wt',
                     encoding='utf-8') as f:
        f.write(''.join(p[i] + '\n' for p in pairs))
  return str(root)


@pytest.fixture(scope='module')
def make_config(tiny_parallel_dir, tmp_path_factory):
  cache = str(tmp_path_factory.mktemp('tiny_parallel_cache'))

  def make(preset=multi30k_transformer, **overrides):
    c = preset.get_config()
    c.num_layers, c.embed_dim, c.num_heads = 1, 32, 2
    c.hidden_size, c.decoder_size, c.attention_size, c.readout_size = (
        16, 32, 16, 16)
    c.spm_vocab_size, c.batch_size = 60, 16
    c.num_epochs, c.num_train_steps = 0, 200
    c.warmup_steps, c.learning_rate, c.dropout_rate = 10, 3e-3, 0.0
    c.eval_every, c.eval_steps, c.checkpoint_every, c.log_every = (
        100, 2, 100, 50)
    c.beam_size, c.max_decode_length = 2, 32
    c.data_dir, c.cache_dir = tiny_parallel_dir, cache
    c.update(overrides)
    return c

  return make


def test_joint_and_separate_vocabularies(make_config):
  joint = tasks.make_task(make_config())
  joint.prepare()
  assert joint.source_tokenizer is joint.target_tokenizer
  separate = tasks.make_task(make_config(multi30k_gru_bahdanau))
  separate.prepare()
  assert separate.source_tokenizer is not separate.target_tokenizer
  # Each vocabulary was learnt from its own side of the training split:
  # German's umlauts are pieces of the source vocabulary only.
  pieces = lambda tok: ''.join(tok.pieces(range(tok.vocab_size)))  # noqa: E731
  assert 'ä' in pieces(separate.source_tokenizer)
  assert 'ä' not in pieces(separate.target_tokenizer)
  assert 'ä' in pieces(joint.target_tokenizer)


def test_batches_and_losses(make_config):
  task = tasks.make_task(make_config(label_smoothing=0.1))
  task.prepare()
  assert task.steps_per_epoch == 400 // 16
  batch = next(task.train_stream(slice(None)))
  assert batch['inputs'].shape[0] == 16
  assert set(batch) == {'inputs', 'decoder_inputs', 'targets', 'weights'}
  # Jitted: run op by op, the initialiser and the loss take seconds more.
  params = jax.jit(task.model.init)(jax.random.key(0),
                                    task.dummy_batch()['inputs'])['params']
  metrics = jax.jit(functools.partial(task.loss, train=False))(
      params, batch, jax.random.key(1))
  assert set(metrics) == {'loss', 'nll', 'accuracy'}
  assert float(metrics['loss'][1]) == batch['weights'].sum()
  assert metrics['loss'][0] > metrics['nll'][0]  # smoothing costs extra
  full = list(task.eval_batches(slice(None), full=True))
  assert sum(b['weights'].sum() for b in full) == sum(
      len(t) + 1 for t in task.ids['validation'][1])


def test_unknown_tokenizer_or_model_is_an_error(make_config):
  with pytest.raises(ValueError, match='sentencepiece'):
    tasks.make_task(make_config(tokenizer='char')).prepare()
  with pytest.raises(ValueError, match='no model'):
    tasks.make_task(make_config(model='gpt')).prepare()
  # Two vocabularies of one size cannot share one embedding table.
  with pytest.raises(ValueError, match='one joint vocabulary'):
    tasks.make_task(make_config(spm_joint=False)).prepare()
  separate = tasks.make_task(make_config(spm_joint=False,
                                         share_embeddings='decoder'))
  separate.prepare()
  assert separate.source_tokenizer is not separate.target_tokenizer


@pytest.fixture(scope='module')
def trained_workdir(make_config, tmp_path_factory):
  """A Transformer trained 200 steps on the tiny corpus."""
  workdir = str(tmp_path_factory.mktemp('translate_run'))
  results = loop.train_and_evaluate(make_config(), workdir)
  return workdir, results


def test_training_writes_bleu_and_test_figures(trained_workdir):
  workdir, results = trained_workdir
  records = read_metrics(workdir)
  final = records[-1]
  assert final['step'] == 200
  for key in ('eval_bleu', 'test_loss', 'test_perplexity', 'test_accuracy',
              'eval_perplexity'):
    assert key in final and key in results
  # A word-for-word code: learnt well within 200 steps.
  assert final['eval_bleu'] > 50
  assert final['test_accuracy'] > 0.9
  for name in (translation.SOURCE_TOKENIZER, translation.TARGET_TOKENIZER):
    assert isinstance(tokenizers.load(os.path.join(workdir, name)),
                      tokenizers.SentencePieceTokenizer)


def _run(args, stdin=None, **env_overrides):
  env = command_env(**env_overrides)
  return subprocess.run([sys.executable, '-m', 'experiments.translate',
                         *args], cwd=REPO_ROOT, env=env, input=stdin,
                        capture_output=True, text=True, timeout=300)


def _translations(workdir, sentences, beam_size):
  """What the trained run translates `sentences` to, in this process."""
  with open(os.path.join(workdir, 'config.json')) as f:
    import ml_collections
    config = ml_collections.ConfigDict(json.load(f))
  source, target = (tokenizers.load(os.path.join(workdir, name)) for name in
                    (translation.SOURCE_TOKENIZER,
                     translation.TARGET_TOKENIZER))
  model = translation.build_model(config, source.vocab_size,
                                  target.vocab_size)
  _, params = loop.restore_params(workdir, config, model,
                                  translation.dummy_inputs(config))
  translator = translation.Translator(model, source, target,
                                     config.max_decode_length)
  return translator.translate(params, sentences, beam_size,
                              config.length_penalty)


def test_translate_command_end_to_end(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  png = tmp_path / 'attention.png'
  sentences = ['Der alte mann isst dort.', 'Ein rote hund läuft hier.']
  result = _run(['--workdir', workdir, '--text', '\n'.join(sentences),
                 '--attention_png', str(png)])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines == _translations(workdir, sentences, beam_size=2)
  assert lines[0].startswith('The old man')  # trained enough for that
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  # '\u2028' (a line separator in Unicode) inside a line does not end it.
  greedy = _run(['--workdir', workdir, '--beam_size', '1'],
                stdin='Die kleine\u2028katze schläft.\n\nDer mann springt.\n')
  assert greedy.returncode == 0, greedy.stderr
  first, second = _translations(
      workdir, ['Die kleine\u2028katze schläft.', 'Der mann springt.'], 1)
  # A blank line in, a blank line out: line i answers line i.
  assert greedy.stdout.splitlines() == [first, '', second]


def test_translate_errors_are_one_line(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  missing = assert_one_error_line(
      _run(['--workdir', str(tmp_path / 'nothing'), '--text', 'Hallo']),
      code=2)
  assert 'no config.json' in missing
  lm_run = tmp_path / 'lm_run'
  lm_run.mkdir()
  (lm_run / 'config.json').write_text(json.dumps({'task': 'lm'}))
  assert 'not a translation' in assert_one_error_line(
      _run(['--workdir', str(lm_run), '--text', 'Hallo']), code=2)
  untrained = tmp_path / 'untrained'
  untrained.mkdir()
  for name in ('config.json', translation.SOURCE_TOKENIZER,
               translation.TARGET_TOKENIZER):
    with open(os.path.join(workdir, name), 'rb') as src:
      (untrained / name).write_bytes(src.read())
  assert 'no checkpoint' in assert_one_error_line(
      _run(['--workdir', str(untrained), '--text', 'Hallo']), code=2)
  assert 'nothing to translate' in assert_one_error_line(
      _run(['--workdir', workdir], stdin=''), code=2)
  assert '--workdir is required' in assert_one_error_line(
      _run(['--text', 'x']), code=2)
  assert 'finite' in assert_one_error_line(
      _run(['--workdir', workdir, '--text', 'x', '--length_penalty=nan']),
      code=2)


def test_train_with_missing_data_is_one_error_line(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  env = command_env(offline=True, LM_JAX_DATA=str(empty),
                    LM_JAX_CACHE=str(tmp_path / 'cache'))
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.train',
       '--config=' + os.path.join(CONFIG_DIR, 'multi30k_transformer.py'),
       f'--workdir={workdir}'], cwd=REPO_ROOT, env=env, capture_output=True,
      text=True, timeout=300)
  line = assert_one_error_line(result, code=2)
  assert 'multi30k/' in line and str(empty) in line
  assert not workdir.exists()


def test_attention_of_a_context_vector_model_is_an_error(make_config):
  task = tasks.make_task(make_config(multi30k_gru_bahdanau,
                                     rnn_attention='none'))
  task.prepare()
  params = jax.jit(task.model.init)(jax.random.key(0),
                                    task.dummy_batch()['inputs'])['params']
  with pytest.raises(ValueError, match='no attention'):
    task.translator.attention(params, 'Ein hund.', [5, 6])
  with_attention = tasks.make_task(make_config(multi30k_gru_bahdanau))
  with_attention.prepare()
  params = jax.jit(with_attention.model.init)(
      jax.random.key(0), with_attention.dummy_batch()['inputs'])['params']
  weights = with_attention.translator.attention(params, 'Ein hund.', [5, 6])
  source = with_attention.translator.source_ids('Ein hund.')
  assert weights.shape == (1, 3, int((source != 0).sum()))
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_eval_steps_zero_translates_the_whole_test_split(make_config,
                                                         tmp_path,
                                                         monkeypatch):
  """0 batches means the whole split, for BLEU too (it had no sentence)."""
  config = make_config(num_train_steps=2, eval_every=0, eval_steps=0,
                       checkpoint_every=0, final_eval_full=False)
  # A score in range says nothing of how many sentences it was taken
  # over: count what BLEU is given.
  scored = []
  original = translation.corpus_bleu

  def spy(hypotheses, references, *args, **kwargs):
    scored.append((len(hypotheses), len(references)))
    return original(hypotheses, references, *args, **kwargs)

  monkeypatch.setattr(translation, 'corpus_bleu', spy)
  results = loop.train_and_evaluate(config, str(tmp_path))
  task = tasks.make_task(config)
  task.prepare()
  num_test = len(task.raw['test'][0])
  assert num_test > config.batch_size
  assert scored == [(num_test, num_test)]
  assert 0 <= results['eval_bleu'] <= 100


def test_the_model_builder_passes_on_every_key_it_is_given():
  """Keys the models read from the run config, not silently their own
  defaults."""
  config = multi30k_gru_bahdanau.get_config()
  config.cell, config.forget_bias, config.fused_lstm = 'lstm', 1.0, False
  rnn = translation.build_model(config, 50, 60).config
  assert (rnn.forget_bias, rnn.fused, rnn.cell) == (1.0, False, 'lstm')
  config = multi30k_transformer.get_config()
  config.num_layers, config.embed_dim, config.num_heads = 1, 16, 2
  config.use_bias = False
  model = translation.build_model(config, 50, 50)
  params = model.init(jax.random.key(0), np.ones((1, 3), np.int32),
                      np.ones((1, 3), np.int32))['params']
  paths = [jax.tree_util.keystr(p)
           for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  assert not [p for p in paths if 'block' in p and 'bias' in p], paths
