"""BERT: a bidirectional Transformer encoder (Devlin et al. 2019).

token + learned position + token-type (segment) embeddings -> LayerNorm ->
N Transformer blocks (post-LN as in the paper, pre-LN as an option) with
exact GELU, attending to every real token of the sequence (padding is
masked out of the keys). On top, as the task needs:

  `BertPretraining`: the masked-LM head (dense -> GELU -> LayerNorm -> the
    transposed token embedding, plus a bias) and the pooler ([CLS] -> dense
    -> tanh), BERT's pre-training model;
  `BertClassifier`: the pooled [CLS] vector (or the mean of the real tokens'
    states) -> dropout -> linear, BERT's fine-tuning for classification.

Parameter names group as `encoder/` (shared by every head; `layer_i` are the
blocks, so per-layer learning rates find them), `pooler/`, `mlm_head/` and
`classifier/`. `lm_jax.import_hf` maps Hugging Face's `BertModel` weights
onto them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn import precision
from lm_jax.nn.dropout import Dropout
from lm_jax.nn.positional import LearnedPositions
from lm_jax.nn.transformer import ACTIVATIONS, TransformerBlock

Array = jax.Array

POOLINGS = ('cls', 'mean')


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyperparameters of the encoder (the subset of the run config it needs).

  Attributes:
    vocab_size: token embedding rows.
    num_layers: Transformer blocks.
    num_heads: attention heads.
    embed_dim: hidden size.
    mlp_dim: the blocks' MLP inner width (4 x embed_dim in BERT).
    max_positions: rows of the position table (512 in BERT).
    type_vocab_size: token types (segments A and B).
    dropout_rate: on the embeddings and every sub-layer's output.
    attention_dropout_rate: on attention weights.
    pre_norm: pre-LN blocks and a final LayerNorm, instead of post-LN.
    activation: MLP activation, a key of `lm_jax.nn.transformer.ACTIVATIONS`.
    layer_norm_epsilon: 1e-12 in BERT.
    pad_id: the id whose positions are padding when no mask is given.
    dtype: computation dtype (parameters stay float32).
    matmul_dtype: '' (the computation dtype) or 'bfloat16': the blocks' and
      the MLM head's matmuls with bfloat16 operands and float32 results
      (`lm_jax.nn.precision`).
  """

  vocab_size: int
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 256
  mlp_dim: int = 1024
  max_positions: int = 512
  type_vocab_size: int = 2
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  pre_norm: bool = False
  activation: str = 'gelu'
  layer_norm_epsilon: float = 1e-12
  pad_id: int = 0
  dtype: str = 'float32'
  matmul_dtype: str = ''


def bert_config(config, vocab_size: int, pad_id: int = 0) -> BertConfig:
  """The `BertConfig` of a run config (model 'bert'); BERT's own keys
  (defined by the bert_* presets) and those added since BERT's first runs
  (matmul_dtype) default to the values those runs had."""
  # `config` may be an older workdir's config.json as written (encode,
  # init_from, an import), without the keys added since.
  get = lambda key: config.get(key, getattr(BertConfig, key))  # noqa: E731
  return BertConfig(
      vocab_size=vocab_size, num_layers=config.num_layers,
      num_heads=config.num_heads, embed_dim=config.embed_dim,
      mlp_dim=config.get('mlp_hidden_dim') or (
          config.mlp_ratio * config.embed_dim),
      max_positions=get('max_positions'),
      type_vocab_size=get('type_vocab_size'),
      dropout_rate=config.dropout_rate,
      attention_dropout_rate=get('attention_dropout_rate'),
      pre_norm=config.pre_norm, activation=config.activation,
      layer_norm_epsilon=get('layer_norm_epsilon'), pad_id=pad_id,
      dtype=config.compute_dtype, matmul_dtype=get('matmul_dtype'))


def _init():
  return nn.initializers.normal(0.02)


class BertEncoder(nn.Module):
  """Embeddings and blocks: ids -> last hidden states.

  Attributes:
    config: the hyperparameters.
  """

  config: BertConfig

  def setup(self):
    cfg = self.config
    if cfg.activation not in ACTIVATIONS:
      raise ValueError(f'unknown activation {cfg.activation!r}; known: '
                       f'{sorted(ACTIVATIONS)}')
    dtype = jnp.dtype(cfg.dtype)
    self.token_embedding = nn.Embed(cfg.vocab_size, cfg.embed_dim,
                                    embedding_init=_init(), dtype=dtype)
    self.position_embedding = LearnedPositions(cfg.max_positions,
                                               cfg.embed_dim, dtype=dtype)
    self.token_type_embedding = nn.Embed(cfg.type_vocab_size, cfg.embed_dim,
                                         embedding_init=_init(), dtype=dtype)
    self.embedding_norm = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon,
                                       dtype=dtype)
    self.dropout = Dropout(cfg.dropout_rate)
    # A list attribute names its blocks layer_0, layer_1, ...
    self.layer = [
        TransformerBlock(
            num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim,
            dropout_rate=cfg.dropout_rate,
            attention_dropout_rate=cfg.attention_dropout_rate,
            pre_norm=cfg.pre_norm, activation=cfg.activation, use_bias=True,
            num_layers=cfg.num_layers,
            layer_norm_epsilon=cfg.layer_norm_epsilon, kernel_init=_init(),
            dtype=dtype, dot_general=precision.dot_general_for(
                cfg.matmul_dtype))
        for _ in range(cfg.num_layers)]
    if cfg.pre_norm:
      # Pre-LN leaves the residual stream unnormalised after the last block.
      self.final_norm = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon,
                                     dtype=dtype)

  def __call__(self, tokens: Array, token_types: Optional[Array] = None,
               valid: Optional[Array] = None, train: bool = False) -> Array:
    """Encodes a batch.

    Args:
      tokens: int `[batch, length]` ids.
      token_types: int `[batch, length]` segment ids (default all 0).
      valid: bool `[batch, length]`, True for real tokens (default: the ids
        that are not `pad_id`). Padding is masked out of every attention's
        keys, so real tokens' states do not depend on it.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      `[batch, length, embed_dim]` last hidden states.
    """
    cfg = self.config
    batch, length = tokens.shape
    if length > cfg.max_positions:
      raise ValueError(f'{length} tokens exceed the model\'s '
                       f'{cfg.max_positions} positions')
    if token_types is None:
      token_types = jnp.zeros_like(tokens)
    if valid is None:
      valid = tokens != cfg.pad_id
    positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    x = (self.token_embedding(tokens) + self.position_embedding(positions)
         + self.token_type_embedding(token_types))
    x = self.dropout(self.embedding_norm(x), deterministic=not train)
    mask = valid[:, None, None, :]  # [batch, 1 head, 1 query, keys]
    for block in self.layer:
      x = block(x, mask=mask, deterministic=not train)
    if cfg.pre_norm:
      x = self.final_norm(x)
    return x

  def attend(self, x: Array) -> Array:
    """`[..., embed_dim]` -> `[..., vocab_size]` through the transposed
    token embedding (the tied output layer)."""
    return precision.attend(self.token_embedding, x, self.config.matmul_dtype)


class MaskedLMHead(nn.Module):
  """BERT's MLM transform: dense -> activation -> LayerNorm; the decoder is
  the tied token embedding, applied by the caller, plus `bias`.

  Attributes:
    config: the hyperparameters.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    """`[..., embed_dim]` -> (transformed `[..., embed_dim]`, the output
    bias `[vocab_size]`)."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    x = nn.Dense(cfg.embed_dim, kernel_init=_init(), dtype=dtype,
                 dot_general=precision.dot_general_for(cfg.matmul_dtype),
                 name='dense')(x)
    x = ACTIVATIONS[cfg.activation](x)
    x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype,
                     name='norm')(x)
    bias = self.param('bias', nn.initializers.zeros, (cfg.vocab_size,))
    return x, bias


def pool_mean(hidden: Array, valid: Array) -> Array:
  """Mean of `[batch, length, dim]` states over each row's real tokens
  (bool `[batch, length]` `valid`) -> `[batch, dim]`; an empty row gives
  zeros."""
  weights = valid.astype(hidden.dtype)[..., None]
  total = jnp.sum(hidden * weights, axis=1)
  return total / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


def sentence_embeddings(hidden: Array, valid: Array) -> Array:
  """Sentence-transformers' embedding: the mean over the real tokens
  ([CLS] and [SEP] included), L2-normalised. `[batch, dim]` float32."""
  pooled = pool_mean(hidden.astype(jnp.float32), valid)
  norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
  return pooled / jnp.maximum(norm, 1e-12)


class BertPretraining(nn.Module):
  """Encoder, pooler and masked-LM head.

  Attributes:
    config: the hyperparameters.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, tokens: Array, token_types: Optional[Array] = None,
               valid: Optional[Array] = None,
               mlm_positions: Optional[Array] = None,
               train: bool = False) -> tuple[Array, Array]:
    """Masked-LM logits and the pooled [CLS] vector.

    Args:
      tokens, token_types, valid, train: as `BertEncoder`.
      mlm_positions: int `[batch, predictions]`: the positions to predict
        (the head then runs on those alone, as BERT's pre-training does);
        None: every position.

    Returns:
      float32 logits `[batch, predictions or length, vocab_size]` and the
      pooled `[batch, embed_dim]`.
    """
    encoder = BertEncoder(self.config, name='encoder')
    hidden = encoder(tokens, token_types, valid, train)
    pooled = jnp.tanh(nn.Dense(self.config.embed_dim, kernel_init=_init(),
                               dtype=jnp.dtype(self.config.dtype),
                               name='pooler')(hidden[:, 0]))
    if mlm_positions is not None:
      hidden = jnp.take_along_axis(hidden, mlm_positions[..., None], axis=1)
    x, bias = MaskedLMHead(self.config, name='mlm_head')(hidden)
    logits = encoder.attend(x).astype(jnp.float32) + bias
    return logits, pooled


class BertClassifier(nn.Module):
  """Encoder -> one sentence vector -> dropout -> linear class logits.

  Attributes:
    config: the hyperparameters.
    num_classes: output classes.
    pooling: 'cls' (the pooler: dense + tanh of the [CLS] state, BERT's) or
      'mean' (the mean of the real tokens' states, sentence-transformers').
  """

  config: BertConfig
  num_classes: int
  pooling: str = 'cls'

  @nn.compact
  def __call__(self, tokens: Array, token_types: Optional[Array] = None,
               valid: Optional[Array] = None, train: bool = False) -> Array:
    """float32 logits `[batch, num_classes]`; arguments as `BertEncoder`."""
    cfg = self.config
    if self.pooling not in POOLINGS:
      raise ValueError(f'unknown pooling {self.pooling!r} for BERT; known: '
                       f'{POOLINGS}')
    if valid is None:
      valid = tokens != cfg.pad_id
    hidden = BertEncoder(cfg, name='encoder')(tokens, token_types, valid,
                                              train)
    dtype = jnp.dtype(cfg.dtype)
    if self.pooling == 'cls':
      sentence = jnp.tanh(nn.Dense(cfg.embed_dim, kernel_init=_init(),
                                   dtype=dtype, name='pooler')(hidden[:, 0]))
    else:
      sentence = pool_mean(hidden, valid)
    sentence = Dropout(cfg.dropout_rate)(sentence, deterministic=not train)
    logits = nn.Dense(self.num_classes, kernel_init=_init(), dtype=dtype,
                      name='classifier')(sentence)
    return logits.astype(jnp.float32)
