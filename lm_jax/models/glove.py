"""GloVe (Pennington et al. 2014): weighted least squares on log
co-occurrences.

For every non-zero entry X_ij of the co-occurrence matrix,

  J = 1/2 sum_ij f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,
  f(x) = min(1, (x / x_max) ** alpha),

with word vectors w, context vectors w~ and their biases b, b~. The 1/2 is
the reference implementation's (its gradient is f * diff). Parameters start
as there: uniform in [-0.5/dim, 0.5/dim]. The vectors kept at the end are
w + w~, the reference's `-model 2`.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.models.word2vec import uniform_init

Array = jax.Array


def glove_weight(counts: Array, x_max: float = 100.0, alpha: float = 0.75
                 ) -> Array:
  """f(x) = (x / x_max) ** alpha below x_max, 1 above."""
  return jnp.minimum(1.0, (counts / x_max) ** alpha)


def glove_loss(predictions: Array, counts: Array, x_max: float = 100.0,
               alpha: float = 0.75) -> Array:
  """Per-entry 1/2 f(X) (prediction - log X)^2, `[batch]`."""
  return 0.5 * glove_weight(counts, x_max, alpha) * jnp.square(
      predictions - jnp.log(counts))


class GloVe(nn.Module):
  """Word and context vectors with biases.

  Attributes:
    vocab_size: number of words.
    dim: vector size.
  """

  vocab_size: int
  dim: int

  def setup(self):
    init = uniform_init(0.5 / self.dim)
    shape = (self.vocab_size, self.dim)
    self.word_vectors = self.param('word_vectors', init, shape)
    self.context_vectors = self.param('context_vectors', init, shape)
    self.word_biases = self.param('word_biases', init, (self.vocab_size,))
    self.context_biases = self.param('context_biases', init,
                                     (self.vocab_size,))

  def __call__(self, inputs: Array, contexts: Optional[Array] = None
               ) -> Array:
    """w_i . w~_j + b_i + b~_j of each entry, or the words' vectors.

    Args:
      inputs: int `[batch]` rows i.
      contexts: int `[batch]` columns j.

    Returns:
      `[batch]` predicted log counts, or `[batch, dim]` word vectors.
    """
    if contexts is None:
      return self.word_vectors[inputs]
    dots = jnp.sum(self.word_vectors[inputs] * self.context_vectors[contexts],
                   axis=-1)
    return dots + self.word_biases[inputs] + self.context_biases[contexts]

  def embeddings(self) -> Array:
    """The vectors one keeps, w + w~ `[vocab, dim]`."""
    return self.word_vectors + self.context_vectors
