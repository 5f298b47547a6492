"""Tests of lm_jax.models.word2vec: shapes and initialisation, the
negative-sampling loss against hand-computed values, word2vec.c's CBOW
update rule, noise shared by groups, and the per-row cap on summed uses.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models import word2vec as w2v


def _model(cbow=False, vocab=7, dim=4, max_row_uses=0.0, seed=0):
  model = w2v.Word2Vec(vocab, dim, cbow=cbow, max_row_uses=max_row_uses)
  inputs = jnp.zeros((1, 4) if cbow else (1,), jnp.int32)
  params = model.init(jax.random.key(seed), inputs)['params']
  return model, params


def test_parameters_and_initialisation():
  model, params = _model(vocab=50, dim=8)
  assert params['input_vectors'].shape == (50, 8)
  assert params['output_vectors'].shape == (50, 8)
  assert np.abs(params['input_vectors']).max() <= 0.5 / 8
  assert np.abs(params['input_vectors']).std() > 0.01
  np.testing.assert_array_equal(params['output_vectors'], 0.0)
  np.testing.assert_array_equal(
      model.apply({'params': params}, method='embeddings'),
      params['input_vectors'])


@pytest.mark.parametrize('cbow', [False, True])
def test_output_shapes(cbow):
  model, params = _model(cbow=cbow)
  inputs = jnp.zeros((6, 4) if cbow else (6,), jnp.int32)
  assert model.apply({'params': params}, inputs).shape == (6, 4)
  true, noise = model.apply({'params': params}, inputs,
                            jnp.zeros((6,), jnp.int32),
                            jnp.zeros((3, 5), jnp.int32))
  assert true.shape == (6,) and noise.shape == (6, 5)


def _log_sigmoid(x):
  return -math.log1p(math.exp(-x))


def test_negative_sampling_loss_equals_hand_computed_value():
  loss = w2v.negative_sampling_loss(jnp.array([2.0, 0.0]),
                                    jnp.array([[1.0, -1.0], [0.0, 3.0]]),
                                    jnp.array([[1.0, 1.0], [1.0, 0.0]]))
  first = -(_log_sigmoid(2.0) + _log_sigmoid(-1.0) + _log_sigmoid(1.0))
  second = -(_log_sigmoid(0.0) + _log_sigmoid(0.0))  # the 3.0 is masked
  np.testing.assert_allclose(loss, [first, second], rtol=1e-6)
  assert first == pytest.approx(0.126928 + 1.313262 + 0.313262, abs=1e-5)


def test_model_scores_are_dot_products_of_input_and_output_vectors():
  model, params = _model(vocab=5, dim=3)
  params = {'input_vectors': jnp.arange(15.0).reshape(5, 3) / 10,
            'output_vectors': jnp.arange(15.0)[::-1].reshape(5, 3) / 10}
  true, noise = model.apply({'params': params}, jnp.array([1, 2]),
                            jnp.array([0, 4]), jnp.array([[3, 1], [2, 2]]))
  inp, out = np.asarray(params['input_vectors']), np.asarray(
      params['output_vectors'])
  np.testing.assert_allclose(true, [inp[1] @ out[0], inp[2] @ out[4]],
                             rtol=1e-6)
  np.testing.assert_allclose(noise, [[inp[1] @ out[3], inp[1] @ out[1]],
                                     [inp[2] @ out[2], inp[2] @ out[2]]],
                             rtol=1e-6)


def test_shared_noise_equals_repeated_per_example_noise():
  model, params = _model(vocab=20, dim=6, seed=1)
  params = dict(params, output_vectors=jax.random.normal(
      jax.random.key(2), (20, 6)))
  inputs = jnp.arange(8) % 20
  targets = (jnp.arange(8) * 3) % 20
  shared = jnp.array([[1, 2, 3], [4, 5, 6]])  # 4 examples per group
  _, grouped = model.apply({'params': params}, inputs, targets, shared)
  _, each = model.apply({'params': params}, inputs, targets,
                        jnp.repeat(shared, 4, axis=0))
  # The two paths reduce in different orders, so allow float32 rounding.
  np.testing.assert_allclose(grouped, each, rtol=1e-5, atol=1e-6)


def test_mean_with_summed_gradient():
  vectors = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])

  def f(v):
    mean = w2v.mean_with_summed_gradient(v.sum(0), jnp.float32(3))
    return jnp.dot(mean, jnp.array([1.0, -2.0]))

  assert f(vectors) == pytest.approx(3.0 - 8.0)
  # Each input receives the whole error, not a third of it.
  np.testing.assert_allclose(jax.grad(f)(vectors), [[1.0, -2.0]] * 3)


def test_cbow_hidden_is_the_masked_mean_with_word2vec_updates():
  model, params = _model(cbow=True, vocab=6, dim=3)
  inputs = jnp.array([[1, 2, 3, 0]])
  mask = jnp.array([[1.0, 1.0, 0.0, 0.0]])
  table = np.asarray(params['input_vectors'])
  hidden = model.apply({'params': params}, inputs, input_mask=mask)
  np.testing.assert_allclose(hidden[0], (table[1] + table[2]) / 2, rtol=1e-6)

  def f(p):
    return model.apply({'params': p}, inputs, input_mask=mask).sum()

  grads = np.asarray(jax.grad(f)(params)['input_vectors'])
  np.testing.assert_allclose(grads[[1, 2]], np.ones((2, 3)))
  np.testing.assert_allclose(grads[[0, 3, 4, 5]], 0.0)


def test_gather_rows_caps_the_summed_uses_of_a_row():
  table = jnp.zeros((3, 2))
  ids = jnp.array([0, 0, 0, 0, 1, 2, 2])

  def f(t, cap):
    rows = w2v.gather_rows(t, ids, cap)
    return jnp.sum(rows * jnp.arange(1.0, 8.0)[:, None])

  plain = jax.grad(f)(table, 0.0)
  np.testing.assert_allclose(plain[:, 0], [1 + 2 + 3 + 4, 5, 6 + 7])
  capped = jax.grad(f)(table, 2.0)
  # Row 0 is used 4 times: half its sum; rows 1 and 2 are within the cap.
  np.testing.assert_allclose(capped[:, 0], [10 / 2, 5, 13])
  np.testing.assert_allclose(w2v.gather_rows(table + 1, ids, 2.0), 1.0)


def _grads(model, inputs, targets, negatives, mask=None, output_key=1):
  params = model.init(jax.random.key(0), inputs, targets, negatives,
                      mask)['params']
  params = dict(params, output_vectors=jax.random.normal(
      jax.random.key(output_key), params['output_vectors'].shape))

  def loss(p):
    true, noise = model.apply({'params': p}, inputs, targets, negatives, mask)
    return w2v.negative_sampling_loss(true, noise).sum()

  return jax.grad(loss)(params)


def test_cbow_padding_slots_are_not_uses_of_the_id_they_hold():
  """Word 0 is used once; the windows' padding slots hold id 0 or id 9,
  and must not count as its uses under the cap."""
  model = w2v.Word2Vec(vocab_size=10, dim=4, cbow=True, max_row_uses=1.0)
  mask = jnp.array([[1., 1., 0., 0.], [1., 1., 0., 0.]])
  targets, negatives = jnp.array([5, 6]), jnp.array([[7], [8]])
  grads = [
      _grads(model, jnp.array([[0, 1, pad, pad], [2, 3, pad, pad]]), targets,
             negatives, mask)['input_vectors'][0] for pad in (9, 0)]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6)
  assert np.abs(grads[0]).max() > 0.1


def test_a_shared_noise_row_counts_one_use_per_example_it_serves():
  """Noise word 7 drawn once for a group of four examples gets the same
  capped gradient as when each example draws it itself."""
  model = w2v.Word2Vec(vocab_size=10, dim=4, max_row_uses=1.0)
  inputs, targets = jnp.array([0, 1, 2, 3]), jnp.array([4, 5, 6, 8])
  shared, own = (_grads(model, inputs, targets, negatives)['output_vectors'][7]
                 for negatives in (jnp.array([[7]]), jnp.array([[7]] * 4)))
  np.testing.assert_allclose(shared, own, rtol=1e-6)
  uncapped = _grads(w2v.Word2Vec(vocab_size=10, dim=4), inputs, targets,
                    jnp.array([[7]]))['output_vectors'][7]
  np.testing.assert_allclose(own, uncapped / 4, rtol=1e-6)


def test_a_row_both_true_and_noise_word_is_capped_once():
  """Word 7 is example 0's true word and example 1's noise word: two uses
  in one tally, so at a cap of 1 it gets half its summed gradient."""
  inputs, targets = jnp.array([0, 1]), jnp.array([7, 5])
  negatives = jnp.array([[3], [7]])
  capped, plain = (
      _grads(w2v.Word2Vec(vocab_size=10, dim=4, max_row_uses=cap), inputs,
             targets, negatives)['output_vectors'][7] for cap in (1.0, 0.0))
  np.testing.assert_allclose(capped, plain / 2, rtol=1e-6)


def test_sgd_on_the_loss_separates_true_from_noise_words():
  # A few full-batch SGD steps on one example raise the true word's score
  # and lower the noise words'.
  model, params = _model(vocab=5, dim=4, seed=3)
  batch = (jnp.array([1]), jnp.array([2]), jnp.array([[3, 4]]))

  def loss(p):
    true, noise = model.apply({'params': p}, *batch)
    return w2v.negative_sampling_loss(true, noise).sum()

  step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 2.0 * g, p,
                                        jax.grad(loss)(p)))
  start = loss(params)
  for _ in range(200):
    params = step(params)
  true, noise = model.apply({'params': params}, *batch)
  assert loss(params) < 0.1 * start
  assert true[0] > 2 and noise.max() < -2
