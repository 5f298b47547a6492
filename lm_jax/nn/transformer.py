"""Transformer blocks shared by GPT, the encoder-decoder Transformer and BERT.

One block type covers the three uses: an encoder block (self-attention with a
padding mask), a causal decoder block (GPT) and a decoder block with
cross-attention (the translation Transformer). `pre_norm` selects pre-LN
(GPT-2, most modern models) or post-LN (the original Transformer and BERT).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn.attention import MultiHeadAttention
from lm_jax.nn.dropout import Dropout

Array = jax.Array

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jax.custom_vjp
def gelu(x: Array) -> Array:
  """Exact GELU, x * Phi(x), with a hand-written gradient.

  The same values as `jax.nn.gelu(x, approximate=False)`. Its derivative
  Phi(x) + x * phi(x) reuses Phi(x) from the forward pass; XLA's CPU
  backend otherwise recomputes erf inside a slow transposing fusion that
  cost about as much as all the MLP matmuls of a small model.
  """
  return x * (0.5 * (1.0 + jax.lax.erf(x * _INV_SQRT2)))


def _gelu_fwd(x):
  cdf = 0.5 * (1.0 + jax.lax.erf(x * _INV_SQRT2))
  return x * cdf, (x, cdf)


def _gelu_bwd(residuals, g):
  x, cdf = residuals
  pdf = jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI
  return (g * (cdf + x * pdf).astype(g.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)

ACTIVATIONS = {
    'gelu': gelu,
    'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),
    'relu': jax.nn.relu,
}


class MLP(nn.Module):
  """Position-wise feed-forward network: dense -> activation -> dense.

  Attributes:
    hidden_dim: inner width (4x the model width in GPT and BERT).
    activation: a key of `ACTIVATIONS`.
    dropout_rate: dropout on the output.
    use_bias: biases on both dense layers.
    out_kernel_init: initializer of the second layer (GPT-2 scales it down
      with depth so the residual stream's variance stays bounded).
    kernel_init: initializer of the first layer.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    dot_general: both layers' matmul (`lm_jax.nn.precision`); None for
      `lax.dot_general`.
  """

  hidden_dim: int
  activation: str = 'gelu'
  dropout_rate: float = 0.0
  use_bias: bool = True
  out_kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  dot_general: Optional[Callable[..., Array]] = None

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    """`[batch, length, dim]` -> `[batch, length, dim]`."""
    shape, dim = x.shape, x.shape[-1]
    # Position-wise, so [batch * length, dim] is the same computation; on
    # XLA's CPU backend it lets the weight gradients read the activations'
    # gradients in place instead of through a slow transposing copy.
    h = nn.Dense(self.hidden_dim, use_bias=self.use_bias, dtype=self.dtype,
                 param_dtype=self.param_dtype,
                 kernel_init=self.kernel_init, dot_general=self.dot_general,
                 name='fc')(x.reshape(-1, dim))
    h = ACTIVATIONS[self.activation](h)
    h = nn.Dense(dim, use_bias=self.use_bias, dtype=self.dtype,
                 param_dtype=self.param_dtype,
                 kernel_init=self.out_kernel_init, dot_general=self.dot_general,
                 name='proj')(h)
    h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return h.reshape(shape)


class TransformerBlock(nn.Module):
  """Self-attention, optional cross-attention and an MLP, each residual.

  Attributes:
    num_heads: attention heads.
    mlp_dim: MLP inner width.
    dropout_rate: dropout on each sub-layer's output.
    attention_dropout_rate: dropout on attention weights.
    pre_norm: LayerNorm before each sub-layer (True) or after the residual
      sum (False, as in the original Transformer and BERT).
    cross_attention: add an encoder-decoder attention sub-layer.
    activation: MLP activation, a key of `ACTIVATIONS`.
    use_bias: biases in dense and LayerNorm layers.
    num_layers: depth of the whole stack, used to scale the residual
      projections' init by 1/sqrt(2 * num_layers) as in GPT-2.
    layer_norm_epsilon: LayerNorm epsilon.
    kernel_init: initializer of every projection; None for GPT-2's: N(0,
      0.02), the residual projections scaled down by depth, which suits a
      residual stream of embeddings as small. Embeddings scaled up to unit
      variance (the original Transformer's) need larger projections, e.g.
      Glorot's, or the blocks barely move the stream at first.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    dot_general: the projections' and MLP's matmul (`lm_jax.nn.precision`);
      None for `lax.dot_general`.
    fused_attention: `MultiHeadAttention.fused`.
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  pre_norm: bool = True
  cross_attention: bool = False
  activation: str = 'gelu'
  use_bias: bool = True
  num_layers: int = 1
  layer_norm_epsilon: float = 1e-5
  kernel_init: Optional[nn.initializers.Initializer] = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  dot_general: Optional[Callable[..., Array]] = None
  fused_attention: bool = True

  def _norm(self, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=self.layer_norm_epsilon,
                        use_bias=self.use_bias, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=name)

  def _sublayer(self, x: Array, fn, name: str, deterministic: bool) -> Array:
    """x + dropout(fn(norm(x))) for pre-LN; norm(x + dropout(fn(x))) post-LN."""
    drop = Dropout(self.dropout_rate)
    if self.pre_norm:
      return x + drop(fn(self._norm(name)(x)), deterministic=deterministic)
    return self._norm(name)(x + drop(fn(x), deterministic=deterministic))

  @nn.compact
  def __call__(
      self,
      x: Array,
      mask: Optional[Array] = None,
      encoded: Optional[Array] = None,
      encoder_mask: Optional[Array] = None,
      deterministic: bool = True,
      decode: bool = False,
      causal: bool = False,
  ) -> Array:
    """Applies the block.

    Args:
      x: `[batch, length, dim]`.
      mask: self-attention mask, broadcastable to `[batch, heads, q, k]`.
      encoded: encoder output `[batch, src_length, dim]` (cross-attention).
      encoder_mask: cross-attention mask `[batch, 1, length, src_length]`.
      deterministic: disables dropout.
      decode: use the self-attention KV cache, and cache the
        cross-attention's keys and values of `encoded`.
      causal: the self-attention is causal (besides `mask`).

    Returns:
      `[batch, length, dim]`.
    """
    kernel_init = self.kernel_init or nn.initializers.normal(0.02)
    residual_init = self.kernel_init or nn.initializers.normal(
        0.02 / math.sqrt(2 * self.num_layers))
    attention = lambda name: MultiHeadAttention(  # noqa: E731
        num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate,
        use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=kernel_init, out_kernel_init=residual_init,
        dot_general=self.dot_general, fused=self.fused_attention, name=name)

    self_attention = attention('self_attention')
    x = self._sublayer(
        x, lambda h: self_attention(h, mask=mask, deterministic=deterministic,
                                    decode=decode, causal=causal),
        'self_attention_norm', deterministic)
    if self.cross_attention:
      cross = attention('cross_attention')
      x = self._sublayer(
          x, lambda h: cross(h, encoded, mask=encoder_mask,
                             deterministic=deterministic, cache_kv=decode),
          'cross_attention_norm', deterministic)
    mlp = MLP(self.mlp_dim, activation=self.activation,
              dropout_rate=0.0, use_bias=self.use_bias,
              kernel_init=kernel_init, out_kernel_init=residual_init,
              dtype=self.dtype, param_dtype=self.param_dtype,
              dot_general=self.dot_general, name='mlp')
    return self._sublayer(
        x, lambda h: mlp(h, deterministic=deterministic), 'mlp_norm',
        deterministic)
