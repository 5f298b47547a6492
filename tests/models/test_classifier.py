"""Tests of lm_jax.models.classifier: shapes, sentence vectors that ignore
padding, extra per-token features, word dropout, and a small task it must
learn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax.models import classifier
from lm_jax.models.classifier import RecurrentClassifier

VOCAB = 12


def _model(**fields):
  fields = {'vocab_size': VOCAB, 'num_classes': 3, 'embed_dim': 8,
            'hidden_dim': 6, 'dropout_rate': 0.0, **fields}
  model = RecurrentClassifier(**fields)
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((2, 5), jnp.int32))
  return model, params['params']


def _apply(model, params, *args, **kwargs):
  """`model.apply`, compiled (much faster than eager for scanned cells)."""
  apply = jax.jit(model.apply, static_argnames='train')
  return apply({'params': params}, *args, **kwargs)


@pytest.mark.parametrize('pooling, bidirectional, norm', [
    ('last', True, False), ('last', False, False), ('max', True, False),
    ('mean', True, False), ('concat', False, True),
    ('attention', True, False)])
def test_padded_sentence_gets_the_logits_it_gets_alone(pooling,
                                                       bidirectional, norm):
  model, params = _model(pooling=pooling, bidirectional=bidirectional,
                         num_layers=2, mlp_dim=7, sentence_norm=norm)
  directions = 2 if bidirectional else 1
  width = 3 if pooling == 'concat' else 1  # last, max and mean side by side
  assert params['mlp']['kernel'].shape == (6 * directions * width, 7)
  assert ('sentence_norm' in params) == norm
  assert ('attention_pooling' in params) == (pooling == 'attention')
  sentence = jnp.array([[3, 5, 7, 2]])
  alone = _apply(model, params, sentence)
  assert alone.shape == (1, 3) and alone.dtype == jnp.float32
  # Padding ids that would change every pooling if they leaked in: real
  # words (not 0) behind the stated length.
  batch = jnp.array([[3, 5, 7, 2, 9, 9, 9], [4, 4, 4, 4, 4, 4, 4]])
  padded = _apply(model, params, batch, jnp.array([4, 7]))
  assert padded.shape == (2, 3)
  np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)
  longer = _apply(model, params, batch, jnp.array([7, 7]))
  assert not np.allclose(longer[0], alone[0], atol=1e-3)


def test_pool_ignores_padding_and_empty_rows_give_zeros():
  outputs = jnp.array([[[1., -2.], [3., -4.], [100., 100.]],
                       [[5., 6.], [-100., -100.], [-100., -100.]],
                       [[7., 7.], [7., 7.], [7., 7.]]])
  lengths = jnp.array([2, 1, 0])
  np.testing.assert_allclose(classifier.pool(outputs, lengths, 'max'),
                             [[3., -2.], [5., 6.], [0., 0.]])
  np.testing.assert_allclose(classifier.pool(outputs, lengths, 'mean'),
                             [[2., -3.], [5., 6.], [0., 0.]])
  with pytest.raises(ValueError, match='unknown pooling'):
    classifier.pool(outputs, lengths, 'median')


@pytest.mark.parametrize('pooling', classifier.POOLINGS)
def test_empty_rows_give_finite_logits(pooling):
  model, params = _model(pooling=pooling)
  logits = _apply(model, params, jnp.zeros((2, 4), jnp.int32))
  assert np.isfinite(logits).all()


def test_extra_features_are_concatenated_to_the_embeddings():
  model, params = _model(extra_features_dim=5)
  kernel = params['rnn']['layer0_fwd']['input']['kernel']
  assert kernel.shape[0] == 8 + 5
  inputs = jnp.array([[3, 4, 5]])
  extra = jax.random.normal(jax.random.key(1), (1, 3, 5))
  with_extra = _apply(model, params, inputs, extra_features=extra)
  zeros = _apply(model, params, inputs, extra_features=jnp.zeros_like(extra))
  assert not np.allclose(with_extra, zeros)
  with pytest.raises(ValueError, match='extra_features of size 5'):
    model.apply({'params': params}, inputs)
  with pytest.raises(ValueError, match='size 4'):
    model.apply({'params': params}, inputs, extra_features=extra[..., :4])
  plain, plain_params = _model()
  with pytest.raises(ValueError, match='extra_features_dim is 0'):
    plain.apply({'params': plain_params}, inputs, extra_features=extra)


def test_word_dropout_changes_the_logits_only_in_training():
  model, params = _model(word_dropout_rate=0.5)
  inputs = jnp.array([[3, 4, 5, 6, 7, 8]])
  rngs = {'dropout': jax.random.key(1)}
  train = _apply(model, params, inputs, train=True, rngs=rngs)
  test = _apply(model, params, inputs)
  assert not np.allclose(train, test)


def test_pooling_dropout_drops_the_states_before_pooling():
  inputs = jnp.array([[3, 4, 5, 6, 7, 8]])
  for flag in (False, True):
    model, params = _model(pooling='max', dropout_rate=0.5,
                           pooling_dropout=flag)
    _, state = model.apply({'params': params}, inputs, train=True,
                           rngs={'dropout': jax.random.key(1)},
                           capture_intermediates=True,
                           mutable=['intermediates'])
    # Every dropout's output; the states are [batch, length, 2 * hidden].
    dropped = [out for name, calls in state['intermediates'].items()
               if name.startswith('Dropout')
               for out in calls['__call__']
               if out.shape == (1, 6, 12)]
    assert len(dropped) == flag
    if flag:
      assert 0.2 < float((dropped[0] == 0).mean()) < 0.8


def _synthetic(n, rng):
  """Class = whether word 3 occurs, anywhere in a sentence of 2-8 words of
  ids 2..11: a model that ignores its input scores about 50%."""
  lengths = rng.integers(2, 9, n)
  inputs = np.zeros((n, 8), np.int32)
  for i, length in enumerate(lengths):
    inputs[i, :length] = rng.choice([2] + list(range(4, VOCAB)), length)
  labels = rng.integers(0, 2, n)
  positions = (rng.random(n) * lengths).astype(int)
  inputs[labels == 1, positions[labels == 1]] = 3
  return jnp.asarray(inputs), jnp.asarray(lengths), jnp.asarray(labels)


@pytest.mark.parametrize('pooling', ['last', 'max'])
def test_learns_whether_a_word_occurs(pooling):
  model, params = _model(pooling=pooling, num_classes=2, hidden_dim=16)
  rng = np.random.default_rng(0)
  tx = optax.adam(0.02)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, inputs, lengths, labels):
    def loss(p):
      logits = model.apply({'params': p}, inputs, lengths)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(150):
    params, opt_state = step(params, opt_state, *_synthetic(32, rng))
  inputs, lengths, labels = _synthetic(500, np.random.default_rng(1))
  predictions = _apply(model, params, inputs, lengths).argmax(-1)
  assert float((predictions == labels).mean()) > 0.95
