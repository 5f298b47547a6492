"""word2vec (Mikolov et al. 2013): skip-gram and CBOW, negative sampling.

Two tables of word vectors: the input vectors (the embeddings one keeps)
and the output vectors that score candidate words. Skip-gram reads one
word's input vector; CBOW the mean of a window's. Either scores the true
word against sampled noise words with

  loss = -log sigmoid(u_true . h) - sum_k log sigmoid(-u_noise_k . h),

where h is the hidden vector and u are output vectors. Initialisation is
word2vec.c's: input vectors uniform in [-0.5/dim, 0.5/dim], output vectors
zero.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def uniform_init(scale: float):
  """Initialiser drawing uniformly from [-scale, scale)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def mean_with_summed_gradient(total: Array, count: Array) -> Array:
  """`total / count` whose gradient reaches `total` undivided.

  word2vec.c's CBOW and fastText average the input vectors in the forward
  pass but add the hidden layer's whole error to each of them; this
  reproduces that update rule (it is not the gradient of the mean).

  Args:
    total: `[..., dim]` sums of input vectors.
    count: `[...]` how many vectors each sum holds (>= 1 where used).
  """
  mean = total / jnp.maximum(count, 1.0)[..., None]
  return total + jax.lax.stop_gradient(mean - total)


def scale_gradient(x: Array, scale: Array) -> Array:
  """`x` in the forward pass; its gradient is multiplied by `scale`."""
  frozen = jax.lax.stop_gradient(x)
  return frozen + jax.lax.stop_gradient(scale) * (x - frozen)


def use_scale(uses: Array, max_uses: float) -> Array:
  """min(1, max_uses / uses): the factor that caps a row's summed gradient
  at `max_uses` of its `uses` (rows used once get 1)."""
  return jnp.minimum(1.0, max_uses / jnp.maximum(uses, 1.0))


def count_uses(num_rows: int, ids: Array,
               weights: Optional[Array] = None) -> Array:
  """float32 `[num_rows]`: the uses of each row that int `ids` make, each
  counted with its `weights` entry (default 1)."""
  weights = jnp.ones(ids.shape) if weights is None else weights
  return jnp.zeros(num_rows, jnp.float32).at[ids.reshape(-1)].add(
      weights.reshape(-1).astype(jnp.float32))


def gather_rows(table: Array, ids: Array, max_uses: float = 0.0,
                uses: Optional[Array] = None) -> Array:
  """`table[ids]`, whose gradient per row sums at most `max_uses` uses.

  A row used n times in a batch gets its summed gradient scaled by
  min(1, max_uses / n): the sum for rare words, as word2vec's one update
  per use; the mean x max_uses for very frequent ones. word2vec.c applies
  those n updates one after another, each seeing the last, so they cannot
  overshoot; applied at once they can, and a batch of many thousand pairs
  holds `the` hundreds of times. 0 keeps the plain summed gradient.

  Args:
    table: `[rows, dim]`.
    ids: int `[...]` row ids.
    max_uses: the cap on the number of summed uses; 0 for none.
    uses: `[rows]` the uses to cap (`count_uses`), where they are not one
      per entry of `ids`: masked entries, rows shared by several examples
      or gathered by another call in the same loss. None: one per entry.

  Returns:
    `[..., dim]` rows.
  """
  rows = table[ids]
  if not max_uses:
    return rows
  if uses is None:
    uses = count_uses(table.shape[0], ids)
  return scale_gradient(rows, use_scale(uses, max_uses)[ids][..., None])


def negative_sampling_loss(true_scores: Array, noise_scores: Array,
                           noise_mask: Optional[Array] = None) -> Array:
  """Per-example negative-sampling loss,
  -log sigmoid(s_true) - sum_k m_k log sigmoid(-s_noise_k).

  Args:
    true_scores: `[batch]` scores u_true . h of the true words.
    noise_scores: `[batch, negatives]` scores of the noise words.
    noise_mask: `[batch, negatives]`; 0 drops a noise word (one that drew
      the true word: word2vec.c skips those).

  Returns:
    `[batch]` losses.
  """
  noise = jax.nn.log_sigmoid(-noise_scores)
  if noise_mask is not None:
    noise = noise * noise_mask
  return -jax.nn.log_sigmoid(true_scores) - noise.sum(axis=-1)


def candidate_scores(hidden: Array, output_vectors: Array, targets: Array,
                     negatives: Array, max_uses: float = 0.0
                     ) -> tuple[Array, Array]:
  """Scores of the true words and of noise words shared by groups.

  Consecutive groups of batch // groups examples share one draw of noise
  words (groups = batch: every example has its own, as in word2vec.c).
  Sharing saves most of the row gathers, the bulk of a step's time.

  Args:
    hidden: `[batch, dim]` hidden vectors.
    output_vectors: `[vocab, dim]`.
    targets: int `[batch]` true words.
    negatives: int `[groups, negatives]` noise words of each group.
    max_uses: see `gather_rows`.

  Returns:
    (`[batch]` true-word scores, `[batch, negatives]` noise scores).
  """
  batch, dim = hidden.shape
  groups = negatives.shape[0]
  uses = None
  if max_uses:
    # A group's noise row serves each of its batch // groups examples, and
    # a row can be a true word and a noise word of one batch: one tally.
    num_rows = output_vectors.shape[0]
    uses = (count_uses(num_rows, targets) +
            count_uses(num_rows, negatives) * (batch // groups))
  true = jnp.sum(
      hidden * gather_rows(output_vectors, targets, max_uses, uses), -1)
  noise = jnp.einsum('rgd,rkd->rgk', hidden.reshape(groups, -1, dim),
                     gather_rows(output_vectors, negatives, max_uses, uses))
  return true, noise.reshape(batch, -1)


class Word2Vec(nn.Module):
  """Input and output word vectors; skip-gram or CBOW hidden vectors.

  Attributes:
    vocab_size: number of words.
    dim: vector size.
    cbow: the hidden vector is the mean of a window's input vectors (with
      word2vec.c's undivided update) instead of one word's.
    max_row_uses: caps the uses summed in a row's gradient (`gather_rows`);
      0 for none.
  """

  vocab_size: int
  dim: int
  cbow: bool = False
  max_row_uses: float = 0.0

  def setup(self):
    self.input_vectors = self.param(
        'input_vectors', uniform_init(0.5 / self.dim),
        (self.vocab_size, self.dim))
    self.output_vectors = self.param(
        'output_vectors', nn.initializers.zeros, (self.vocab_size, self.dim))

  def hidden(self, inputs: Array, input_mask: Optional[Array] = None
             ) -> Array:
    """Hidden vectors `[batch, dim]`.

    Args:
      inputs: int `[batch]` words (skip-gram), or `[batch, window]` (CBOW).
      input_mask: CBOW only: `[batch, window]`, 1 for real context words.
    """
    if self.cbow and input_mask is None:
      input_mask = jnp.ones(inputs.shape, jnp.float32)
    # A CBOW window's padding slots are not uses.
    uses = (count_uses(self.vocab_size, inputs, input_mask)
            if self.cbow and self.max_row_uses else None)
    vectors = gather_rows(self.input_vectors, inputs, self.max_row_uses, uses)
    if not self.cbow:
      return vectors
    total = jnp.einsum('bw,bwd->bd', input_mask, vectors)
    return mean_with_summed_gradient(total, input_mask.sum(-1))

  def __call__(self, inputs: Array, targets: Optional[Array] = None,
               negatives: Optional[Array] = None,
               input_mask: Optional[Array] = None):
    """Scores of the true and noise words, or the hidden vectors.

    Args:
      inputs: int `[batch]` (skip-gram) or `[batch, window]` (CBOW).
      targets: int `[batch]` true words.
      negatives: int `[groups, negatives]`, see `candidate_scores`.
      input_mask: CBOW only, `[batch, window]`.

    Returns:
      (`[batch]`, `[batch, negatives]`) scores, or `[batch, dim]` hidden
      vectors when no targets are given.
    """
    h = self.hidden(inputs, input_mask)
    if targets is None:
      return h
    return candidate_scores(h, self.output_vectors, targets, negatives,
                            self.max_row_uses)

  def embeddings(self) -> Array:
    """The word vectors one keeps: the input table `[vocab, dim]`."""
    return self.input_vectors
