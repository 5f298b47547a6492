"""Attention: masks, scaled dot-product attention and multi-head attention.

Shapes follow one convention throughout lm_jax: activations are
`[batch, length, features]`, per-head tensors are `[batch, length, heads,
head_dim]` and masks are boolean `[batch | 1, heads | 1, q_length, k_length]`
where True means "may attend".
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn import fused_attention
from lm_jax.nn.dropout import dropout

Array = jax.Array


def causal_mask(length: int) -> Array:
  """Lower-triangular mask so position i sees positions <= i.

  Returns:
    Boolean `[1, 1, length, length]`.
  """
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


def padding_mask(query_valid: Array, key_valid: Array) -> Array:
  """Mask from per-token validity (True for real tokens, False for padding).

  Args:
    query_valid: `[batch, q_length]` booleans.
    key_valid: `[batch, k_length]` booleans.

  Returns:
    Boolean `[batch, 1, q_length, k_length]`.
  """
  return (query_valid[:, :, None] & key_valid[:, None, :])[:, None]


def combine_masks(*masks: Optional[Array]) -> Optional[Array]:
  """Logical AND of the masks that are not None (None if all are None)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    out = jnp.logical_and(out, m)
  return out


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    mask: Optional[Array] = None,
    dropout_rate: float = 0.0,
    dropout_rng: Optional[Array] = None,
    deterministic: bool = True,
    return_weights: bool = False,
):
  """softmax(q k^T / sqrt(d)) v, computed per head.

  Args:
    query: `[batch, q_length, heads, head_dim]`.
    key: `[batch, k_length, heads, head_dim]`.
    value: `[batch, k_length, heads, head_dim]`.
    mask: boolean, broadcastable to `[batch, heads, q_length, k_length]`.
    dropout_rate: dropout on the attention weights.
    dropout_rng: PRNG key for that dropout.
    deterministic: disables dropout.
    return_weights: also return the `[batch, heads, q, k]` weights.

  Returns:
    `[batch, q_length, heads, head_dim]`, and the weights if asked for.
  """
  dtype = query.dtype
  query = query / jnp.sqrt(query.shape[-1]).astype(dtype)
  # Both products run on heads-first copies ([batch, heads, ...], keys
  # pre-transposed), which XLA's CPU backend multiplies faster than it
  # contracts the [batch, length, heads, dim] layout in place: 1.1-1.3x on
  # the forward pass at MiniLM's shapes, no slower with the gradient
  # (benchmarks/attention_layout.py).
  # Logits and softmax in float32: bf16 logits lose too much precision in
  # the exponent (rounded before a cast, by up to 3% in the weights).
  logits = jnp.matmul(query.transpose(0, 2, 1, 3), key.transpose(0, 2, 3, 1),
                      preferred_element_type=jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if mask is not None:
    # Rows with no visible key (all padding) get zero weights, not uniform.
    weights = jnp.where(mask, weights, 0.0)
  weights = weights.astype(dtype)
  if not deterministic and dropout_rate > 0.0:
    weights = dropout(weights, dropout_rate, dropout_rng)
  out = jnp.matmul(weights, value.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
  return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
  """Multi-head attention with fused projections and an optional KV cache.

  Self-attention (`inputs_kv=None`) projects q, k and v with one matmul;
  cross-attention projects q from `inputs_q` and k, v (fused) from
  `inputs_kv`.

  With `decode=True` the module keeps a `cache` collection holding the keys
  and values seen so far (`[batch, max_length, heads, head_dim]`) and the
  index of the next free slot, so autoregressive decoding costs O(length) per
  token. A call may append several positions at once (prompt prefill); each
  new query sees the cached keys and the new keys up to its own position.
  Cross-attention in a decoder caches instead the projected keys and values
  of the encoder's output (`cache_kv=True`), which stay fixed while the
  decoder runs. The weights of every call are sown into 'intermediates'
  (`attention_weights`) for pictures.

  Attributes:
    num_heads: number of heads.
    head_dim: features per head (default: input features / heads).
    out_features: output features (default: input features).
    dropout_rate: dropout on attention weights.
    use_bias: biases on the projections.
    dtype: computation dtype (params stay in `param_dtype`).
    param_dtype: parameter dtype.
    kernel_init: initializer of the q/k/v projections.
    out_kernel_init: initializer of the output projection.
    dot_general: the projections' matmul (`lm_jax.nn.precision`); None for
      `lax.dot_general`.
    fused: causal self-attention in float32 on XLA's CPU backend runs
      through `lm_jax.nn.fused_attention` (one custom call each way) when
      nothing needs the weights: no attention dropout in training, no mask
      besides the causal one, no decoding, 'intermediates' not collected.
      It has first derivatives only: set False to take second ones.
  """

  num_heads: int
  head_dim: Optional[int] = None
  out_features: Optional[int] = None
  dropout_rate: float = 0.0
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  out_kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  dot_general: Optional[Callable[..., Array]] = None
  fused: bool = True

  @nn.compact
  def __call__(
      self,
      inputs_q: Array,
      inputs_kv: Optional[Array] = None,
      mask: Optional[Array] = None,
      deterministic: bool = True,
      decode: bool = False,
      return_weights: bool = False,
      cache_kv: bool = False,
      causal: bool = False,
  ):
    """Attends from `inputs_q` to `inputs_kv` (or to itself).

    Args:
      inputs_q: `[batch, q_length, features]`.
      inputs_kv: `[batch, k_length, kv_features]`, or None for self-attention.
      mask: boolean, broadcastable to `[batch, heads, q_length, k_length]`.
        Ignored for the cached self-attention part in decode mode, whose
        causal mask is built from the cache index.
      deterministic: disables dropout.
      decode: use and update the KV cache (self-attention only).
      return_weights: also return the attention weights.
      cache_kv: cross-attention only: project `inputs_kv` on the call that
        creates the 'cache' collection, and on later calls reuse those keys
        and values instead of projecting `inputs_kv` again.
      causal: self-attention only: each position sees itself and those
        before it (and what `mask` allows); in decode mode the cache's mask
        does this already.

    Returns:
      `[batch, q_length, out_features]` (and `[batch, heads, q, k]` weights).
    """
    features = inputs_q.shape[-1]
    if not self.head_dim and (features % self.num_heads
                              or features < self.num_heads):
      # Silently narrower heads (or none) otherwise.
      raise ValueError(f'{features} features do not split into '
                       f'{self.num_heads} attention heads: choose a width '
                       'that divides by num_heads')
    head_dim = self.head_dim or features // self.num_heads
    out_features = self.out_features or features
    dense = lambda n, name: nn.DenseGeneral(  # noqa: E731
        (n, self.num_heads, head_dim), use_bias=self.use_bias,
        dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=self.kernel_init, dot_general=self.dot_general, name=name)

    # Projections see [batch * length, features]: the same computation, but
    # XLA's CPU backend then computes the weight gradients without slow
    # transposing copies of the activations' gradients.
    def project(n, name, x):
      out = dense(n, name)(x.reshape(-1, x.shape[-1]))
      return out.reshape(*x.shape[:2], n, self.num_heads, head_dim)

    if causal and inputs_kv is not None:
      raise ValueError('causal is for self-attention (inputs_kv=None)')
    if inputs_kv is None:
      qkv = project(3, 'qkv', inputs_q)  # [batch, length, 3, heads, head_dim]
      if causal and mask is None and self._fusable(qkv, deterministic,
                                                  decode, return_weights):
        out = fused_attention.causal_self_attention(qkv, head_dim ** -0.5)
        return self._project_out(out, out_features)
      query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
      if decode:
        raise ValueError('The KV cache is for self-attention only; cache '
                         'cross-attention keys by running the encoder once.')
      query = project(1, 'query', inputs_q)[:, :, 0]
      if cache_kv and self.has_variable('cache', 'cross_key'):
        key = self.get_variable('cache', 'cross_key')
        value = self.get_variable('cache', 'cross_value')
      else:
        kv = project(2, 'kv', inputs_kv)
        key, value = kv[:, :, 0], kv[:, :, 1]
        if cache_kv:
          self.put_variable('cache', 'cross_key', key)
          self.put_variable('cache', 'cross_value', value)

    if decode:
      key, value, mask = self._update_cache(key, value)
    elif causal:
      mask = combine_masks(causal_mask(inputs_q.shape[1]), mask)

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng('dropout')
    out = dot_product_attention(
        query, key, value, mask=mask, dropout_rate=self.dropout_rate,
        dropout_rng=dropout_rng, deterministic=deterministic,
        return_weights=True)
    out, weights = out
    self.sow('intermediates', 'attention_weights', weights)
    out = self._project_out(out, out_features)
    return (out, weights) if return_weights else out

  def _fusable(self, qkv: Array, deterministic: bool, decode: bool,
               return_weights: bool) -> bool:
    return (self.fused and not decode and not return_weights
            and (deterministic or self.dropout_rate == 0.0)
            and qkv.dtype == jnp.float32
            and not self.is_mutable_collection('intermediates')
            and jax.default_backend() == 'cpu'
            and fused_attention.available())

  def _project_out(self, out: Array, out_features: int) -> Array:
    """`[batch, length, heads, head_dim]` -> `[batch, length, features]`."""
    batch, length = out.shape[:2]
    out = nn.DenseGeneral(
        out_features, axis=(-2, -1), use_bias=self.use_bias, dtype=self.dtype,
        param_dtype=self.param_dtype, kernel_init=self.out_kernel_init,
        dot_general=self.dot_general, name='out')(
            out.reshape(batch * length, *out.shape[2:]))
    return out.reshape(batch, length, out_features)

  def _update_cache(self, key: Array, value: Array):
    """Appends `key`/`value` (`[batch, new, heads, head_dim]`) to the cache.

    The cache's length is fixed by the shapes seen at initialisation (call
    `init` with a `[batch, max_length]` input and `decode=True`). A call
    whose tokens pass the cache's end gets NaN keys and values, so NaN
    outputs for all its tokens, and so does every later call: the index is
    traced, so this cannot raise, and `dynamic_update_slice` would
    otherwise overwrite the last cached tokens silently.

    Returns:
      All cached keys and values `[batch, max_length, heads, head_dim]` and
      the `[1, 1, new, max_length]` mask of what each new query may see.
    """
    initialised = self.has_variable('cache', 'key')
    cached_key = self.variable('cache', 'key', jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable('cache', 'value', jnp.zeros, value.shape,
                                 value.dtype)
    index = self.variable('cache', 'index', lambda: jnp.array(0, jnp.int32))
    if not initialised:
      # The init pass only sizes the cache; there is nothing to attend to.
      max_length = key.shape[1]
      return key, value, causal_mask(max_length)
    new = key.shape[1]
    max_length = cached_key.value.shape[1]
    start = index.value
    # Past the end, dynamic_update_slice moves the write back over the last
    # cached tokens: they are overwritten with NaN, so that every output
    # from here on is NaN (a select over the new tokens only, not the cache).
    overflow = start + new > max_length
    key, value = (jnp.where(overflow, jnp.nan, x) for x in (key, value))
    cached_key.value = jax.lax.dynamic_update_slice(
        cached_key.value, key.astype(cached_key.value.dtype), (0, start, 0, 0))
    cached_value.value = jax.lax.dynamic_update_slice(
        cached_value.value, value.astype(cached_value.value.dtype),
        (0, start, 0, 0))
    index.value = start + new
    query_pos = start + jnp.arange(new)
    mask = jnp.arange(max_length)[None, :] <= query_pos[:, None]
    return cached_key.value, cached_value.value, mask[None, None]
