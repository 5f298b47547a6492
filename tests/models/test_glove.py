"""Tests of lm_jax.models.glove: the weighting function, the per-entry loss,
shapes, the kept vectors, and that AdaGrad on the objective fits a tiny
corpus's co-occurrence matrix.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax.data import word_pairs
from lm_jax.models import glove


def test_weighting_function():
  x = jnp.array([1.0, 10.0, 50.0, 100.0, 250.0])
  got = glove.glove_weight(x, x_max=100.0, alpha=0.75)
  want = [0.01 ** 0.75, 0.1 ** 0.75, 0.5 ** 0.75, 1.0, 1.0]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[2] == pytest.approx(0.594604, abs=1e-6)
  np.testing.assert_allclose(glove.glove_weight(x, 10.0, 1.0),
                             [0.1, 1.0, 1.0, 1.0, 1.0])


def test_loss_is_half_weighted_squared_log_error():
  loss = glove.glove_loss(jnp.array([1.0, 0.0]), jnp.array([50.0, 200.0]))
  want = [0.5 * 0.5 ** 0.75 * (1.0 - math.log(50.0)) ** 2,
          0.5 * (0.0 - math.log(200.0)) ** 2]
  np.testing.assert_allclose(loss, want, rtol=1e-6)


def test_shapes_predictions_and_kept_vectors():
  model = glove.GloVe(9, 5)
  params = model.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))['params']
  assert {k: v.shape for k, v in params.items()} == {
      'word_vectors': (9, 5), 'context_vectors': (9, 5),
      'word_biases': (9,), 'context_biases': (9,)}
  assert max(np.abs(v).max() for v in params.values()) <= 0.5 / 5
  i, j = jnp.array([1, 4]), jnp.array([2, 2])
  pred = model.apply({'params': params}, i, j)
  p = {k: np.asarray(v) for k, v in params.items()}
  want = [p['word_vectors'][a] @ p['context_vectors'][b]
          + p['word_biases'][a] + p['context_biases'][b] for a, b in
          ((1, 2), (4, 2))]
  np.testing.assert_allclose(pred, want, rtol=1e-5)
  np.testing.assert_allclose(model.apply({'params': params},
                                         method='embeddings'),
                             p['word_vectors'] + p['context_vectors'])


def test_adagrad_reduces_the_objective_on_a_tiny_corpus():
  rng = np.random.default_rng(0)
  sentences = [[f'w{i}' for i in rng.integers(0, 12, 8)] for _ in range(200)]
  vocab = word_pairs.WordVocabulary.from_sentences(sentences, min_count=1)
  rows, cols, counts = word_pairs.cooccurrence(vocab.encode(sentences),
                                               len(vocab), window=3)
  model = glove.GloVe(len(vocab), 8)
  params = model.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))['params']
  tx = optax.adagrad(0.1, initial_accumulator_value=0.0)
  state = tx.init(params)
  rows, cols, counts = jnp.asarray(rows), jnp.asarray(cols), jnp.asarray(
      counts, jnp.float32)

  def objective(p):
    pred = model.apply({'params': p}, rows, cols)
    return glove.glove_loss(pred, counts, x_max=10.0).sum()

  @jax.jit
  def step(p, s):
    updates, s = tx.update(jax.grad(objective)(p), s, p)
    return optax.apply_updates(p, updates), s

  start = float(objective(params))
  for _ in range(300):
    params, state = step(params, state)
  assert float(objective(params)) < 0.05 * start
