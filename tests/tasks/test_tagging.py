"""The tagging task on a tiny treebank: vocabularies, batches, metrics over
real words only, and a short run reporting dev and test accuracy."""

import jax
import numpy as np
import pytest

from experiments.configs import udpos_bilm, udpos_bilstm
from lm_jax import tasks
from lm_jax.data.builders.conllu import TREEBANKS, UPOS_TAGS
from lm_jax.tasks import tagging
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics

LEXICON = {'DET': ['the', 'a'], 'NOUN': ['cat', 'dog', 'mat', 'Mats'],
           'VERB': ['sat', 'ran'], 'ADP': ['on', 'under'], 'PUNCT': ['.']}


def _treebank(n, seed):
  """CoNLL-U text of `n` sentences 'DET NOUN VERB ADP DET NOUN .' (some
  without the last three words)."""
  rng = np.random.default_rng(seed)
  lines = []
  for s in range(n):
    tags = ['DET', 'NOUN', 'VERB', 'ADP', 'DET', 'NOUN', 'PUNCT']
    if s % 3 == 0:
      tags = tags[:4] + ['PUNCT']
    lines.append(f'# sent_id = {s}')
    for i, tag in enumerate(tags, 1):
      word = rng.choice(LEXICON[tag])
      lines.append('\t'.join([str(i), word, '_', tag] + ['_'] * 6))
    lines.append('')
  return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('tiny_treebank')
  (root / 'ud_english_atis').mkdir()
  for split, n in (('train', 48), ('validation', 20), ('test', 12)):
    name = TREEBANKS['ud_english_atis'].files[split]
    (root / name).write_text(_treebank(n, seed=len(split)), encoding='utf-8')
  return str(root)


def _config(raw_dir, cache_dir, **overrides):
  config = udpos_bilstm.get_config()
  config.corpus = 'ud_english_atis'
  config.data_dir, config.cache_dir = raw_dir, cache_dir
  config.embed_dim, config.hidden_size, config.char_features = 8, 8, 4
  config.char_embed_dim, config.max_word_chars = 4, 6
  config.batch_size, config.num_train_steps = 8, 4
  config.warmup_steps, config.eval_every, config.eval_steps = 1, 2, 1
  config.log_every, config.checkpoint_every = 2, 0
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def task(raw_dir, tmp_path_factory):
  task = tasks.make_task(_config(raw_dir, str(tmp_path_factory.mktemp('c'))))
  task.prepare()
  return task


def test_vocabularies_put_padding_at_zero_and_count_training_words(task):
  assert task.tokenizer.words[:2] == ['<pad>', '<unk>']
  assert task.tokenizer.unk_id == 1
  assert set(task.tokenizer.words[2:]) == set(sum(LEXICON.values(), []))
  assert task.char_tokenizer.words[:2] == ['<pad>', '<unk>']
  assert 'M' in task.char_tokenizer.words


def test_examples_hold_word_tag_and_character_ids(task):
  train = task.examples['train']
  words = task.tokenizer.words
  first = [words[i] for i in train['inputs'][0]]
  tags = [UPOS_TAGS[t] for t in train['targets'][0]]
  assert tags == ['DET', 'NOUN', 'VERB', 'ADP', 'PUNCT']
  assert first[0] in LEXICON['DET'] and first[-1] == '.'
  chars = train['chars'][0]
  assert chars.shape == (5, 6) and chars.dtype == np.int32
  spelt = task.char_tokenizer.decode(chars[0][chars[0] > 0])
  assert spelt.replace(' ', '') == first[0]


def test_long_words_keep_their_prefix_and_suffix():
  chars = tagging.char_vocabulary([['internationalisation']])
  ids = tagging.word_chars(chars, 'internationalisation', 8)
  assert chars.decode(ids).replace(' ', '') == 'intetion'
  short = tagging.word_chars(chars, 'nation', 8)
  assert list(short[6:]) == [0, 0]
  unknown = tagging.word_chars(chars, 'xyz', 8)
  assert list(unknown[:3]) == [chars.unk_id] * 3


def test_forms_with_spaces_stay_one_word():
  vocab = tagging.word_vocabulary([['New York', 'is', 'big']])
  ids = tagging.encode_words(vocab, ['New York', 'is', 'Paris'])
  assert len(ids) == 3 and ids[2] == vocab.unk_id


def test_loss_and_accuracy_count_real_words_only(task):
  batch = next(iter(task.eval_batches(slice(None), full=True)))
  params = jax.jit(task.model.init)(jax.random.key(0), batch['inputs'])
  loss = jax.jit(task.loss, static_argnums=3)
  metrics = loss(params['params'], batch, jax.random.key(1), False)
  real = int(batch['lengths'].sum())
  assert float(metrics['loss'][1]) == real
  assert float(metrics['accuracy'][1]) == real
  assert 0 <= float(metrics['accuracy'][0]) <= real


def test_steps_per_epoch_and_eval_batches_cover_the_split(task):
  assert task.steps_per_epoch == 48 // 8
  batches = task.eval_batches(slice(None), full=True)
  assert sum(b['weights'].sum() for b in batches) == sum(
      len(x) for x in task.examples['validation']['inputs'])
  assert len(task.eval_batches(slice(None), full=False)) == 1


def test_wrong_model_name_is_an_error(raw_dir, tmp_path):
  with pytest.raises(ValueError, match="trains model 'tagger'"):
    tasks.make_task(_config(raw_dir, str(tmp_path), model='gpt')).prepare()


def test_short_run_reports_dev_and_test_accuracy(raw_dir, tmp_path):
  config = _config(raw_dir, str(tmp_path / 'cache'))
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  records = read_metrics(str(tmp_path / 'run'))
  final = [r for r in records if 'test_accuracy' in r]
  assert [r['step'] for r in final] == [4]
  assert 0 <= final[0]['test_accuracy'] <= 1 and final[0]['test_loss'] > 0
  assert {'eval_accuracy', 'test_accuracy', 'test_loss'} <= set(results)
  assert (tmp_path / 'run' / 'tags.json').exists()
  assert (tmp_path / 'run' / 'char_tokenizer.json').exists()


def test_with_elmo_words_are_dropped_once_for_the_tagger_and_elmo(
    raw_dir, tmp_path):
  """WithElmo drops the words it feeds both; the tagger drops none again."""
  bilm = udpos_bilm.get_config()
  bilm.corpus, bilm.hidden_size = 'ud_english_atis', 8
  bilm.data_dir, bilm.cache_dir = raw_dir, str(tmp_path / 'cache')
  bilm.num_epochs, bilm.num_train_steps, bilm.batch_size = 0, 1, 8
  bilm.eval_every, bilm.eval_steps, bilm.checkpoint_every = 0, 1, 0
  bilm.final_eval_full = False
  loop.train_and_evaluate(bilm, str(tmp_path / 'bilm'))
  config = _config(raw_dir, str(tmp_path / 'cache'), frozen_params='elmo/bilm',
                   elmo_bilm=str(tmp_path / 'bilm'))
  task = tasks.make_task(config)
  task.prepare()
  assert task.model.word_dropout_rate == config.word_dropout_rate > 0
  assert task.model.model.word_dropout_rate == 0.0


def test_final_evaluation_covers_the_whole_test_split(task):
  """Every test word, not the `eval_steps` batches of a periodic one."""
  seen = []
  task.final_evaluation(None, slice(None), lambda b: seen.extend(b) or {})
  assert sum(b['weights'].sum() for b in seen) == sum(
      len(t) for t in task.examples['test']['targets'])
