"""GPT: a decoder-only causal Transformer language model (Radford et al.).

token embedding + positions -> N pre-LN causal blocks -> final LayerNorm ->
logits through the transposed token embedding (tied head).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn import precision
from lm_jax.nn.dropout import Dropout
from lm_jax.nn.positional import make_positions
from lm_jax.nn.transformer import TransformerBlock

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """Hyperparameters of `GPT` (the subset of the run config it needs)."""

  vocab_size: int
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  mlp_ratio: int = 4
  max_length: int = 64
  # On the embeddings, the attention weights and each block's residual
  # branches, as nanoGPT's one `dropout`.
  dropout_rate: float = 0.0
  positional: str = 'learned'
  use_bias: bool = True
  activation: str = 'gelu'
  dtype: str = 'float32'
  matmul_dtype: str = ''  # 'bfloat16': see lm_jax.nn.precision
  fused_attention: bool = True  # see lm_jax.nn.fused_attention


class GPT(nn.Module):
  """Causal Transformer LM.

  Attributes:
    config: the hyperparameters.
  """

  config: GPTConfig

  @nn.compact
  def __call__(self, tokens: Array, train: bool = False,
               decode: bool = False) -> Array:
    """Next-token logits for every position.

    Args:
      tokens: int `[batch, length]`.
      train: enables dropout (needs a 'dropout' rng).
      decode: incremental decoding with a KV cache (mutable 'cache'); the
        tokens are appended after those already cached.

    Returns:
      float32 logits `[batch, length, vocab_size]`.
    """
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    dot_general = precision.dot_general_for(cfg.matmul_dtype)
    batch, length = tokens.shape
    if length > cfg.max_length:
      # Positions past the table would read NaNs (an out-of-range gather).
      raise ValueError(f'{length} tokens do not fit the model\'s max_length '
                       f'{cfg.max_length}')
    embed = nn.Embed(cfg.vocab_size, cfg.embed_dim,
                     embedding_init=nn.initializers.normal(0.02),
                     dtype=dtype, name='token_embedding')

    if decode:
      # Track where the new tokens start; the attention caches track the same.
      initialised = self.has_variable('cache', 'position')
      position = self.variable('cache', 'position',
                               lambda: jnp.array(0, jnp.int32))
      start = position.value if initialised else 0
      if initialised:
        position.value = start + length
    else:
      start = 0
    positions = jnp.broadcast_to(start + jnp.arange(length), (batch, length))

    x = embed(tokens) + make_positions(
        cfg.positional, cfg.max_length, cfg.embed_dim, dtype, jnp.float32)(
            positions)
    x = Dropout(cfg.dropout_rate)(x, deterministic=not train)
    for i in range(cfg.num_layers):
      x = TransformerBlock(
          num_heads=cfg.num_heads, mlp_dim=cfg.mlp_ratio * cfg.embed_dim,
          dropout_rate=cfg.dropout_rate,
          attention_dropout_rate=cfg.dropout_rate, pre_norm=True,
          activation=cfg.activation, use_bias=cfg.use_bias,
          num_layers=cfg.num_layers, dtype=dtype, dot_general=dot_general,
          fused_attention=cfg.fused_attention,
          name=f'block_{i}')(x, deterministic=not train, decode=decode,
                             causal=True)
    # nanoGPT's epsilon, as the blocks' (flax's default is 1e-6).
    x = nn.LayerNorm(epsilon=1e-5, use_bias=cfg.use_bias, dtype=dtype,
                     name='final_norm')(x)
    # Flat [batch * length, dim] rows: see lm_jax.nn.transformer.MLP.
    x = x.reshape(batch * length, -1)
    logits = precision.attend(embed, x, cfg.matmul_dtype)
    return logits.reshape(batch, length, -1).astype(jnp.float32)
