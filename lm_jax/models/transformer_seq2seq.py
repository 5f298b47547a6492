"""The encoder-decoder Transformer of "Attention is all you need" (Vaswani et
al. 2017), for translation.

source tokens -> embedding x sqrt(d) + sinusoids -> N encoder blocks
(self-attention over the source, padding masked) -> encoded source;
target tokens (shifted right) -> embedding x sqrt(d) + sinusoids -> N
decoder blocks (causal self-attention, cross-attention over the encoded
source, MLP) -> logits over the target vocabulary.

Token id 0 is padding. Decoding keeps the decoder's state in the 'cache'
collection (see `decode`), as every lm_jax sequence-to-sequence model does,
so one search routine (`lm_jax.decode`) serves them all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn.attention import causal_mask
from lm_jax.nn.dropout import Dropout
from lm_jax.nn.positional import sinusoidal_encoding
from lm_jax.nn.transformer import TransformerBlock

Array = jax.Array
Memory = dict[str, Array]

SHARE_EMBEDDINGS = ('none', 'decoder', 'all')


@dataclasses.dataclass(frozen=True)
class TransformerSeq2SeqConfig:
  """Hyperparameters of `TransformerSeq2Seq`.

  Attributes:
    source_vocab_size: source ids.
    target_vocab_size: target ids.
    num_layers: blocks in the encoder, and in the decoder.
    num_heads: attention heads.
    embed_dim: model width d.
    mlp_dim: feed-forward inner width.
    dropout_rate: dropout on embeddings and on each sub-layer's output.
    attention_dropout_rate: dropout on attention weights.
    share_embeddings: 'none'; 'decoder' ties the target embedding to the
      output layer (Press & Wolf 2017); 'all' also uses it for the source,
      as the paper does with its shared vocabulary (needs one vocabulary).
    pre_norm: LayerNorm before each sub-layer (and after each stack), which
      trains stably without a long warm-up; False is the paper's post-LN.
    activation: MLP activation ('relu' in the paper).
    use_bias: biases in the projections and LayerNorms (the paper's).
    bos_id: the decoder's first input.
    dtype: computation dtype ('float32' or 'bfloat16').
  """

  source_vocab_size: int
  target_vocab_size: int
  num_layers: int = 3
  num_heads: int = 8
  embed_dim: int = 256
  mlp_dim: int = 512
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  share_embeddings: str = 'all'
  pre_norm: bool = True
  activation: str = 'relu'
  use_bias: bool = True
  bos_id: int = 2
  dtype: str = 'float32'


class _Stack(nn.Module):
  """Embedding, positions and N blocks: the encoder or the decoder.

  Attributes:
    config: the model's hyperparameters.
    embed: the token embedding (shared with other stacks or not).
    decoder: causal self-attention and cross-attention blocks.
  """

  config: TransformerSeq2SeqConfig
  embed: nn.Embed
  decoder: bool = False

  @nn.compact
  def __call__(self, tokens: Array, mask: Optional[Array] = None,
               memory: Optional[Memory] = None, train: bool = False,
               decode: bool = False) -> Array:
    """`[batch, length]` tokens -> `[batch, length, d]` states."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    batch, length = tokens.shape
    start = 0
    if decode:
      # Where the new tokens start; the attention caches track the same.
      initialised = self.has_variable('cache', 'position')
      position = self.variable('cache', 'position',
                               lambda: jnp.array(0, jnp.int32))
      if initialised:
        start = position.value
        position.value = start + length
    positions = start + jnp.arange(length)
    x = self.embed(tokens) * math.sqrt(cfg.embed_dim)
    x = x + sinusoidal_encoding(positions, cfg.embed_dim).astype(dtype)[None]
    x = Dropout(cfg.dropout_rate)(x, deterministic=not train)
    encoder_mask = None
    if self.decoder:
      # Each target position sees every real source token.
      encoder_mask = memory['mask'][:, None, None, :]
    for i in range(cfg.num_layers):
      x = TransformerBlock(
          num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim,
          dropout_rate=cfg.dropout_rate,
          attention_dropout_rate=cfg.attention_dropout_rate,
          pre_norm=cfg.pre_norm, cross_attention=self.decoder,
          activation=cfg.activation, num_layers=cfg.num_layers,
          use_bias=cfg.use_bias,
          # Glorot, as the paper's reference code: projections of the size
          # of its unit-variance token vectors (GPT-2's N(0, 0.02) suits
          # embeddings as small and leaves these blocks mute at first).
          kernel_init=nn.initializers.xavier_uniform(), dtype=dtype,
          name=f'block_{i}')(
              x, mask=mask, encoded=memory['encoded'] if self.decoder else None,
              encoder_mask=encoder_mask, deterministic=not train,
              decode=decode)
    if cfg.pre_norm:
      x = nn.LayerNorm(use_bias=cfg.use_bias, dtype=dtype,
                       name='final_norm')(x)
    return x


class TransformerSeq2Seq(nn.Module):
  """Encoder-decoder Transformer.

  Attributes:
    config: the hyperparameters.
  """

  config: TransformerSeq2SeqConfig

  def setup(self):
    cfg = self.config
    if cfg.share_embeddings not in SHARE_EMBEDDINGS:
      raise ValueError(f'share_embeddings is one of {SHARE_EMBEDDINGS}, not '
                       f'{cfg.share_embeddings!r}')
    if (cfg.share_embeddings == 'all'
        and cfg.source_vocab_size != cfg.target_vocab_size):
      raise ValueError("share_embeddings='all' needs one vocabulary for both "
                       'languages (a joint SentencePiece model)')
    # Scaled by sqrt(d) on the way in, so the tokens start at unit variance
    # and, tied, the output logits at about unit variance too.
    embed = lambda vocab, name: nn.Embed(  # noqa: E731
        vocab, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
        embedding_init=nn.initializers.normal(cfg.embed_dim ** -0.5),
        name=name)
    self.target_embed = embed(cfg.target_vocab_size, 'target_embed')
    self.source_embed = (self.target_embed if cfg.share_embeddings == 'all'
                         else embed(cfg.source_vocab_size, 'source_embed'))
    self.encoder = _Stack(cfg, self.source_embed, name='encoder')
    self.decoder = _Stack(cfg, self.target_embed, decoder=True,
                          name='decoder')
    if cfg.share_embeddings == 'none':
      self.output = nn.Dense(cfg.target_vocab_size,
                             dtype=jnp.dtype(cfg.dtype), name='output')

  def encode(self, inputs: Array, train: bool = False) -> Memory:
    """Source ids `[batch, src_length]` -> the memory the decoder reads:
    `encoded` `[batch, src_length, d]` and `mask` `[batch, src_length]`."""
    valid = inputs != 0
    encoded = self.encoder(inputs, mask=valid[:, None, None, :], train=train)
    return {'encoded': encoded, 'mask': valid}

  def decode(self, memory: Memory, tokens: Array, train: bool = False,
             decode: bool = False) -> Array:
    """Logits `[batch, length, target_vocab]` of each next target token.

    Args:
      memory: from `encode`.
      tokens: decoder inputs `[batch, length]` (BOS, then the target).
      train: enables dropout.
      decode: incremental decoding: continue from the state in the 'cache'
        collection (mutable). The call that creates the cache, with
        `[batch, max_length]` tokens, only sizes it and projects the
        memory's keys and values; its logits mean nothing.
    """
    cfg = self.config
    mask = None if decode else causal_mask(tokens.shape[1])
    x = self.decoder(tokens, mask=mask, memory=memory, train=train,
                     decode=decode)
    batch, length = tokens.shape
    flat = x.reshape(batch * length, -1)  # see lm_jax.nn.transformer.MLP
    if cfg.share_embeddings == 'none':
      logits = self.output(flat)
    else:
      logits = self.target_embed.attend(flat)
    return logits.reshape(batch, length, -1).astype(jnp.float32)

  def __call__(self, inputs: Array, decoder_inputs: Optional[Array] = None,
               train: bool = False) -> Array:
    """Teacher-forced logits.

    Args:
      inputs: source ids `[batch, src_length]`, 0 for padding.
      decoder_inputs: `[batch, length]` BOS and the target shifted right;
        None for BOS alone (enough to create the parameters).
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      float32 `[batch, length, target_vocab]`.
    """
    if decoder_inputs is None:
      decoder_inputs = jnp.full((inputs.shape[0], 1), self.config.bos_id,
                                jnp.int32)
    memory = self.encode(inputs, train=train)
    return self.decode(memory, decoder_inputs, train=train)


def cross_attention_weights(intermediates: Any) -> Array:
  """The decoder's cross-attention weights from a call's 'intermediates'.

  Returns:
    `[layers, batch, heads, target_length, src_length]`.
  """
  decoder = intermediates['decoder']
  layers = sorted((k for k in decoder if k.startswith('block_')),
                  key=lambda k: int(k.split('_')[1]))
  return jnp.stack([decoder[k]['cross_attention']['attention_weights'][0]
                    for k in layers])
