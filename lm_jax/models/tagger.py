"""A bi-LSTM sequence tagger (part-of-speech tagging): per-word features ->
bi-directional LSTM -> a softmax over tags at every word.

Each word is represented by its embedding and, optionally, by features
computed from its characters, which is what tags a word never seen in
training (its suffix, its capital letters, its digits):
  'cnn': a convolution over the characters, max-pooled over the word
    (Ma & Hovy 2016);
  'lstm': the final states of a bi-LSTM over the characters (Lample et al.
    2016, Plank et al. 2016).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.models.classifier import final_hidden, with_extra_features
from lm_jax.nn.dropout import Dropout, drop_words
from lm_jax.nn.recurrent import StackedRNN, lengths_of

Array = jax.Array

CHAR_ENCODERS = ('none', 'cnn', 'lstm')


class CharCNN(nn.Module):
  """Characters of each word -> one vector per word, by a convolution
  max-pooled over the word's real characters.

  Attributes:
    vocab_size: character ids, padding (0) included.
    embed_dim: character embedding size.
    features: filters, the output size.
    kernel_size: characters each filter sees.
    dtype: computation dtype.
  """

  vocab_size: int
  embed_dim: int = 32
  features: int = 64
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, chars: Array) -> Array:
    """`chars` int `[batch, length, word_chars]` (0 = padding) ->
    `[batch, length, features]`; words without characters give zeros."""
    live = (chars != 0)[..., None]
    x = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(chars)
    # Padding characters read as the zeros the convolution pads with, so a
    # word's features do not depend on how wide its array is.
    x = jnp.where(live, x, 0.0).astype(self.dtype)
    x = nn.Conv(self.features, (self.kernel_size,), padding='SAME',
                dtype=self.dtype, name='conv')(x)
    pooled = jnp.max(jnp.where(live, x, -jnp.inf), axis=-2)
    return jnp.where(live.any(axis=-2), jnp.tanh(pooled), 0.0)


class CharLSTM(nn.Module):
  """Characters of each word -> one vector per word: the forward LSTM's
  state after the last character and the backward one's after the first.

  Attributes:
    vocab_size: character ids, padding (0) included.
    embed_dim: character embedding size.
    features: LSTM units per direction; the output has 2 x features.
    forget_bias: the LSTMs' forget-gate bias.
    fused_lstm: LSTMs through `lm_jax.nn.fused_lstm` on CPU (`RNN.fused`).
    dtype: computation dtype.
  """

  vocab_size: int
  embed_dim: int = 32
  features: int = 32
  forget_bias: float = 1.0
  fused_lstm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, chars: Array) -> Array:
    """`chars` int `[batch, length, word_chars]` (0 = padding) ->
    `[batch, length, 2 x features]`; words without characters give zeros."""
    batch, length, width = chars.shape
    words = chars.reshape(batch * length, width)
    x = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(words)
    rnn = StackedRNN('lstm', self.features, bidirectional=True,
                     forget_bias=self.forget_bias, fused=self.fused_lstm,
                     dtype=self.dtype, name='rnn')
    carries, _ = rnn(x.astype(self.dtype), lengths_of(words))
    states = jnp.concatenate([final_hidden(c) for c in carries], axis=-1)
    return states.reshape(batch, length, -1)


class RecurrentTagger(nn.Module):
  """Words -> tag logits at every word.

  Attributes:
    vocab_size: word ids, padding (0) included.
    num_tags: output tags.
    embed_dim: word embedding size.
    hidden_dim: LSTM units per direction.
    num_layers: stacked bi-directional layers.
    cell_type: 'lstm', 'gru' or 'rnn'.
    dropout_rate: dropout on the word features, between recurrent layers
      and on the top layer's outputs.
    word_dropout_rate: word dropout in training (`dropout.drop_words`);
      the characters of a dropped word are kept.
    unk_id: the unknown word's id.
    char_encoder: 'none', 'cnn' or 'lstm' (module docstring).
    char_vocab_size: character ids, padding (0) included.
    char_embed_dim: character embedding size.
    char_features: the CNN's filters, or the char LSTM's units per
      direction.
    char_kernel_size: characters each CNN filter sees.
    forget_bias: the forget-gate bias of the word LSTM and of the
      character LSTM.
    extra_features_dim: size of optional per-token features (ELMo vectors)
      concatenated to the word features; 0 for none.
    fused_lstm: LSTMs through `lm_jax.nn.fused_lstm` on CPU (`RNN.fused`).
    dtype: computation dtype.
  """

  vocab_size: int
  num_tags: int
  embed_dim: int = 100
  hidden_dim: int = 128
  num_layers: int = 1
  cell_type: str = 'lstm'
  dropout_rate: float = 0.5
  word_dropout_rate: float = 0.0
  unk_id: int = 1
  char_encoder: str = 'none'
  char_vocab_size: int = 0
  char_embed_dim: int = 32
  char_features: int = 64
  char_kernel_size: int = 3
  forget_bias: float = 1.0
  extra_features_dim: int = 0
  fused_lstm: bool = True
  dtype: Any = jnp.float32

  def _char_features(self, chars: Optional[Array], inputs: Array) -> Array:
    if chars is None:
      if not self.is_initializing():
        raise ValueError(f'the {self.char_encoder!r} character encoder '
                         'needs chars')
      # The loop initialises from word ids alone; one dummy character per
      # word gives the encoder's parameters their shapes.
      chars = (inputs != 0).astype(jnp.int32)[..., None]
    if self.char_encoder == 'cnn':
      encoder = CharCNN(self.char_vocab_size, self.char_embed_dim,
                        self.char_features, self.char_kernel_size,
                        dtype=self.dtype, name='chars')
    else:
      encoder = CharLSTM(self.char_vocab_size, self.char_embed_dim,
                         self.char_features, forget_bias=self.forget_bias,
                         fused_lstm=self.fused_lstm, dtype=self.dtype,
                         name='chars')
    return encoder(chars)

  @nn.compact
  def __call__(self, inputs: Array, lengths: Optional[Array] = None,
               chars: Optional[Array] = None,
               extra_features: Optional[Array] = None,
               train: bool = False) -> Array:
    """Tags each word.

    Args:
      inputs: int `[batch, length]` word ids, 0 = padding (at the end).
      lengths: int `[batch]`; None counts the non-padding ids.
      chars: int `[batch, length, word_chars]` character ids of each word
        (0 = padding), needed by a character encoder.
      extra_features: `[batch, length, extra_features_dim]`, or None when
        `extra_features_dim` is 0 (zeros stand in while initialising).
      train: apply dropout and word dropout.

    Returns:
      Logits `[batch, length, num_tags]`, float32; rows past a sentence's
      length are not meaningful.
    """
    if self.char_encoder not in CHAR_ENCODERS:
      raise ValueError(f'unknown char_encoder {self.char_encoder!r}; known: '
                       f'{CHAR_ENCODERS}')
    if lengths is None:
      lengths = lengths_of(inputs)
    words = inputs
    if train and self.word_dropout_rate > 0:
      words = drop_words(inputs, self.word_dropout_rate, self.unk_id,
                         self.make_rng('dropout'))
    features = [nn.Embed(self.vocab_size, self.embed_dim,
                         embedding_init=nn.initializers.normal(0.1),
                         name='embed')(words).astype(self.dtype)]
    if self.char_encoder != 'none':
      features.append(self._char_features(chars, inputs).astype(self.dtype))
    x = with_extra_features(self, jnp.concatenate(features, axis=-1),
                            extra_features)
    x = Dropout(self.dropout_rate, deterministic=not train)(x)
    _, layer_outputs = StackedRNN(
        self.cell_type, self.hidden_dim, self.num_layers, bidirectional=True,
        dropout_rate=self.dropout_rate, forget_bias=self.forget_bias,
        fused=self.fused_lstm, dtype=self.dtype, name='rnn')(x, lengths,
                                                             train=train)
    y = Dropout(self.dropout_rate,
                   deterministic=not train)(layer_outputs[-1])
    logits = nn.Dense(self.num_tags, dtype=self.dtype, name='output')(y)
    return logits.astype(jnp.float32)
