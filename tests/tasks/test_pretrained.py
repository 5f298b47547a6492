"""Starting a task model from another run: ULMFiT's LM -> classifier, ELMo's
bi-LM -> classifier features, and the checks on mismatched runs."""

import jax
import numpy as np
import pytest

from experiments.configs import sst2_bilm, sst2_bilstm_elmo, sst2_lm
from experiments.configs import sst2_ulmfit
from lm_jax import tasks
from lm_jax.data import tokenizers
from lm_jax.models import build_model
from lm_jax.tasks import bilm, pretrained
from lm_jax.train import loop
from lm_jax.train.checkpoint import load_params
from tests.tasks.test_classification import raw_dir  # noqa: F401 - fixture

SIZE = 8


def _tiny(config, raw_dir, cache_dir, **overrides):
  config.data_dir, config.cache_dir = raw_dir, cache_dir
  config.min_count, config.num_epochs, config.num_train_steps = 1, 0, 2
  config.batch_size, config.eval_steps, config.eval_every = 4, 1, 0
  config.checkpoint_every, config.final_eval_full = 0, False
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def runs(raw_dir, tmp_path_factory):
  """Workdirs of a tiny LM and a tiny bi-LM trained for two steps."""
  cache = str(tmp_path_factory.mktemp('cache'))
  lm = str(tmp_path_factory.mktemp('lm'))
  loop.train_and_evaluate(_tiny(
      sst2_lm.get_config(), raw_dir, cache, embed_dim=SIZE, hidden_size=SIZE,
      block_size=4), lm)
  bilm = str(tmp_path_factory.mktemp('bilm'))
  loop.train_and_evaluate(_tiny(
      sst2_bilm.get_config(), raw_dir, cache, hidden_size=SIZE), bilm)
  return {'lm': lm, 'bilm': bilm, 'cache': cache}


def _prepared(config):
  task = tasks.make_task(config)
  task.prepare()
  batch = task.dummy_batch()
  params = task.model.init(jax.random.key(1), batch['inputs'])['params']
  return task, params


def test_transplant_replaces_only_the_mapped_subtrees():
  params = {'embed': {'embedding': np.zeros((3, 2), np.float32)},
            'head': {'kernel': np.zeros((2, 2), np.float32)}}
  source = {'token_embedding': {'embedding': np.ones((3, 2), np.float32)}}
  out = pretrained.transplant(params, source, {'embed': 'token_embedding'})
  np.testing.assert_array_equal(out['embed']['embedding'], 1.0)
  np.testing.assert_array_equal(out['head']['kernel'], 0.0)
  np.testing.assert_array_equal(params['embed']['embedding'], 0.0)
  with pytest.raises(ValueError, match='does not fit'):
    pretrained.transplant(
        params, {'token_embedding': {'embedding': np.ones((4, 2), np.float32)}},
        {'embed': 'token_embedding'})
  with pytest.raises(ValueError, match='no parameters at'):
    pretrained.transplant(params, source, {'embed': 'rnn'})


def test_ulmfit_classifier_starts_from_the_lm(runs, raw_dir):
  config = _tiny(sst2_ulmfit.get_config(), raw_dir, runs['cache'],
                 embed_dim=SIZE, hidden_size=SIZE,
                 pretrained_lm=runs['lm'])
  task, params = _prepared(config)
  lm = load_params(runs['lm'])
  assert task.tokenizer.words == pretrained.load_tokenizer(runs['lm']).words
  # Each sentence begins as it did in the LM's stream: after an end of line.
  eos = task.tokenizer.words.index(task.tokenizer.eos)
  for split in task.examples.values():
    assert all(ids[0] == eos and eos not in ids[1:]
               for ids in split['inputs'])
  assert task.model.kept_ids == (eos,)  # not a word for word dropout
  out = task.pretrained_params(params)
  np.testing.assert_array_equal(out['embed']['embedding'],
                                lm['token_embedding']['embedding'])
  for new, old in zip(jax.tree.leaves(out['rnn']), jax.tree.leaves(lm['rnn'])):
    np.testing.assert_array_equal(new, old)
  # The head is the classifier's own.
  np.testing.assert_array_equal(out['output']['kernel'],
                                params['output']['kernel'])


def test_ulmfit_rejects_a_mismatched_or_missing_lm(runs, raw_dir, tmp_path):
  config = _tiny(sst2_ulmfit.get_config(), raw_dir, runs['cache'],
                 embed_dim=2 * SIZE, hidden_size=2 * SIZE,
                 pretrained_lm=runs['lm'])
  task, params = _prepared(config)
  with pytest.raises(ValueError, match='does not fit'):
    task.pretrained_params(params)
  # The forget-gate bias is no weight, so no shape tells it apart.
  config.embed_dim = config.hidden_size = SIZE
  config.forget_bias = 0.0
  with pytest.raises(ValueError, match='forget_bias 1.0'):
    tasks.make_task(config).prepare()
  config.forget_bias, config.pretrained_lm = 1.0, runs['bilm']
  with pytest.raises(ValueError, match="'bilm' run of model"):
    tasks.make_task(config).prepare()
  config.pretrained_lm = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='config.json is missing'):
    tasks.make_task(config).prepare()
  assert not (tmp_path / 'nowhere').exists()


def test_ulmfit_from_an_lm_with_two_gate_biases(runs, raw_dir, tmp_path):
  lm = str(tmp_path / 'lm')
  loop.train_and_evaluate(_tiny(
      sst2_lm.get_config(), raw_dir, runs['cache'], embed_dim=SIZE,
      hidden_size=SIZE, block_size=4, lstm_second_bias=True), lm)
  config = _tiny(sst2_ulmfit.get_config(), raw_dir, runs['cache'],
                 embed_dim=SIZE, hidden_size=SIZE, pretrained_lm=lm)
  # Named as the missing setting, not as a size mismatch.
  with pytest.raises(ValueError, match='lstm_second_bias True: set '
                     '--config.lstm_second_bias=True'):
    tasks.make_task(config).prepare()
  config.lstm_second_bias = True
  task, params = _prepared(config)
  out = task.pretrained_params(params)
  trained = load_params(lm)['rnn']
  assert 'hidden_bias' in out['rnn']['layer0_fwd']
  for new, old in zip(jax.tree.leaves(out['rnn']), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(new, old)
  # The other way round: a one-bias LM into a two-bias classifier.
  config.pretrained_lm = runs['lm']
  with pytest.raises(ValueError, match='lstm_second_bias False'):
    tasks.make_task(config).prepare()


def test_an_lm_starts_from_another_lm_run(runs, raw_dir):
  """ULMFiT's general-domain stage through the task: its vocabulary's rows
  and the layers come from the LM run; wrong runs and sizes are refused.
  (Rows of a reordered vocabulary and unseen words: the test below.)"""
  source = load_params(runs['lm'])
  source_words = pretrained.load_tokenizer(runs['lm']).words
  config = _tiny(sst2_lm.get_config(), raw_dir, runs['cache'],
                 embed_dim=SIZE, hidden_size=SIZE, block_size=4,
                 pretrained_lm=runs['lm'])
  task, params = _prepared(config)
  out = task.pretrained_params(params)
  ids = pretrained.rows_by_word(source_words, task.tokenizer.words)
  assert (ids >= 0).all()
  np.testing.assert_array_equal(
      out['token_embedding']['embedding'],
      np.asarray(source['token_embedding']['embedding'])[ids])
  for new, old in zip(jax.tree.leaves(out['rnn']),
                      jax.tree.leaves(source['rnn'])):
    np.testing.assert_array_equal(new, old)

  with pytest.raises(ValueError, match='does not fit'):
    wider = build_model(_tiny(sst2_lm.get_config(), raw_dir, runs['cache'],
                              embed_dim=2 * SIZE, hidden_size=2 * SIZE),
                        task.tokenizer.vocab_size)
    pretrained.lm_from_lm(
        jax.jit(wider.init)(jax.random.key(1),
                            np.zeros((1, 4), np.int32))['params'],
        runs['lm'], task.tokenizer)
  # A wrong source fails in `prepare`, before any training: another
  # forget bias (no weight, so no shape differs), another kind of run.
  config.forget_bias = 0.0
  with pytest.raises(ValueError, match='forget_bias 1.0: set'):
    tasks.make_task(config).prepare()
  config.forget_bias, config.pretrained_lm = 1.0, runs['bilm']
  with pytest.raises(ValueError, match='not a recurrent LM run'):
    tasks.make_task(config).prepare()
  config.model = 'gpt'
  with pytest.raises(ValueError, match="pretrained_lm starts a recurrent"):
    tasks.make_task(config).prepare()


@pytest.mark.parametrize('tie', [True, False])
def test_an_lm_from_another_predicts_the_shared_words_as_it_did(monkeypatch,
                                                                tie):
  """Tied (embedding rows, output bias) or not (softmax columns and bias):
  the logits of words both vocabularies hold are the source's; an unseen
  word's rows are the source's means."""
  config = sst2_lm.get_config()
  config.embed_dim = config.hidden_size = SIZE
  config.tie_embeddings = tie
  source_words = ['<unk>', '<eos>', 'a', 'b', 'c', 'd']
  source_model = build_model(config, len(source_words))
  source = jax.jit(source_model.init)(
      jax.random.key(0), np.zeros((1, 4), np.int32))['params']
  monkeypatch.setattr(pretrained, 'load_run_config',
                      lambda _: {'task': 'lm', 'model': 'rnn_lm'})
  monkeypatch.setattr(pretrained, 'load_tokenizer',
                      lambda _: tokenizers.WordTokenizer(source_words))
  monkeypatch.setattr(pretrained, 'load_params', lambda _: source)
  words = ['d', '<unk>', 'unseen', 'b', '<eos>']
  model = build_model(config, len(words))
  params = jax.jit(model.init)(jax.random.key(1),
                               np.zeros((1, 4), np.int32))['params']

  out = pretrained.lm_from_lm(params, 'a run', tokenizers.WordTokenizer(words))

  shared = [0, 1, 3, 4]  # ids here of d, <unk>, b, <eos>
  there = [5, 0, 3, 1]  # their ids in the source
  text = np.array([[3, 0, 4, 1, 3]])
  got = jax.jit(model.apply)({'params': out}, text)
  want = jax.jit(source_model.apply)({'params': source},
                                     np.asarray(there)[np.searchsorted(
                                         shared, text)])
  np.testing.assert_allclose(got[..., shared], want[..., there], rtol=1e-5,
                             atol=1e-6)
  if tie:  # the unseen word (id 2): its rows, and the source's means
    pairs = [(out['token_embedding']['embedding'][2],
              source['token_embedding']['embedding'].mean(0)),
             (out['output_bias'][2], source['output_bias'].mean())]
  else:
    pairs = [(out['output']['kernel'][:, 2],
              source['output']['kernel'].mean(1)),
             (out['output']['bias'][2], source['output']['bias'].mean())]
  for row, mean in pairs:
    np.testing.assert_allclose(row, mean, rtol=1e-6)


def test_bilm_forget_bias_is_the_models(raw_dir, runs):
  config = _tiny(sst2_bilm.get_config(), raw_dir, runs['cache'],
                 hidden_size=SIZE)
  assert config.forget_bias == 1.0  # as recorded in the run's config.json
  config.forget_bias = 0.0
  with pytest.raises(ValueError, match='forget bias 1.0'):
    tasks.make_task(config).prepare()


def test_elmo_classifier_loads_the_frozen_bilm(runs, raw_dir, tmp_path):
  config = _tiny(sst2_bilstm_elmo.get_config(), raw_dir, runs['cache'],
                 embed_dim=SIZE, hidden_size=SIZE, elmo_bilm=runs['bilm'])
  task, params = _prepared(config)
  # Word dropout happens once, in WithElmo, for ELMo's input as well.
  assert task.model.word_dropout_rate == config.word_dropout_rate > 0
  assert task.model.model.word_dropout_rate == 0.0
  out = task.pretrained_params(params)
  bilm = load_params(runs['bilm'])
  for new, old in zip(jax.tree.leaves(out['elmo']['bilm']),
                      jax.tree.leaves(bilm)):
    np.testing.assert_array_equal(new, old)
  # Two steps leave the bi-LM as loaded and train the rest.
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert results['eval_loss'] > 0
  trained = load_params(str(tmp_path))
  for new, old in zip(jax.tree.leaves(trained['elmo']['bilm']),
                      jax.tree.leaves(bilm)):
    np.testing.assert_array_equal(new, old)
  assert not np.array_equal(trained['model']['output']['kernel'],
                            out['model']['output']['kernel'])
  # Without freezing it, the run is refused before anything is written.
  config.frozen_params = ''
  with pytest.raises(ValueError, match='frozen_params=elmo/bilm'):
    tasks.make_task(config).prepare()


def test_bilm_word_dropout_hides_input_words_only(raw_dir, runs, monkeypatch):
  """Dropped words reach the LMs as `<unk>` in training (never `<s>` or
  `</s>`), and are still the words they predict."""
  config = _tiny(sst2_bilm.get_config(), raw_dir, runs['cache'],
                 hidden_size=SIZE, dropout_rate=0.0,
                 init_scale=1.0)  # outputs that tell inputs apart
  task, params = _prepared(config)
  unk = task.tokenizer.unk_id
  batch = {'inputs': np.array([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]],
                              np.int32),
           'lengths': np.array([6, 3], np.int32)}
  targets_from, inputs = [], []
  for name, spied, record in [('bilm_targets', bilm.bilm_targets,
                               targets_from),
                              ('drop_words', bilm.drop_words, inputs)]:
    def spy(tokens, *args, spied=spied, record=record):
      out = spied(tokens, *args)
      record.append((np.asarray(tokens), np.asarray(out)))
      return out
    monkeypatch.setattr(bilm, name, spy)

  def loss(rate, train):
    task.config.word_dropout_rate = rate
    return float(task.loss(params, batch, jax.random.key(0), train)['loss'][0])

  assert loss(0.999, False) == loss(0.0, False) and not inputs
  assert loss(0.999, True) != loss(0.0, True)
  (framed, dropped), = inputs
  words = np.zeros_like(framed, bool)
  words[0, 1:7] = words[1, 1:4] = True
  # Every word (near certain at this rate), never <s>, </s> or padding.
  np.testing.assert_array_equal(dropped, np.where(words, unk, framed))
  for tokens, _ in targets_from:  # every loss: the words as they were
    np.testing.assert_array_equal(tokens, framed)
