"""The BERT tasks on tiny corpora: masked-LM pre-training (task 'mlm'),
and classification fine-tuning (task 'classify', model 'bert') from an
imported Hugging Face checkpoint or a masked-LM run."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import bert_mlm_small, sst2_bert_small
from lm_jax import import_hf, tasks
from lm_jax.data import tokenizers
from lm_jax.tasks import classification
from lm_jax.tasks.masked_lm import load_bert_run, trained_positions
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics
from tests import fake_hf_bert

GOOD, BAD = ['great', 'fun', 'happy'], ['dull', 'bad', 'flat']
FILLER = ['the', 'film', 'is', 'a', 'story', 'and', 'very']


def _tsv(n, seed, labelled=True):
  rng = np.random.default_rng(seed)
  lines = ['sentence\tlabel' if labelled else 'index\tsentence']
  for i in range(n):
    label = int(rng.integers(0, 2))
    words = list(rng.choice(FILLER, int(rng.integers(1, 6))))
    words.insert(int(rng.integers(0, len(words) + 1)),
                 rng.choice(GOOD if label else BAD))
    lines.append(' '.join(words) + f' \t{label}' if labelled
                 else f'{i}\t' + ' '.join(words))
  return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('tiny_bert_data')
  (root / 'sst2').mkdir()
  (root / 'sst2' / 'train.tsv').write_text(_tsv(64, 0))
  (root / 'sst2' / 'dev.tsv').write_text(_tsv(20, 1))
  (root / 'sst2' / 'test.tsv').write_text(_tsv(10, 2, labelled=False))
  (root / 'ptb').mkdir()
  line = ' the cat sat on the mat and the <unk> sat on the cat \n'
  for split, n in (('train', 80), ('valid', 10), ('test', 10)):
    (root / 'ptb' / f'ptb.{split}.txt').write_text(line * n)
  return str(root)


def _mlm_config(raw_dir, cache_dir, **overrides):
  c = bert_mlm_small.get_config()
  c.data_dir, c.cache_dir = raw_dir, cache_dir
  c.num_layers, c.num_heads, c.embed_dim = 1, 2, 16
  c.block_size, c.wordpiece_vocab_size = 16, 80
  c.batch_size, c.num_train_steps, c.warmup_steps = 8, 4, 1
  c.eval_every, c.eval_steps, c.log_every, c.checkpoint_every = 2, 2, 2, 0
  c.mlm_max_predictions = 4
  c.update(overrides)
  return c


def test_mlm_task_packs_and_masks(raw_dir, tmp_path):
  task = tasks.make_task(_mlm_config(raw_dir, str(tmp_path)))
  task.prepare()
  tok = task.tokenizer
  assert tok.vocab[:5] == ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  ids, lengths = task.sequences['train']
  assert ids.shape[1] == 16 and (ids[:, 0] == tok.cls_id).all()
  assert (ids[np.arange(len(ids)), lengths - 1] == tok.sep_id).all()
  # PTB's <unk> is BERT's [UNK]; SST-2's test sentences are held out too.
  assert (ids == tok.unk_id).any()
  assert set(task.sequences) == {'train', 'validation', 'test'}
  batch = next(task.train_stream(slice(None)))
  assert batch['inputs'].shape == (8, 16)
  assert batch['mlm_positions'].shape == (8, 4)
  assert (batch['inputs'] == tok.mask_id).any()


def test_mlm_run_reports_masked_token_accuracy(raw_dir, tmp_path):
  config = _mlm_config(raw_dir, str(tmp_path / 'cache'))
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  records = read_metrics(str(tmp_path / 'run'))
  assert [r['step'] for r in records if 'eval_accuracy' in r] == [2, 4]
  assert 'train_accuracy' in records[0] and 'train_loss' in records[0]
  assert 0 <= results['eval_accuracy'] <= 1
  assert results['eval_perplexity'] > 1
  assert 0 <= results['test_accuracy'] <= 1
  assert (tmp_path / 'run' / 'tokenizer.json').exists()


def test_mlm_learns_a_repetitive_text(raw_dir, tmp_path):
  config = _mlm_config(raw_dir, str(tmp_path / 'cache'), corpus='ptb',
                       num_train_steps=60, learning_rate=3e-3,
                       warmup_steps=5, eval_every=0, dropout_rate=0.0,
                       attention_dropout_rate=0.0, embed_dim=32,
                       whole_word_masking=True)
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['eval_accuracy'] > 0.6


def test_mlm_continues_from_an_import(raw_dir, tmp_path):
  imported = _import_tiny(tmp_path)
  task = tasks.make_task(_mlm_config(raw_dir, str(tmp_path / 'cache'),
                                     init_from=imported))
  task.prepare()
  assert task.tokenizer.vocab == fake_hf_bert.VOCAB
  fresh = jax.jit(task.model.init)(jax.random.key(0),
                                   task.dummy_batch()['inputs'])['params']
  params = task.pretrained_params(fresh)
  *_, source = load_bert_run(imported)
  for part in ('encoder', 'pooler', 'mlm_head'):
    _assert_trees_equal(params[part], source[part])


def test_mlm_wrong_model_is_an_error(raw_dir, tmp_path):
  with pytest.raises(ValueError, match="trains model 'bert'"):
    tasks.make_task(_mlm_config(raw_dir, str(tmp_path),
                                model='gpt')).prepare()


def _import_tiny(tmp_path):
  fake_hf_bert.write_folder(tmp_path / 'hf', seed=1)
  import_hf.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'imported'),
                      bert_mlm_small.get_config())
  return str(tmp_path / 'imported')


def _classify_config(raw_dir, cache_dir, **overrides):
  c = sst2_bert_small.get_config()
  c.data_dir, c.cache_dir = raw_dir, cache_dir
  c.batch_size, c.num_train_steps, c.warmup_steps = 8, 2, 1
  c.eval_every, c.eval_steps, c.log_every, c.checkpoint_every = 0, 3, 1, 0
  c.length_multiple = 16  # one padded length: one compilation
  c.update(overrides)
  return c


def test_fine_tuning_starts_from_the_imported_encoder(raw_dir, tmp_path):
  imported = _import_tiny(tmp_path)
  # A rate of 0 leaves every parameter where it started.
  config = _classify_config(raw_dir, str(tmp_path / 'cache'),
                            init_from=imported, pooling='cls',
                            learning_rate=0.0)
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert 0 <= results['eval_accuracy'] <= 1
  # The architecture and vocabulary are the imported run's (2 layers, not
  # the preset's 4).
  config_out, tokenizer, model, step, params = load_bert_run(
      str(tmp_path / 'run'))
  assert (config_out.num_layers, config_out.embed_dim) == (2, 32)
  assert tokenizer.vocab == fake_hf_bert.VOCAB and step == 2
  *_, source = load_bert_run(imported)
  for part in ('encoder', 'pooler'):
    _assert_trees_equal(params[part], source[part])
  assert params['classifier']['kernel'].shape == (32, 2)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(_leaves(a), _leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow  # two runs: about 25 s
def test_fine_tuning_from_a_masked_lm_run(raw_dir, tmp_path):
  mlm = _mlm_config(raw_dir, str(tmp_path / 'cache'), num_train_steps=1,
                    eval_every=0, eval_steps=1, final_eval_full=False)
  loop.train_and_evaluate(mlm, str(tmp_path / 'mlm'))
  config = _classify_config(raw_dir, str(tmp_path / 'cache'),
                            init_from=str(tmp_path / 'mlm'), block_size=16,
                            num_train_steps=1, eval_steps=1,
                            final_eval_full=False)
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert 0 <= results['eval_accuracy'] <= 1
  task = tasks.make_task(config)
  task.prepare()
  mlm_tokenizer = tokenizers.load(str(tmp_path / 'mlm' / 'tokenizer.json'))
  assert task.tokenizer.vocab == mlm_tokenizer.vocab
  assert max(len(x) for x in task.examples['train']['inputs']) <= 16


def test_fine_tuning_from_scratch_learns_its_own_vocabulary(raw_dir,
                                                            tmp_path):
  config = _classify_config(raw_dir, str(tmp_path / 'cache'), init_from='',
                            num_layers=1, embed_dim=16, num_heads=2,
                            wordpiece_vocab_size=60)
  task = tasks.make_task(config)
  task.prepare()
  assert task.tokenizer.vocab_size <= 60
  first = task.examples['train']['inputs'][0]
  assert first[0] == task.tokenizer.cls_id
  assert first[-1] == task.tokenizer.sep_id


def test_fine_tuning_keeps_the_sample_of_max_train_examples(raw_dir,
                                                             tmp_path):
  """The same fixed sample of training sentences as the recurrent
  classifier's (ULMFiT's 1,000-sentence setting)."""
  config = _classify_config(raw_dir, str(tmp_path / 'cache'), init_from='',
                            num_layers=1, embed_dim=16, num_heads=2,
                            wordpiece_vocab_size=60, max_train_examples=10)
  task = tasks.make_task(config)
  task.prepare()
  assert len(task.examples['train']['targets']) == 10
  sample = classification.labelled_splits(config)['train']
  np.testing.assert_array_equal(task.examples['train']['targets'], sample[1])
  assert len(task.examples['validation']['targets']) == 20


def test_init_from_a_missing_run_is_an_error(raw_dir, tmp_path):
  config = _classify_config(raw_dir, str(tmp_path / 'cache'),
                            init_from=str(tmp_path / 'nothing'))
  with pytest.raises(FileNotFoundError, match='no config.json'):
    tasks.make_task(config).prepare()


def _few_positions_import(tmp_path):
  """Data with one 30-piece sentence, and an imported model of 20
  positions."""
  root = tmp_path / 'data'
  (root / 'sst2').mkdir(parents=True)
  long = ' '.join(['the film'] * 15)
  rows = 'sentence\tlabel\n' + f'{long} \t1\nfun \t0\n' * 4
  for name in ('train.tsv', 'dev.tsv'):
    (root / 'sst2' / name).write_text(rows)
  (root / 'sst2' / 'test.tsv').write_text('index\tsentence\n0\tfun\n')
  fake_hf_bert.write_folder(tmp_path / 'hf', seed=1,
                            max_position_embeddings=20)
  import_hf.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'imported'),
                      bert_mlm_small.get_config())
  return str(root), str(tmp_path / 'imported')


def test_sentences_are_cut_so_padded_batches_fit_the_positions(tmp_path):
  """Batches pad up to a multiple of length_multiple (8): sentences are
  cut to 16 ids, since 20 would pad to 24, past the model's 20."""
  raw, imported = _few_positions_import(tmp_path)
  config = _classify_config(raw, str(tmp_path / 'cache'), init_from=imported,
                            length_multiple=8)
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(results['eval_loss'])
  task = tasks.make_task(config)
  task.prepare()
  assert max(map(len, task.examples['validation']['inputs'])) == 16


def test_length_multiple_beyond_the_positions_is_an_error(tmp_path):
  raw, imported = _few_positions_import(tmp_path)
  config = _classify_config(raw, str(tmp_path / 'cache'), init_from=imported,
                            length_multiple=32)
  with pytest.raises(ValueError, match='exceeds the model.s 20 positions'):
    tasks.make_task(config).prepare()


def test_trained_positions_follow_the_runs_a_run_continues(tmp_path):
  """A run trains the positions below its block_size; one continued from
  another keeps what that one trained; an import has them all."""
  def run(name, steps, block_size, init_from=''):
    config = {'task': 'mlm', 'model': 'bert', 'num_train_steps': steps,
              'block_size': block_size, 'max_positions': 512,
              'init_from': str(tmp_path / init_from) if init_from else ''}
    (tmp_path / name).mkdir()
    (tmp_path / name / 'config.json').write_text(json.dumps(config))
    return ml_collections.ConfigDict(config)

  assert trained_positions(run('imported', 0, 64)) == 512
  assert trained_positions(run('mlm', 100, 64)) == 64
  assert trained_positions(run('longer', 10, 128, 'mlm')) == 128
  assert trained_positions(run('shorter', 10, 32, 'mlm')) == 64
  assert trained_positions(run('chain', 10, 32, 'shorter')) == 64
  assert trained_positions(run('from_import', 10, 64, 'imported')) == 512
  # A source that is gone: no one can tell, so all of them.
  assert trained_positions(run('orphan', 10, 64, 'gone')) == 512
