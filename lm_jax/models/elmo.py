"""ELMo (Peters et al. 2018): a bi-directional LSTM language model whose
layers, mixed by weights the downstream task learns, become word features.

`BiLM` reads a sentence framed as `<s> w_1 ... w_n </s>` once: a forward
LSTM stack predicts each next token, a backward stack (reading each sentence
from its end, within its true length) each previous one. The two share the
token embedding and the softmax, as in ELMo.

`ElmoEmbedder` runs a (frozen, pre-trained) `BiLM` over a downstream
sentence and returns, for each word, the scalar mix of its layers

  ELMo_k = γ Σ_j softmax(s)_j h_{k,j},

with h_{k,0} = [x_k; x_k] the token embedding (duplicated to the width of
the others) and h_{k,j} = [→h_{k,j}; ←h_{k,j}] layer j of both directions.
s and γ are the downstream model's parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn.dropout import Dropout, drop_words
from lm_jax.nn.recurrent import RNN, LSTMCell, lengths_of, uniform_init

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BiLMConfig:
  """Hyperparameters of `BiLM`.

  Attributes:
    vocab_size: words, `<s>` and `</s>` included.
    hidden_size: LSTM units per layer and direction; also the embedding
      size, so every layer of the mix has width 2 * hidden_size.
    num_layers: LSTM layers per direction.
    dropout_rate: on the embeddings, between layers and before the softmax.
    init_scale: U(-s, s) weights; 0 uses the layers' defaults.
    fused_lstm: LSTMs through `lm_jax.nn.fused_lstm` on CPU (`RNN.fused`).
  """

  vocab_size: int
  hidden_size: int = 256
  num_layers: int = 2
  dropout_rate: float = 0.1
  init_scale: float = 0.05
  fused_lstm: bool = True


class BiLM(nn.Module):
  """Forward and backward LSTM LMs with a shared embedding and softmax.

  Attributes:
    config: the hyperparameters.
  """

  config: BiLMConfig

  def setup(self):
    cfg = self.config
    inits = ({'kernel_init': uniform_init(cfg.init_scale),
              'recurrent_init': uniform_init(cfg.init_scale)}
             if cfg.init_scale > 0 else {})
    self.embed = nn.Embed(
        cfg.vocab_size, cfg.hidden_size,
        embedding_init=inits.get('kernel_init', nn.initializers.normal(1.0)))
    self.forward_layers = [
        RNN(LSTMCell(cfg.hidden_size, forget_bias=1.0, **inits),
            fused=cfg.fused_lstm, name=f'layer{i}_fwd')
        for i in range(cfg.num_layers)]
    self.backward_layers = [
        RNN(LSTMCell(cfg.hidden_size, forget_bias=1.0, **inits), reverse=True,
            fused=cfg.fused_lstm, name=f'layer{i}_bwd')
        for i in range(cfg.num_layers)]
    self.dropout = Dropout(cfg.dropout_rate)

  def layers(self, tokens: Array, lengths: Array, train: bool = False
             ) -> list[Array]:
    """Every layer's representation of every position.

    Args:
      tokens: int `[batch, length]`, each row `<s> w_1 ... w_n </s>` then
        padding.
      lengths: int `[batch]`, n + 2.
      train: apply dropout.

    Returns:
      num_layers + 1 arrays `[batch, length, 2 * hidden_size]`: the token
      embedding twice, then each layer's [forward; backward] outputs.
    """
    x = self.embed(tokens)
    out = [jnp.concatenate([x, x], -1)]
    # Each direction its own mask, as bilm-tf draws them.
    fwd = self.dropout(x, deterministic=not train)
    bwd = self.dropout(x, deterministic=not train)
    for i, (f, b) in enumerate(zip(self.forward_layers,
                                   self.backward_layers)):
      fwd = f(fwd, lengths)[1]
      bwd = b(bwd, lengths)[1]
      out.append(jnp.concatenate([fwd, bwd], -1))
      if i < len(self.forward_layers) - 1:
        fwd = self.dropout(fwd, deterministic=not train)
        bwd = self.dropout(bwd, deterministic=not train)
    return out

  def __call__(self, tokens: Array, lengths: Optional[Array] = None,
               train: bool = False) -> tuple[Array, Array]:
    """Logits of both LMs (`lengths` None: the non-padding tokens).

    Returns:
      (forward logits: position t predicts token t + 1,
       backward logits: position t predicts token t - 1), each
      `[batch, length, vocab_size]` float32.
    """
    if lengths is None:
      lengths = lengths_of(tokens)
    h = self.layers(tokens, lengths, train)[-1]
    h = self.dropout(h, deterministic=not train)
    size = self.config.hidden_size
    fwd, bwd = h[..., :size], h[..., size:]
    return (self.embed.attend(fwd).astype(jnp.float32),
            self.embed.attend(bwd).astype(jnp.float32))


def frame(tokens: Array, lengths: Array, bos_id: int, eos_id: int) -> Array:
  """Words -> `<s> w_1 ... w_n </s>` rows, `[batch, length + 2]`.

  Args:
    tokens: int `[batch, length]`, words then padding (0).
    lengths: int `[batch]` word counts.
  """
  t = jnp.arange(tokens.shape[1] + 2)[None, :]
  shifted = jnp.pad(tokens, ((0, 0), (1, 1)))
  return jnp.where(t == 0, bos_id,
                   jnp.where(t == lengths[:, None] + 1, eos_id, shifted))


def bilm_targets(tokens: Array, lengths: Array
                 ) -> tuple[Array, Array, Array, Array]:
  """What each position of each direction predicts, and where it counts.

  Returns:
    (forward targets, forward weights, backward targets, backward
    weights), each `[batch, length]`: forward position t < lengths - 1
    predicts token t + 1; backward position t in [1, lengths) predicts
    token t - 1.
  """
  t = jnp.arange(tokens.shape[1])[None, :]
  fwd_targets = jnp.pad(tokens[:, 1:], ((0, 0), (0, 1)))
  bwd_targets = jnp.pad(tokens[:, :-1], ((0, 0), (1, 0)))
  fwd_weights = (t < lengths[:, None] - 1).astype(jnp.float32)
  bwd_weights = ((t >= 1) & (t < lengths[:, None])).astype(jnp.float32)
  return fwd_targets, fwd_weights, bwd_targets, bwd_weights


class ScalarMix(nn.Module):
  """γ Σ_j softmax(s)_j h_j over layers of equal shape (ELMo's eq. 1)."""

  @nn.compact
  def __call__(self, layers: list[Array]) -> Array:
    weights = self.param('weights', nn.initializers.zeros_init(),
                         (len(layers),))
    gamma = self.param('gamma', nn.initializers.ones_init(), ())
    w = jax.nn.softmax(weights)
    return gamma * sum(w[j] * h for j, h in enumerate(layers))


class ElmoEmbedder(nn.Module):
  """ELMo features of downstream sentences from a pre-trained `BiLM`.

  The BiLM's parameters sit under 'bilm' and are loaded from its training
  run and frozen by the downstream task; only the mix ('mix') trains.

  Attributes:
    config: the BiLM's hyperparameters.
    bos_id: the BiLM's `<s>` id.
    eos_id: the BiLM's `</s>` id.
  """

  config: BiLMConfig
  bos_id: int
  eos_id: int

  @nn.compact
  def __call__(self, tokens: Array, lengths: Array,
               train: bool = False) -> Array:
    """ELMo vectors of the words.

    Args:
      tokens: int `[batch, length]` BiLM ids of the words, then padding.
      lengths: int `[batch]` word counts.
      train: dropout inside the BiLM is never used; `train` is accepted
        for a uniform interface.

    Returns:
      `[batch, length, 2 * hidden_size]`, zero at padding.
    """
    del train
    framed = frame(tokens, lengths, self.bos_id, self.eos_id)
    layers = BiLM(self.config, name='bilm').layers(framed, lengths + 2)
    # The framing symbols are not words: keep positions 1..n.
    mixed = ScalarMix(name='mix')([jax.lax.stop_gradient(h[:, 1:-1])
                                   for h in layers])
    real = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return jnp.where(real[..., None], mixed, 0.0)


class WithElmo(nn.Module):
  """A downstream model (classifier, tagger) given the ELMo vectors of its
  words as extra per-word features: `model(inputs, lengths,
  extra_features=elmo(inputs, lengths), ...)`.

  The words' ids are the BiLM's (the downstream task uses the BiLM's
  vocabulary), so one id array feeds both. Word dropout happens here,
  before that array is shared: a dropped word stands for one the
  vocabulary lacks, which the BiLM lacks as well, so it is `<unk>` to the
  ELMo features too, not only to the model's own embedding (give the
  model no word dropout of its own). Parameters: 'elmo' (its 'bilm',
  loaded and frozen, and its 'mix') and 'model'.

  Attributes:
    model: a module whose `__call__(inputs, lengths, extra_features=...,
      train=..., **kwargs)` accepts `extra_features` of width
      2 * elmo.config.hidden_size.
    elmo: the embedder.
    word_dropout_rate: word dropout in training (`drop_words`).
    unk_id: the unknown word's id.
    kept_ids: ids word dropout leaves alone (sentence markers).
  """

  model: nn.Module
  elmo: ElmoEmbedder
  word_dropout_rate: float = 0.0
  unk_id: int = 1
  kept_ids: tuple[int, ...] = ()

  def __call__(self, inputs: Array, lengths: Optional[Array] = None,
               train: bool = False, **kwargs: Any) -> Array:
    """The model's output; `lengths` None counts the non-padding ids."""
    if lengths is None:
      lengths = lengths_of(inputs)
    if train and self.word_dropout_rate > 0:
      inputs = drop_words(inputs, self.word_dropout_rate, self.unk_id,
                          self.make_rng('dropout'), self.kept_ids)
    features = self.elmo(inputs, lengths)
    return self.model(inputs, lengths, extra_features=features, train=train,
                      **kwargs)


def with_elmo(model: nn.Module, elmo: ElmoEmbedder) -> WithElmo:
  """`model` given ELMo features, its word dropout moved into `WithElmo`
  (so that ELMo's input drops the same words) and off in `model` itself.

  `model` has `word_dropout_rate` and `unk_id` fields, and may have
  `kept_ids`.
  """
  return WithElmo(model.clone(word_dropout_rate=0.0), elmo,
                  model.word_dropout_rate, model.unk_id,
                  getattr(model, 'kept_ids', ()))
