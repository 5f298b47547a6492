"""A recurrent sentence classifier: embeddings -> (bi-)LSTM -> one sentence
vector -> MLP -> class logits.

The sentence vector is chosen by `pooling`:
  'last': the final hidden state, the forward direction's after its last
    real word concatenated with the backward direction's after the first
    (what Dai & Le 2015's classifier reads);
  'max': the element-wise maximum of the top layer's outputs over the real
    words (InferSent, Conneau et al. 2017);
  'mean': their average;
  'concat': the three side by side (ULMFiT's concat pooling);
  'attention': their weighted sum under learned additive attention
    (`lm_jax.nn.rnn_attention.AttentivePooling`, as the flax `sst2`
    example pools).
Padding never enters any of them, so a sentence gets the same logits alone
or in a padded batch.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn.dropout import Dropout, drop_words
from lm_jax.nn.recurrent import StackedRNN, lengths_of
from lm_jax.nn.rnn_attention import AttentivePooling

Array = jax.Array

POOLINGS = ('last', 'max', 'mean', 'concat', 'attention')


def final_hidden(carry: Any) -> Array:
  """The hidden state `[batch, H]` of a cell's carry ((c, h) for an LSTM)."""
  return carry[1] if isinstance(carry, tuple) else carry


def pool(outputs: Array, lengths: Array, pooling: str) -> Array:
  """Max or mean of `[batch, length, D]` outputs over each row's first
  `lengths` positions -> `[batch, D]`; rows of length 0 give zeros."""
  live = (jnp.arange(outputs.shape[1])[None, :] < lengths[:, None])[..., None]
  if pooling == 'max':
    pooled = jnp.max(jnp.where(live, outputs, -jnp.inf), axis=1)
    return jnp.where(lengths[:, None] > 0, pooled, 0.0)
  if pooling == 'mean':
    total = jnp.sum(jnp.where(live, outputs, 0.0), axis=1)
    return total / jnp.maximum(lengths, 1)[:, None].astype(outputs.dtype)
  raise ValueError(f'unknown pooling {pooling!r}; known: {POOLINGS}')


def with_extra_features(module: nn.Module, embedded: Array,
                         extra: Optional[Array]) -> Array:
  """`embedded` `[batch, length, E]` with `extra` concatenated on the last
  axis, as `module.extra_features_dim` declares.

  The training loop initialises models from their word ids alone, so while
  initialising, zeros stand in for missing extra features; at any other
  time they must be given.
  """
  dim = module.extra_features_dim
  if not dim:
    if extra is not None:
      raise ValueError('extra_features given but extra_features_dim is 0')
    return embedded
  if extra is None:
    if not module.is_initializing():
      raise ValueError(f'the model expects extra_features of size {dim}')
    extra = jnp.zeros(embedded.shape[:2] + (dim,), embedded.dtype)
  if extra.shape[-1] != dim:
    raise ValueError(f'extra_features have size {extra.shape[-1]}, the '
                     f'model expects {dim}')
  return jnp.concatenate([embedded, extra.astype(embedded.dtype)], axis=-1)


class RecurrentClassifier(nn.Module):
  """Sentence -> class logits.

  Attributes:
    vocab_size: word ids, padding (0) included.
    num_classes: output classes.
    embed_dim: word embedding size.
    hidden_dim: LSTM units per direction.
    num_layers: stacked recurrent layers.
    bidirectional: add a backward direction to every layer.
    cell_type: 'lstm', 'gru' or 'rnn'.
    pooling: 'last', 'max', 'mean', 'concat' or 'attention' (module
      docstring).
    mlp_dim: hidden units of the MLP head; 0 for a linear head.
    dropout_rate: dropout on the embeddings, between recurrent layers, on
      the sentence vector and in the MLP.
    word_dropout_rate: word dropout (`lm_jax.nn.dropout.drop_words`) in
      training.
    pooling_dropout: dropout on the last layer's states before they are
      pooled, as well as on the sentence vector (the flax SST-2 example
      drops both around its attention); 'last' (and concat's last part)
      reads the final carries, which it leaves alone.
    unk_id: the unknown word's id, for word dropout.
    kept_ids: ids word dropout leaves alone (`drop_words`).
    forget_bias: the LSTM's forget-gate bias.
    second_bias: LSTMs with two gate biases (`LSTMCell.second_bias`), as
      a pre-trained LM may have them.
    sentence_norm: LayerNorm on the sentence vector before the head, so
      a freshly initialised head reads states of any scale (a random
      LSTM's are about 0.02 here, a pre-trained LM's about 0.2); ULMFiT's
      head normalises its input the same way, with batch norm.
    extra_features_dim: size of optional per-token features (ELMo vectors)
      concatenated to the word embeddings; 0 for none.
    fused_lstm: LSTMs through `lm_jax.nn.fused_lstm` on CPU (`RNN.fused`).
    dtype: computation dtype.
  """

  vocab_size: int
  num_classes: int
  embed_dim: int = 300
  hidden_dim: int = 256
  num_layers: int = 1
  bidirectional: bool = True
  cell_type: str = 'lstm'
  pooling: str = 'last'
  mlp_dim: int = 0
  dropout_rate: float = 0.5
  word_dropout_rate: float = 0.0
  pooling_dropout: bool = False
  unk_id: int = 1
  kept_ids: tuple[int, ...] = ()
  forget_bias: float = 1.0
  second_bias: bool = False
  sentence_norm: bool = False
  extra_features_dim: int = 0
  fused_lstm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: Array, lengths: Optional[Array] = None,
               extra_features: Optional[Array] = None,
               train: bool = False) -> Array:
    """Classifies each sentence.

    Args:
      inputs: int `[batch, length]` word ids, 0 = padding (at the end).
      lengths: int `[batch]`; None counts the non-padding ids.
      extra_features: `[batch, length, extra_features_dim]`, or None when
        `extra_features_dim` is 0 (zeros stand in while initialising).
      train: apply dropout and word dropout.

    Returns:
      Logits `[batch, num_classes]`, float32.
    """
    if self.pooling not in POOLINGS:
      raise ValueError(f'unknown pooling {self.pooling!r}; known: '
                       f'{POOLINGS}')
    if lengths is None:
      lengths = lengths_of(inputs)
    if train and self.word_dropout_rate > 0:
      inputs = drop_words(inputs, self.word_dropout_rate, self.unk_id,
                          self.make_rng('dropout'), self.kept_ids)
    # A small initial scale (the flax SST-2 example's) keeps the LSTM's
    # gates out of saturation at the start.
    x = nn.Embed(self.vocab_size, self.embed_dim,
                 embedding_init=nn.initializers.normal(0.1),
                 name='embed')(inputs).astype(self.dtype)
    x = with_extra_features(self, x, extra_features)
    x = Dropout(self.dropout_rate, deterministic=not train)(x)
    rnn = StackedRNN(self.cell_type, self.hidden_dim, self.num_layers,
                     self.bidirectional, self.dropout_rate, self.forget_bias,
                     second_bias=self.second_bias, fused=self.fused_lstm,
                     dtype=self.dtype, name='rnn')
    carries, layer_outputs = rnn(x, lengths, train=train)
    states = layer_outputs[-1]
    if self.pooling_dropout:
      states = Dropout(self.dropout_rate, deterministic=not train)(states)
    top = carries[-rnn.directions:]  # the last layer's directions
    last = jnp.concatenate([final_hidden(c) for c in top], axis=-1)
    if self.pooling == 'last':
      sentence = last
    elif self.pooling == 'concat':
      sentence = jnp.concatenate(
          [last] + [pool(states, lengths, p) for p in ('max', 'mean')],
          axis=-1)
    elif self.pooling == 'attention':
      live = jnp.arange(states.shape[1])[None, :] < lengths[:, None]
      sentence = AttentivePooling(states.shape[-1], dtype=self.dtype,
                                  name='attention_pooling')(states, live)
    else:
      sentence = pool(states, lengths, self.pooling)
    if self.sentence_norm:
      sentence = nn.LayerNorm(dtype=self.dtype, name='sentence_norm')(sentence)
    sentence = Dropout(self.dropout_rate, deterministic=not train)(sentence)
    if self.mlp_dim:
      sentence = jnp.tanh(nn.Dense(self.mlp_dim, dtype=self.dtype,
                                   name='mlp')(sentence))
      sentence = Dropout(self.dropout_rate,
                            deterministic=not train)(sentence)
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      name='output')(sentence)
    return logits.astype(jnp.float32)

