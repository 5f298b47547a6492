"""Tests of lm_jax.models.rnn_lm: shapes, initialisation, the state kept in
the 'cache' collection (chunked = whole, sampling = recomputation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import decode
from lm_jax.models.rnn_lm import RNNLM, RNNLMConfig

V = 11


def _model(**overrides):
  config = dict(vocab_size=V, cell='lstm', embed_dim=8, hidden_size=8,
                num_layers=2, init_scale=0.1)
  config.update(overrides)
  return RNNLM(RNNLMConfig(**config))


def _tokens(shape=(3, 10), seed=0):
  return jax.random.randint(jax.random.key(seed), shape, 0, V)


@pytest.mark.parametrize('cell', ['rnn', 'gru', 'lstm'])
def test_logits_shape_and_parameters(cell):
  model = _model(cell=cell)
  params = model.init(jax.random.key(0), _tokens())['params']
  logits = model.apply({'params': params}, _tokens())
  assert logits.shape == (3, 10, V) and logits.dtype == jnp.float32
  assert set(params) == {'token_embedding', 'rnn', 'output'}
  assert params['output']['kernel'].shape == (8, V)


@pytest.mark.parametrize('second_bias', [False, True])
def test_init_scale_draws_every_weight_uniformly_and_biases_zero(second_bias):
  params = _model(init_scale=0.05, lstm_second_bias=second_bias).init(
      jax.random.key(0), _tokens())['params']
  assert ('hidden_bias' in params['rnn']['layer1_fwd']) == second_bias
  if second_bias:
    with pytest.raises(ValueError, match="for LSTM cells, not 'gru'"):
      _model(cell='gru', lstm_second_bias=True).init(jax.random.key(0),
                                                     _tokens())
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if name.endswith(("['bias']", "['hidden_bias']")):
      np.testing.assert_array_equal(leaf, 0.0, err_msg=name)
    else:
      assert np.abs(leaf).max() <= 0.05 and np.abs(leaf).max() > 0.04, name


def test_tied_embeddings_share_the_table_and_need_equal_sizes():
  model = _model(tie_embeddings=True)
  params = model.init(jax.random.key(0), _tokens())['params']
  assert 'output' not in params and params['output_bias'].shape == (V,)
  with pytest.raises(ValueError, match='tie_embeddings'):
    _model(tie_embeddings=True, embed_dim=6).init(jax.random.key(0),
                                                   _tokens())


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_state_carried_in_the_cache_makes_chunks_equal_the_whole(cell):
  """Truncated BPTT and decoding: three chunks fed in turn, the state kept
  in 'cache', give the logits of the whole sequence in one call."""
  model = _model(cell=cell)
  tokens = _tokens()
  params = model.init(jax.random.key(0), tokens)['params']
  whole = model.apply({'params': params}, tokens)
  cache = decode.empty_cache(model, 3, 1)
  chunks = []
  for piece in (tokens[:, :4], tokens[:, 4:5], tokens[:, 5:]):
    logits, updated = model.apply({'params': params, 'cache': cache}, piece,
                                  decode=True, mutable=['cache'])
    cache = updated['cache']
    chunks.append(logits)
  np.testing.assert_allclose(jnp.concatenate(chunks, 1), whole, atol=1e-5)


def test_greedy_sampling_equals_argmax_of_recomputed_logits():
  model = _model()
  prompt = np.asarray(_tokens((2, 3)), np.int32)
  params = model.init(jax.random.key(0), prompt)['params']
  new = decode.generate(model, params, prompt, 6, jax.random.key(1),
                        max_length=9, temperature=0.0)
  sequence = prompt
  for _ in range(6):
    logits = model.apply({'params': params}, sequence)
    sequence = np.concatenate(
        [sequence, np.argmax(logits[:, -1], -1)[:, None]], 1)
  np.testing.assert_array_equal(new, sequence[:, 3:])


def test_dropout_only_in_training():
  model = _model(dropout_rate=0.5)
  tokens = _tokens()
  params = model.init(jax.random.key(0), tokens)['params']
  a = model.apply({'params': params}, tokens)
  np.testing.assert_array_equal(a, model.apply({'params': params}, tokens))
  b = model.apply({'params': params}, tokens, train=True,
                  rngs={'dropout': jax.random.key(1)})
  assert not np.allclose(a, b)


def test_the_folded_output_layer_is_the_dense_one_in_other_forms():
  """folded_output: the same parameters (initial values included) and,
  up to rounding, the same logits and gradients."""
  tokens, targets = _tokens(), _tokens(seed=1)
  dense, folded = _model(), _model(folded_output=True)
  params = dense.init(jax.random.key(0), tokens)['params']
  jax.tree.map(np.testing.assert_array_equal, params,
               folded.init(jax.random.key(0), tokens)['params'])
  params['output']['bias'] = params['output']['bias'] + 0.3

  def loss(model):
    def fn(params):
      logits = model.apply({'params': params}, tokens)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits),
                                           targets[..., None], -1))
    return jax.jit(jax.value_and_grad(fn))

  (a, grads_a), (b, grads_b) = loss(dense)(params), loss(folded)(params)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6),
               grads_a, grads_b)
