"""Absolute positional encodings: sinusoidal (Vaswani et al., 2017) and learned.

Both take explicit integer positions so that decoding with a KV cache, where
the first new token sits at position `cache_index`, needs no special case.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def sinusoidal_encoding(positions: Array, dim: int,
                        max_timescale: float = 10_000.0) -> Array:
  """The fixed encodings of "Attention is all you need", section 3.5.

  PE[pos, 2i] = sin(pos / max_timescale^(2i / dim)) and
  PE[pos, 2i + 1] = cos(pos / max_timescale^(2i / dim)).

  Args:
    positions: integer positions, any shape `[...]`.
    dim: encoding size (even).
    max_timescale: the 10,000 of the paper.

  Returns:
    float32 `[..., dim]`.
  """
  if dim % 2:
    raise ValueError(f'sinusoidal encodings need an even dim, got {dim}')
  inv_freq = 1.0 / (max_timescale ** (np.arange(0, dim, 2) / dim))
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  # Interleave so sin lands on even and cos on odd features, as in the paper.
  enc = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return enc.reshape(*positions.shape, dim)


class SinusoidalPositions(nn.Module):
  """Adds no parameters; returns `sinusoidal_encoding` in the compute dtype.

  Attributes:
    dim: encoding size.
    dtype: output dtype.
  """

  dim: int
  dtype: jnp.dtype = jnp.float32

  def __call__(self, positions: Array) -> Array:
    """`[batch, length]` positions -> `[batch, length, dim]` encodings."""
    return sinusoidal_encoding(positions, self.dim).astype(self.dtype)


class LearnedPositions(nn.Module):
  """A trained `[max_length, dim]` table (GPT, BERT).

  Attributes:
    max_length: number of positions the table holds.
    dim: encoding size.
    dtype: output dtype.
    param_dtype: table dtype.
  """

  max_length: int
  dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, positions: Array) -> Array:
    """`[batch, length]` positions -> `[batch, length, dim]` embeddings."""
    table = self.param('embedding', nn.initializers.normal(0.02),
                       (self.max_length, self.dim), self.param_dtype)
    return jnp.take(table, positions, axis=0).astype(self.dtype)


def make_positions(kind: str, max_length: int, dim: int, dtype, param_dtype,
                   name: str = 'positions') -> nn.Module:
  """Builds the positional module named by a config string."""
  if kind == 'sinusoidal':
    return SinusoidalPositions(dim, dtype=dtype, name=name)
  if kind == 'learned':
    return LearnedPositions(max_length, dim, dtype=dtype,
                            param_dtype=param_dtype, name=name)
  raise ValueError(f"unknown positional encoding {kind!r}: use 'sinusoidal' "
                   "or 'learned'")
