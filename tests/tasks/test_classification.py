"""The classification task on a tiny GLUE-style dataset: vocabulary,
batches, sentence accuracy, and a short run reporting dev accuracy."""

import jax
import numpy as np
import pytest

from experiments.configs import sst2_bilstm
from lm_jax import tasks
from lm_jax.tasks import classification
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics

GOOD, BAD = ['great', 'fine', 'moving'], ['dull', 'awful', 'flat']
FILLER = ['the', 'film', 'is', 'a', 'story', 'and', 'quite']


def _tsv(n, seed):
  """GLUE SST-2 text: label 1 when the sentence holds a word of GOOD."""
  rng = np.random.default_rng(seed)
  lines = ['sentence\tlabel']
  for _ in range(n):
    label = int(rng.integers(0, 2))
    words = list(rng.choice(FILLER, int(rng.integers(1, 6))))
    words.insert(int(rng.integers(0, len(words) + 1)),
                 rng.choice(GOOD if label else BAD))
    lines.append(' '.join(words) + ' \t' + str(label))
  return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('tiny_sst2')
  (root / 'sst2').mkdir()
  (root / 'sst2' / 'train.tsv').write_text(_tsv(64, 0))
  (root / 'sst2' / 'dev.tsv').write_text(_tsv(20, 1))
  (root / 'sst2' / 'test.tsv').write_text('index\tsentence\n0\ta film\n')
  return str(root)


def _config(raw_dir, cache_dir, **overrides):
  config = sst2_bilstm.get_config()
  config.data_dir, config.cache_dir = raw_dir, cache_dir
  config.embed_dim, config.hidden_size = 8, 8
  config.min_count = 1
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


def test_vocabulary_and_examples(task):
  assert task.tokenizer.words[:2] == ['<pad>', '<unk>']
  assert set(task.tokenizer.words[2:]) <= set(GOOD + BAD + FILLER)
  train = task.examples['train']
  assert len(train['inputs']) == 64 and train['targets'].shape == (64,)
  words = [task.tokenizer.words[i] for i in train['inputs'][0]]
  assert bool(set(words) & set(GOOD)) == bool(train['targets'][0])


def test_rare_words_become_unknown(raw_dir, tmp_path):
  task = tasks.make_task(_config(raw_dir, str(tmp_path), min_count=1000))
  task.prepare()
  assert task.tokenizer.words == ['<pad>', '<unk>']
  assert all((x == 1).all() for x in task.examples['validation']['inputs'])


def test_whole_sentences_are_the_rows_no_other_row_contains():
  rows = ['a b c ', 'a b', 'b c', 'd', 'c d', 'a b c', 'a c']
  assert list(classification.whole_sentence_rows(rows)) == [0, 4, 5, 6]


def test_a_sample_of_whole_sentences_draws_from_them_alone(raw_dir,
                                                          tmp_path):
  config = _config(raw_dir, str(tmp_path), whole_sentences=True)
  everything = classification.labelled_splits(
      _config(raw_dir, str(tmp_path)))['train'][0]
  whole = classification.labelled_splits(config)['train'][0]
  assert whole == [everything[i] for i in
                   classification.whole_sentence_rows(everything)]
  assert 10 < len(whole) < len(everything)
  config.max_train_examples = 10
  sample = classification.labelled_splits(config)['train'][0]
  assert len(sample) == 10 and set(sample) <= set(whole)


def test_accuracy_counts_sentences_not_padding_rows(task):
  batches = task.eval_batches(slice(None), full=True)
  assert len(batches) == 3  # 20 sentences: the last batch has 4 empty rows
  params = jax.jit(task.model.init)(jax.random.key(0), batches[0]['inputs'])
  loss = jax.jit(task.loss, static_argnums=3)
  counts = [float(loss(params['params'], b, jax.random.key(1),
                       False)['accuracy'][1]) for b in batches]
  assert counts == [8, 8, 4]


def test_sentence_markers_surround_every_sentence(raw_dir, tmp_path):
  plain = tasks.make_task(_config(raw_dir, str(tmp_path)))
  plain.prepare()
  marked = tasks.make_task(_config(raw_dir, str(tmp_path),
                                   sentence_markers=True))
  marked.prepare()
  assert marked.tokenizer.words[:4] == ['<pad>', '<unk>', '<s>', '</s>']
  for split in ('train', 'validation'):
    for a, b in zip(plain.examples[split]['inputs'],
                    marked.examples[split]['inputs']):
      assert list(b[[0, -1]]) == [2, 3]
      assert ([plain.tokenizer.words[i] for i in a]
              == [marked.tokenizer.words[i] for i in b[1:-1]])
  # Word dropout leaves the markers alone; without them it keeps nothing.
  assert marked.model.kept_ids == (2, 3) and plain.model.kept_ids == ()


@pytest.mark.parametrize('key', ['pretrained_lm', 'elmo_bilm'])
def test_sentence_markers_are_refused_with_a_pretrained_model(raw_dir,
                                                              tmp_path, key):
  config = _config(raw_dir, str(tmp_path), sentence_markers=True,
                   frozen_params='elmo/bilm', bidirectional=False,
                   **{key: str(tmp_path / 'run')})
  with pytest.raises(ValueError, match='sentence_markers=False'):
    tasks.make_task(config).prepare()


def test_wrong_model_name_is_an_error(raw_dir, tmp_path):
  with pytest.raises(ValueError, match="trains model 'classifier'"):
    tasks.make_task(_config(raw_dir, str(tmp_path), model='tagger')).prepare()


def test_short_run_reports_dev_accuracy(raw_dir, tmp_path):
  config = _config(raw_dir, str(tmp_path / 'cache'), pooling='max')
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  records = read_metrics(str(tmp_path / 'run'))
  evals = [r['step'] for r in records if 'eval_accuracy' in r]
  assert evals == [2, 4]
  assert 0 <= results['eval_accuracy'] <= 1 and results['eval_loss'] > 0
  assert (tmp_path / 'run' / 'tokenizer.json').exists()
