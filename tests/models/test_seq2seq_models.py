"""Tests of the sequence to sequence models (RNN encoder-decoders and the
encoder-decoder Transformer): step-by-step decoding from the 'cache'
equals the teacher-forced pass, source padding is invisible, and bad
settings are rejected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from lm_jax.models.transformer_seq2seq import (TransformerSeq2Seq,
                                               TransformerSeq2SeqConfig,
                                               cross_attention_weights)

VOCAB = 17
SOURCE = np.array([[5, 6, 7, 8, 3, 0], [9, 10, 3, 0, 0, 0]], np.int32)
TARGET = np.array([[2, 11, 12, 13, 14, 15, 16], [2, 7, 8, 0, 0, 0, 0]],
                  np.int32)


def _rnn(cell, attention, **kw):
  return Seq2SeqRNN(Seq2SeqRNNConfig(
      VOCAB, VOCAB + 2, cell=cell, attention=attention, embed_dim=8,
      encoder_dim=8 if attention != 'luong_dot' else 12, decoder_dim=24,
      attention_dim=10, readout_dim=6, dropout_rate=0.3, **kw))


def _transformer(**kw):
  fields = dict(num_layers=2, num_heads=2, embed_dim=16, mlp_dim=32,
                dropout_rate=0.1)
  fields.update(kw)
  return TransformerSeq2Seq(TransformerSeq2SeqConfig(VOCAB, VOCAB, **fields))


MODELS = {
    'gru_plain': lambda: _rnn('gru', 'none'),
    'gru_bahdanau': lambda: _rnn('gru', 'bahdanau'),
    'lstm_plain': lambda: _rnn('lstm', 'none', encoder_layers=2),
    'lstm_luong_dot': lambda: _rnn('lstm', 'luong_dot'),
    'gru_luong_general': lambda: _rnn('gru', 'luong_general'),
    'lstm_luong_concat': lambda: _rnn('lstm', 'luong_concat'),
    'transformer_shared': lambda: _transformer(),
    'transformer_post_ln_separate': lambda: _transformer(
        pre_norm=False, share_embeddings='none'),
}


def _init(model):
  return jax.jit(model.init)(jax.random.key(0), SOURCE[:1])['params']


def _stepwise(model, params, source, target, cache_length=9):
  """Logits from encoding once and feeding the target a token at a time."""
  @jax.jit
  def start(source):
    memory = model.apply({'params': params}, source, method=model.encode)
    _, created = model.apply(
        {'params': params}, memory,
        jnp.zeros((source.shape[0], cache_length), jnp.int32), decode=True,
        method=model.decode, mutable=['cache'])
    return memory, created['cache']

  memory, cache = start(source)
  pieces = []
  step = jax.jit(lambda c, t: model.apply(
      {'params': params, 'cache': c}, memory, t, decode=True,
      method=model.decode, mutable=['cache']))
  for t in range(target.shape[1]):
    logits, updated = step(cache, target[:, t:t + 1])
    cache = updated['cache']
    pieces.append(logits)
  return jnp.concatenate(pieces, axis=1)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_cached_decoding_equals_the_teacher_forced_pass(name):
  model = MODELS[name]()
  params = _init(model)
  full = jax.jit(model.apply)({'params': params}, SOURCE, TARGET)
  assert full.shape == (2, TARGET.shape[1], model.config.target_vocab_size)
  assert full.dtype == jnp.float32
  np.testing.assert_allclose(_stepwise(model, params, SOURCE, TARGET), full,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['gru_bahdanau', 'lstm_luong_concat',
                                  'gru_plain', 'transformer_shared'])
def test_source_padding_is_invisible(name):
  model = MODELS[name]()
  params = _init(model)
  apply = jax.jit(model.apply)
  logits = apply({'params': params}, SOURCE, TARGET)
  wider = np.pad(SOURCE, ((0, 0), (0, 5)))
  np.testing.assert_allclose(apply({'params': params}, wider, TARGET), logits,
                             rtol=1e-5, atol=1e-5)
  # Row 1 alone, without row 0's longer sentence beside it, is the same.
  np.testing.assert_allclose(
      apply({'params': params}, SOURCE[1:, :3], TARGET[1:]), logits[1:],
      rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['gru_bahdanau', 'transformer_shared'])
def test_without_decoder_inputs_the_model_reads_bos(name):
  model = MODELS[name]()
  params = _init(model)
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(
      apply({'params': params}, SOURCE),
      apply({'params': params}, SOURCE, TARGET[:, :1]), rtol=1e-6)


@pytest.mark.parametrize('name', ['gru_bahdanau', 'transformer_shared'])
def test_dropout_only_in_training(name):
  model = MODELS[name]()
  params = _init(model)
  run = jax.jit(lambda key, train: model.apply(
      {'params': params}, SOURCE, TARGET, train=train,
      rngs={'dropout': key}), static_argnums=1)
  assert not np.allclose(run(jax.random.key(0), True),
                         run(jax.random.key(1), True))
  np.testing.assert_array_equal(run(jax.random.key(0), False),
                                run(jax.random.key(1), False))


def test_rnn_attention_weights_are_sown_per_target_step():
  model = MODELS['gru_bahdanau']()
  params = _init(model)
  _, state = jax.jit(lambda p: model.apply(
      {'params': p}, SOURCE, TARGET, mutable=['intermediates']))(params)
  weights = np.asarray(
      state['intermediates']['decoder']['attention_weights'][0])
  assert weights.shape == (2, TARGET.shape[1], SOURCE.shape[1])
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(weights[1, :, 3:], 0.0)  # padding


def test_transformer_cross_attention_weights_per_layer_and_head():
  model = MODELS['transformer_shared']()
  params = _init(model)
  _, state = jax.jit(lambda p: model.apply(
      {'params': p}, SOURCE, TARGET, mutable=['intermediates']))(params)
  weights = np.asarray(cross_attention_weights(state['intermediates']))
  assert weights.shape == (2, 2, 2, TARGET.shape[1], SOURCE.shape[1])
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(weights[:, 1, :, :, 3:], 0.0)


def test_shared_embeddings_are_one_table():
  names = lambda m: set(jax.eval_shape(  # noqa: E731
      m.init, jax.random.key(0), SOURCE[:1])['params'])
  assert 'source_embed' not in names(_transformer(share_embeddings='all'))
  assert 'output' not in names(_transformer(share_embeddings='decoder'))
  separate = names(_transformer(share_embeddings='none'))
  assert {'source_embed', 'target_embed', 'output'} <= separate


@pytest.mark.parametrize('make,match', [
    (lambda: _rnn('gru', 'monotonic'), 'unknown attention'),
    (lambda: _rnn('rnn', 'none'), "'gru' or 'lstm'"),
    (lambda: TransformerSeq2Seq(TransformerSeq2SeqConfig(
        VOCAB, VOCAB + 1, share_embeddings='all')), 'one vocabulary'),
    (lambda: _transformer(share_embeddings='some'), 'share_embeddings'),
])
def test_bad_settings_are_rejected(make, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(make().init, jax.random.key(0), SOURCE[:1])
