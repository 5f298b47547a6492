"""The training loop with a recurrent LM on contiguous streams (truncated
BPTT): the carried state is checkpointed, so a relaunch equals an
uninterrupted run; epochs set the run length and the learning rate."""

import logging
import os

import jax
import numpy as np
import pytest

from lm_jax import decode, tasks
from lm_jax.data import pipelines
from lm_jax.train import loop
from lm_jax.train.logging import read_metrics


@pytest.fixture(scope='module')
def make_rnn_config(make_tiny_config):
  def make(**overrides):
    config = make_tiny_config(
        model='rnn_lm', cell='lstm', embed_dim=16, hidden_size=16,
        num_layers=2, lm_batching='contiguous', block_size=8, batch_size=4,
        optimizer='sgd', learning_rate=1.0, grad_clip_norm=5.0,
        normalize_loss_by='sequence', schedule='constant', warmup_steps=0)
    config.update(overrides)
    return config
  return make


def _params(workdir, config):
  task = tasks.make_task(config)
  task.prepare()
  return loop.restore_params(
      workdir, config, task.model, task.dummy_batch()['inputs'],
      decode.empty_cache(task.model, config.batch_size, 1))[1]


def test_relaunch_equals_uninterrupted_with_the_state_carried(
    make_rnn_config, tmp_path, caplog):
  # Dropout between the layers: the resumed run's random keys must match.
  config = make_rnn_config(dropout_rate=0.1)
  whole = loop.train_and_evaluate(config, str(tmp_path / 'whole'))
  short = make_rnn_config(num_train_steps=6, dropout_rate=0.1)
  loop.train_and_evaluate(short, str(tmp_path / 'split'))
  caplog.set_level(logging.INFO, logger='lm_jax')
  again = loop.train_and_evaluate(config, str(tmp_path / 'split'))
  assert 'resumed from the checkpoint at step 6' in caplog.text
  for key in whole:
    np.testing.assert_allclose(again[key], whole[key], rtol=1e-5, err_msg=key)
  a = _params(str(tmp_path / 'whole'), config)
  b = _params(str(tmp_path / 'split'), config)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), a, b)


def test_the_loop_carries_the_state_from_batch_to_batch(
    make_rnn_config, tmp_path, monkeypatch):
  """Guards the test above, which a loop that dropped the carry would pass
  as well: the same batches, each starting its streams over (the carry
  zeroed), train another model."""
  # Four steps: the carry is fed from the second.
  config = make_rnn_config(num_train_steps=4, eval_every=0,
                           checkpoint_every=0)
  carried = loop.train_and_evaluate(config, str(tmp_path / 'a'))
  real = pipelines.ContiguousStreams.__call__

  def starting_over(self, batch_index):
    batch = real(self, batch_index)
    return {**batch, 'reset': np.ones_like(batch['reset'])}

  monkeypatch.setattr(pipelines.ContiguousStreams, '__call__', starting_over)
  forgotten = loop.train_and_evaluate(config, str(tmp_path / 'b'))
  assert abs(carried['eval_loss'] - forgotten['eval_loss']) > 1e-4


def test_a_stream_starting_over_forgets_the_carried_state(make_rnn_config):
  task = tasks.make_task(make_rnn_config())
  task.prepare()
  stream = task.train_stream(slice(None))
  batches = [next(stream) for _ in range(task.steps_per_epoch + 1)]
  start, later = batches[-1], batches[1]  # epoch 2's first batch; epoch 1's 2nd
  assert start['reset'].all() and not later['reset'].any()
  params = task.model.init(jax.random.key(0), start['inputs'])['params']
  zeros = task.init_carry(start['inputs'].shape[0])
  carried = jax.tree.map(
      lambda c: jax.random.normal(jax.random.key(1), c.shape, c.dtype), zeros)

  def loss(batch, carry):
    metrics, _ = task.loss_and_carry(params, batch, jax.random.key(2), False,
                                     carry)
    return float(metrics['loss'][0])

  assert loss(start, carried) == loss(start, zeros)
  assert abs(loss(later, carried) - loss(later, zeros)) > 1e-3  # the guard


def test_epochs_set_the_length_and_the_learning_rate(make_rnn_config,
                                                     tmp_path):
  config = make_rnn_config(
      batch_size=40, block_size=100, num_epochs=2, schedule='epoch_decay',
      lr_decay_start_epoch=1, lr_decay_factor=0.5, log_every=1,
      eval_every=0, checkpoint_every=0)
  task = tasks.make_task(config)
  task.prepare()
  steps_per_epoch = task.steps_per_epoch
  # 20,000 characters, 40 streams of 500, (500 - 1) // 100 batches.
  assert steps_per_epoch == 4
  loop.train_and_evaluate(config, str(tmp_path))
  rates = [r['learning_rate'] for r in read_metrics(str(tmp_path))
           if 'learning_rate' in r]
  assert rates == [1.0] * 4 + [0.5] * 4
  with open(os.path.join(tmp_path, 'config.json')) as f:
    assert '"num_train_steps": 8' in f.read()
  # Refused in the setting the command line gave, epochs.
  config.num_epochs = 1
  with pytest.raises(ValueError, match=r'more than num_epochs=1 \(4 steps\); '
                     r'relaunch it with at least num_epochs=2,'):
    loop.train_and_evaluate(config, str(tmp_path))


def test_num_epochs_needs_a_task_with_epochs(make_tiny_config, tmp_path):
  with pytest.raises(ValueError, match='no epochs'):
    loop.train_and_evaluate(make_tiny_config(num_epochs=2), str(tmp_path))
  assert not os.listdir(tmp_path)


def test_one_stream_evaluation_reads_the_split_as_one_text(make_rnn_config,
                                                           tmp_path):
  """eval_streams=1 (on 4 devices: one stream and three empty rows) scores
  the validation split as one sequence run from a zero state."""
  config = make_rnn_config(num_train_steps=3, eval_streams=1)
  results = loop.train_and_evaluate(config, str(tmp_path / 'one'))
  task = tasks.make_task(config)
  task.prepare()
  tokens = task.tokens['validation']
  logits = task.model.apply({'params': _params(str(tmp_path / 'one'), config)},
                            tokens[None, :-1])
  nll = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits[0])),
                            tokens[1:, None], axis=-1)
  np.testing.assert_allclose(results['eval_loss'], nll.mean(), rtol=1e-5)
  streams = loop.train_and_evaluate(make_rnn_config(num_train_steps=3),
                                    str(tmp_path / 'streams'))
  assert abs(streams['eval_loss'] - results['eval_loss']) > 1e-5
