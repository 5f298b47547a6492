"""Recurrent language models: embedding -> stacked RNN/GRU/LSTM -> softmax.

The model of Zaremba et al. 2014 ("Recurrent neural network
regularization") and of Mikolov et al.'s RNN LMs before it: the hidden
state summarises the whole history, so there is no context window.

The recurrent state lives in the 'cache' collection whenever the caller
passes `decode=True` and makes 'cache' mutable: each call continues from
the stored state and leaves its final state there. The same mechanism
serves truncated back-propagation through time (a batch continues where the
previous batch of the same streams stopped) and token-by-token sampling
through `lm_jax.decode`, exactly as a Transformer's KV cache does.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn import precision
from lm_jax.nn.dropout import Dropout
from lm_jax.nn.folded_dense import FoldedDense
from lm_jax.nn.recurrent import StackedRNN, uniform_init

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class RNNLMConfig:
  """Hyperparameters of `RNNLM`.

  Attributes:
    vocab_size: output classes and embedding rows.
    cell: 'rnn' (Elman), 'gru' or 'lstm'.
    embed_dim: token embedding size.
    hidden_size: units per recurrent layer.
    num_layers: stacked layers.
    dropout_rate: dropout on the embeddings, between layers and before the
      softmax (never on the recurrent connections, as Zaremba et al.).
    init_scale: > 0 initialises every weight U(-s, s) and biases 0
      (Zaremba et al.: 0.1 small, 0.05 medium); 0 uses the layers' defaults.
    forget_bias: the LSTM's forget-gate bias.
    lstm_second_bias: LSTM layers with two gate biases, as Torch's and
      PyTorch's (`LSTMCell.second_bias`).
    tie_embeddings: the softmax reuses the embedding matrix (Press & Wolf
      2017); needs embed_dim == hidden_size.
    unroll: time steps per scan iteration.
    fused_lstm: LSTMs through `lm_jax.nn.fused_lstm` on CPU (`RNN.fused`).
    dtype: computation dtype; parameters stay float32.
    matmul_dtype: '' or 'bfloat16': the softmax layer's and the recurrent
      layers' input projections' matmuls with bfloat16 operands and float32
      results (`lm_jax.nn.precision`).
    folded_output: an untied float32 softmax layer through
      `lm_jax.nn.folded_dense` (the same parameters and sums, faster on
      XLA's CPU backend; the sums rounded in another order).
  """

  vocab_size: int
  cell: str = 'lstm'
  embed_dim: int = 200
  hidden_size: int = 200
  num_layers: int = 2
  dropout_rate: float = 0.0
  init_scale: float = 0.1
  forget_bias: float = 0.0
  lstm_second_bias: bool = False
  tie_embeddings: bool = False
  unroll: int = 1
  fused_lstm: bool = True
  dtype: str = 'float32'
  matmul_dtype: str = ''
  folded_output: bool = False


class RNNLM(nn.Module):
  """A stacked recurrent LM.

  Attributes:
    config: the hyperparameters.
  """

  config: RNNLMConfig

  # Markers read by the task and the sampler: batches of one stream follow
  # each other (truncated BPTT), and context is not limited to a window.
  recurrent = True
  unbounded_context = True

  def _inits(self) -> dict:
    scale = self.config.init_scale
    if scale <= 0:
      return {}
    return {'kernel_init': uniform_init(scale),
            'recurrent_init': uniform_init(scale)}

  @nn.compact
  def __call__(self, tokens: Array, train: bool = False,
               decode: bool = False) -> Array:
    """Next-token logits for every position.

    Args:
      tokens: int `[batch, length]`.
      train: enables dropout (needs a 'dropout' rng).
      decode: start from the state in the 'cache' collection (zeros when
        absent) and store the final state there; 'cache' must be mutable.

    Returns:
      float32 logits `[batch, length, vocab_size]`.
    """
    cfg = self.config
    if cfg.tie_embeddings and cfg.embed_dim != cfg.hidden_size:
      raise ValueError('tie_embeddings needs embed_dim == hidden_size, got '
                       f'{cfg.embed_dim} and {cfg.hidden_size}')
    dtype = jnp.dtype(cfg.dtype)
    batch, length = tokens.shape
    inits = self._inits()
    embed = nn.Embed(
        cfg.vocab_size, cfg.embed_dim, dtype=dtype,
        embedding_init=inits.get('kernel_init', nn.initializers.normal(1.0)),
        name='token_embedding')
    dot_general = precision.dot_general_for(cfg.matmul_dtype)
    stack = StackedRNN(cfg.cell, cfg.hidden_size, num_layers=cfg.num_layers,
                       dropout_rate=cfg.dropout_rate,
                       forget_bias=cfg.forget_bias,
                       second_bias=cfg.lstm_second_bias, unroll=cfg.unroll,
                       fused=cfg.fused_lstm,
                       dtype=dtype, dot_general=dot_general, name='rnn',
                       **inits)

    x = Dropout(cfg.dropout_rate)(embed(tokens), deterministic=not train)
    state = None
    if decode:
      state = self.variable('cache', 'carry', stack.initial_carry, batch)
    carries, outputs = stack(x, initial_carry=state.value if state else None,
                             train=train)
    if state is not None:
      state.value = carries
    h = Dropout(cfg.dropout_rate)(outputs[-1], deterministic=not train)
    # Flat [batch * length, hidden] rows: one large matmul for the softmax.
    h = h.reshape(batch * length, -1)
    if cfg.tie_embeddings:
      logits = precision.attend(embed, h, cfg.matmul_dtype)
      logits += self.param('output_bias', nn.initializers.zeros_init(),
                           (cfg.vocab_size,))
    else:
      kernel_init = {'kernel_init': inits['kernel_init']} if inits else {}
      if cfg.folded_output and dot_general is None and dtype == jnp.float32:
        output = FoldedDense(cfg.vocab_size, name='output', **kernel_init)
      else:
        output = nn.Dense(cfg.vocab_size, dtype=dtype, name='output',
                          dot_general=dot_general, **kernel_init)
      logits = output(h)
    return logits.reshape(batch, length, -1).astype(jnp.float32)
