"""Attention for recurrent encoder-decoders: Bahdanau's additive attention
and Luong's dot / general / concat scores.

One decoder step attends from a query `[batch, query_dim]` (the decoder's
state) over the encoder's outputs, the memory `[batch, src_length,
memory_dim]`, of which `mask` `[batch, src_length]` marks the real tokens.
Each module splits its work like the recurrent cells do: `keys(memory)`
computes everything that depends on the memory alone, once per sentence;
`__call__` does the per-step rest. It returns the context vector (the
weighted sum of the memory) and the weights, for alignment pictures.

`AttentivePooling` is the same additive score with a learned query in place
of a decoder state: it pools a sentence's states into one vector for a
classifier (Yang et al. 2016; the flax `sst2` example's attention).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def masked_softmax(scores: Array, mask: Array) -> Array:
  """Softmax over the last axis where `mask` is True; 0 elsewhere.

  A row with no True entry (an all-padding source) gets all-zero weights,
  not a uniform spread over padding.

  Args:
    scores: `[batch, src_length]`.
    mask: boolean `[batch, src_length]`.
  """
  scores = jnp.where(mask, scores.astype(jnp.float32),
                     jnp.finfo(jnp.float32).min)
  return jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)


def _context(weights: Array, memory: Array) -> Array:
  """`[batch, src]` weights x `[batch, src, dim]` memory -> `[batch, dim]`."""
  return jnp.einsum('bs,bsd->bd', weights.astype(memory.dtype), memory)


class AdditiveAttention(nn.Module):
  """Bahdanau et al. (2015): e_j = v^T tanh(W s + U h_j).

  `U h_j` is the same at every decoder step, so `keys` computes it once.

  Attributes:
    features: the width of the tanh layer (the paper's n').
    dtype: computation dtype.
  """

  features: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.memory_proj = nn.Dense(self.features, dtype=self.dtype, name='U')
    self.query_proj = nn.Dense(self.features, use_bias=False,
                               dtype=self.dtype, name='W')
    # Scores in float32, as the softmax: rounded to bfloat16 first, close
    # scores would lose their order.
    self.score = nn.Dense(1, use_bias=False, dtype=jnp.float32, name='v')

  def keys(self, memory: Array) -> Array:
    """`[batch, src, memory_dim]` -> `U h` `[batch, src, features]`."""
    return self.memory_proj(memory)

  def __call__(self, query: Array, keys: Array, memory: Array, mask: Array
               ) -> tuple[Array, Array]:
    """Attends from `query` `[batch, query_dim]` (the previous decoder
    state s_{i-1}).

    Returns:
      (context `[batch, memory_dim]`, weights `[batch, src]`).
    """
    energy = jnp.tanh(keys + self.query_proj(query)[:, None, :])
    weights = masked_softmax(self.score(energy)[..., 0], mask)
    return _context(weights, memory), weights


class AttentivePooling(nn.Module):
  """Pools `[batch, length, dim]` states into `[batch, dim]`: weights
  softmax_j(v^T tanh(U h_j)) over the real positions, then the weighted sum.

  Attributes:
    features: the width of the tanh layer.
    dtype: computation dtype.
  """

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, states: Array, mask: Array) -> Array:
    """`states` `[batch, length, dim]`, boolean `mask` `[batch, length]`
    -> `[batch, dim]` (zeros for a row with no real position)."""
    energy = jnp.tanh(nn.Dense(self.features, dtype=self.dtype,
                               name='U')(states))
    scores = nn.Dense(1, use_bias=False, dtype=jnp.float32,  # as softmax
                      name='v')(energy)
    return _context(masked_softmax(scores[..., 0], mask), states)


LUONG_SCORES = ('dot', 'general', 'concat')


class LuongAttention(nn.Module):
  """Luong et al. (2015), global attention, section 3.1:

    dot:     score(h_t, h_s) = h_t . h_s
    general: score(h_t, h_s) = h_t . (W_a h_s)
    concat:  score(h_t, h_s) = v_a^T tanh(W_a [h_t; h_s])

  The query is the decoder's current state h_t (after its step, unlike
  Bahdanau's previous state). 'dot' needs a memory as wide as the query.
  `W_a h_s`, and the h_s half of `W_a [h_t; h_s]`, are the same at every
  step, so `keys` computes them once.

  Attributes:
    score: 'dot', 'general' or 'concat'.
    query_dim: the query's width (the decoder's hidden size).
    features: the tanh layer's width ('concat' only; 0: `query_dim`).
    dtype: computation dtype.
  """

  score: str
  query_dim: int
  features: int = 0
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    if self.score == 'general':
      self.memory_proj = nn.Dense(self.query_dim, use_bias=False,
                                  dtype=self.dtype, name='W_a')
    elif self.score == 'concat':
      width = self.features or self.query_dim
      self.memory_proj = nn.Dense(width, dtype=self.dtype, name='W_memory')
      self.query_proj = nn.Dense(width, use_bias=False, dtype=self.dtype,
                                 name='W_query')
      self.v = nn.Dense(1, use_bias=False, dtype=jnp.float32, name='v')
    elif self.score != 'dot':
      raise ValueError(f'unknown Luong score {self.score!r}; known: '
                       f'{LUONG_SCORES}')

  def keys(self, memory: Array) -> Array:
    """`[batch, src, memory_dim]` -> the memory's part of the score."""
    if self.score == 'dot':
      if memory.shape[-1] != self.query_dim:
        raise ValueError(f"Luong's 'dot' score needs a memory as wide as the "
                         f'query: {memory.shape[-1]} != {self.query_dim}')
      return memory
    return self.memory_proj(memory)

  def __call__(self, query: Array, keys: Array, memory: Array, mask: Array
               ) -> tuple[Array, Array]:
    """Attends from `query` `[batch, query_dim]`, the current state h_t.

    Args:
      query: `[batch, query_dim]`.
      keys: what `keys(memory)` returned.
      memory: `[batch, src, memory_dim]`, the vectors averaged.
      mask: boolean `[batch, src]`.

    Returns:
      (context `[batch, memory_dim]`, weights `[batch, src]`).
    """
    if self.score == 'concat':
      energy = jnp.tanh(keys + self.query_proj(query)[:, None, :])
      scores = self.v(energy)[..., 0]
    else:
      scores = jnp.einsum('bd,bsd->bs', query, keys,
                          preferred_element_type=jnp.float32)
    weights = masked_softmax(scores, mask)
    return _context(weights, memory), weights
