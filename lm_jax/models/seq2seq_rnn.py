"""Recurrent encoder-decoders for translation, from the context-vector
bottleneck to attention.

The encoder is a bi-directional GRU or LSTM (`lm_jax.nn.recurrent`); its
last forward and first backward states, through a tanh layer, start the
decoder. The decoder differs by `attention`:

  'none': Cho et al. (2014): the start state is also a fixed context
    vector c, fed to every step, s_i = RNN(s_{i-1}, [y_{i-1}; c]), and read
    by the output layer with the state and the previous token: a maxout
    readout t_i = maxout(W [s_i; c; y_{i-1}]), then softmax(W_o t_i). The
    whole source must squeeze through c.
  'bahdanau': Bahdanau et al. (2015): before step i the previous state
    s_{i-1} scores every encoder output (additive attention); their
    weighted sum c_i replaces c: s_i = RNN(s_{i-1}, [y_{i-1}; c_i]), and
    the readout reads [s_i; c_i; y_{i-1}].
  'luong_dot' / 'luong_general' / 'luong_concat': Luong et al. (2015):
    after step t the new state h_t scores the encoder outputs; the
    attentional state h~_t = tanh(W_c [c_t; h_t]) gives the logits and is
    fed to the next step ("input feeding"): h_t = RNN(h_{t-1}, [y_{t-1};
    h~_{t-1}]).

Training is teacher-forced: the decoder reads the true previous target
token. Token id 0 is padding. Decoding keeps the recurrent state in the
'cache' collection, as every lm_jax sequence-to-sequence model does (see
`lm_jax.decode`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn.dropout import Dropout
from lm_jax.nn.recurrent import CELLS, StackedRNN
from lm_jax.nn.rnn_attention import AdditiveAttention, LuongAttention

Array = jax.Array
Memory = dict[str, Any]

ATTENTIONS = ('none', 'bahdanau', 'luong_dot', 'luong_general',
              'luong_concat')


@dataclasses.dataclass(frozen=True)
class Seq2SeqRNNConfig:
  """Hyperparameters of `Seq2SeqRNN`.

  Attributes:
    source_vocab_size: source ids.
    target_vocab_size: target ids.
    cell: 'gru' or 'lstm', for the encoder and the decoder.
    attention: one of `ATTENTIONS`.
    embed_dim: source and target embedding width.
    encoder_dim: hidden size of each encoder direction.
    decoder_dim: the decoder's hidden size.
    attention_dim: the tanh layer's width of 'bahdanau' and 'luong_concat'.
    readout_dim: the maxout readout's width ('none' and 'bahdanau'; the
      papers' 500); 0 reads the logits straight off [s_i; c_i; y_{i-1}],
      as bentrevett's notebooks do, at several times the cost.
    encoder_layers: stacked bi-directional encoder layers.
    dropout_rate: dropout on the embeddings and between encoder layers.
    forget_bias: the LSTMs' forget-gate bias (encoder and decoder).
    fused: the encoder's LSTMs through `lm_jax.nn.fused_lstm` where it
      applies; False keeps the scan over the cell.
    bos_id: the decoder's first input.
    dtype: computation dtype.
  """

  source_vocab_size: int
  target_vocab_size: int
  cell: str = 'gru'
  attention: str = 'bahdanau'
  embed_dim: int = 256
  encoder_dim: int = 512
  decoder_dim: int = 512
  attention_dim: int = 512
  readout_dim: int = 512
  encoder_layers: int = 1
  dropout_rate: float = 0.5
  forget_bias: float = 0.0
  fused: bool = True
  bos_id: int = 2
  dtype: str = 'float32'


def _hidden(carry: Any) -> Array:
  """The output state h of a GRU carry or an LSTM's (c, h)."""
  return carry[1] if isinstance(carry, tuple) else carry


class _DecoderStep(nn.Module):
  """One decoder step, and what the steps share (attention keys, the start
  state). `__call__` is what `nn.scan` repeats.

  Attributes:
    config: the model's hyperparameters.
  """

  config: Seq2SeqRNNConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    extra = {'forget_bias': cfg.forget_bias} if cfg.cell == 'lstm' else {}
    self.cell = CELLS[cfg.cell](features=cfg.decoder_dim, dtype=dtype,
                                **extra)
    # The step's input is [y; extra]: the cell projects y for all steps at
    # once, this projects the part only known step by step.
    self.extra = nn.Dense(self.cell.num_gates * cfg.decoder_dim,
                          use_bias=False, dtype=dtype)
    if cfg.attention == 'bahdanau':
      self.attention = AdditiveAttention(cfg.attention_dim, dtype=dtype)
    elif cfg.attention.startswith('luong_'):
      self.attention = LuongAttention(cfg.attention[len('luong_'):],
                                      query_dim=cfg.decoder_dim,
                                      features=cfg.attention_dim, dtype=dtype)
      self.combine = nn.Dense(cfg.decoder_dim, use_bias=False, dtype=dtype,
                              name='W_c')

  def project(self, embedded: Array) -> Array:
    """`[batch, length, embed]` -> the input projection of every step."""
    return self.cell.project(embedded)

  def keys(self, memory: Memory) -> Array:
    """What every step reads but only the memory determines: the attention
    keys, or the projected context vector without attention."""
    if self.config.attention == 'none':
      return self.extra(memory['context'])
    return self.attention.keys(memory['outputs'])

  def initial_carry(self, memory: Memory) -> Any:
    if self.config.attention.startswith('luong_'):
      # The previous attentional state h~, fed to the first step: none yet.
      feed = jnp.zeros(_hidden(memory['initial']).shape, jnp.float32)
      return memory['initial'], feed
    return memory['initial']

  def __call__(self, carry: Any, projected: Array, memory: Memory,
               keys: Array) -> tuple[Any, tuple[Array, Array]]:
    """One step from the projected previous token `[batch, gates * H]`.

    Returns:
      (carry, (features `[batch, F]` for the output layer, attention weights
      `[batch, src_length]`, or `[batch, 0]` without attention)).
    """
    kind = self.config.attention
    if kind == 'none':
      carry, h = self.cell.step(carry, projected + keys)
      return carry, (jnp.concatenate([h, memory['context']], -1),
                     jnp.zeros((h.shape[0], 0), h.dtype))
    if kind == 'bahdanau':
      context, weights = self.attention(_hidden(carry), keys,
                                        memory['outputs'], memory['mask'])
      carry, h = self.cell.step(carry, projected + self.extra(context))
      return carry, (jnp.concatenate([h, context], -1), weights)
    rnn_carry, feed = carry
    rnn_carry, h = self.cell.step(rnn_carry, projected + self.extra(feed))
    context, weights = self.attention(h, keys, memory['outputs'],
                                      memory['mask'])
    attentional = jnp.tanh(self.combine(jnp.concatenate([context, h], -1)))
    attentional = attentional.astype(jnp.float32)
    return (rnn_carry, attentional), (attentional, weights)


def _scan_body(step: _DecoderStep, carry, projected, shared):
  memory, keys = shared
  return step(carry, projected, memory, keys)


class _Decoder(nn.Module):
  """Target embedding, the scanned steps and the output layer.

  Attributes:
    config: the model's hyperparameters.
  """

  config: Seq2SeqRNNConfig

  @nn.compact
  def __call__(self, tokens: Array, memory: Memory, train: bool = False,
               decode: bool = False) -> Array:
    """See `Seq2SeqRNN.decode`."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    batch, length = tokens.shape
    embedded = nn.Embed(cfg.target_vocab_size, cfg.embed_dim, dtype=dtype,
                        name='embed')(tokens)
    embedded = Dropout(cfg.dropout_rate)(embedded, deterministic=not train)
    step = _DecoderStep(cfg, name='step')
    output = nn.Dense(cfg.target_vocab_size, dtype=dtype, name='output')
    projected = step.project(embedded)
    if decode:
      if not self.has_variable('cache', 'carry'):
        # Creating the cache: the start state and the keys, nothing to read.
        self.put_variable('cache', 'carry', step.initial_carry(memory))
        self.put_variable('cache', 'keys', step.keys(memory))
        return jnp.zeros((batch, length, cfg.target_vocab_size), jnp.float32)
      carry = self.get_variable('cache', 'carry')
      keys = self.get_variable('cache', 'keys')
    else:
      carry, keys = step.initial_carry(memory), step.keys(memory)
    scan = nn.scan(_scan_body, variable_broadcast='params',
                   split_rngs={'params': False}, in_axes=(1, nn.broadcast),
                   out_axes=1)
    carry, (features, weights) = scan(step, carry, projected, (memory, keys))
    if decode:
      self.put_variable('cache', 'carry', carry)
    if cfg.attention != 'none':
      self.sow('intermediates', 'attention_weights', weights)
    if not cfg.attention.startswith('luong_'):
      # Bahdanau's and Cho's output layers also read the previous token.
      features = jnp.concatenate([features, embedded.astype(features.dtype)],
                                 -1)
      if cfg.readout_dim:
        # Maxout (Goodfellow et al. 2013) over pairs of units, as both
        # papers' deep output; it also keeps the vocabulary-sized layer
        # narrow.
        pairs = nn.Dense(2 * cfg.readout_dim, dtype=dtype, name='readout')(
            features)
        features = pairs.reshape(*pairs.shape[:-1], cfg.readout_dim, 2).max(-1)
    # Flat [batch * length, F] rows: see lm_jax.nn.transformer.MLP.
    logits = output(features.reshape(batch * length, -1))
    return logits.reshape(batch, length, -1).astype(jnp.float32)


class Seq2SeqRNN(nn.Module):
  """Bi-directional recurrent encoder, recurrent decoder, optional attention.

  Attributes:
    config: the hyperparameters.
  """

  config: Seq2SeqRNNConfig

  def setup(self):
    cfg = self.config
    if cfg.attention not in ATTENTIONS:
      raise ValueError(f'unknown attention {cfg.attention!r}; known: '
                       f'{ATTENTIONS}')
    if cfg.cell not in ('gru', 'lstm'):
      raise ValueError(f"the seq2seq cell is 'gru' or 'lstm', not "
                       f'{cfg.cell!r}')
    dtype = jnp.dtype(cfg.dtype)
    self.source_embed = nn.Embed(cfg.source_vocab_size, cfg.embed_dim,
                                 dtype=dtype)
    self.embed_dropout = Dropout(cfg.dropout_rate)
    self.encoder = StackedRNN(cfg.cell, cfg.encoder_dim,
                              num_layers=cfg.encoder_layers,
                              bidirectional=True,
                              dropout_rate=cfg.dropout_rate,
                              forget_bias=cfg.forget_bias, fused=cfg.fused,
                              dtype=dtype)
    self.bridge = nn.Dense(cfg.decoder_dim, dtype=dtype)
    if cfg.cell == 'lstm':
      self.bridge_cell = nn.Dense(cfg.decoder_dim, dtype=dtype)
    self.decoder = _Decoder(cfg)

  def encode(self, inputs: Array, train: bool = False) -> Memory:
    """Source ids `[batch, src_length]` -> the memory the decoder reads:
    `outputs` `[batch, src_length, 2 * encoder_dim]`, `mask`, the decoder's
    start state `initial` and the context vector `context` (its h)."""
    mask = inputs != 0
    x = self.embed_dropout(self.source_embed(inputs), deterministic=not train)
    carries, outputs = self.encoder(x, lengths=mask.sum(-1), train=train)
    # The last layer's forward state ends at the last real token, its
    # backward state at the first: together they have read everything.
    forward, backward = carries[-2], carries[-1]
    hidden = jnp.tanh(self.bridge(
        jnp.concatenate([_hidden(forward), _hidden(backward)], -1)))
    hidden = hidden.astype(jnp.float32)
    initial = hidden
    if self.config.cell == 'lstm':
      cell = jnp.tanh(self.bridge_cell(
          jnp.concatenate([forward[0], backward[0]], -1))).astype(jnp.float32)
      initial = (cell, hidden)
    return {'outputs': outputs[-1], 'mask': mask, 'initial': initial,
            'context': hidden}

  def decode(self, memory: Memory, tokens: Array, train: bool = False,
             decode: bool = False) -> Array:
    """Logits `[batch, length, target_vocab]` of each next target token.

    Args:
      memory: from `encode`.
      tokens: decoder inputs `[batch, length]` (BOS, then the target).
      train: enables dropout.
      decode: incremental decoding: continue from the recurrent state in
        the 'cache' collection (mutable). The call that creates the cache
        stores the start state and the attention keys; its logits are
        zeros.
    """
    return self.decoder(tokens, memory, train=train, decode=decode)

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
