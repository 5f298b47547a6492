"""Tests of lm_jax.models.tagger: shapes, padding invariance of words and
characters, the character encoders, extra features, and a small task that
needs both directions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax.models.tagger import CharCNN, CharLSTM, RecurrentTagger

VOCAB, CHARS, TAGS = 12, 9, 5


def _model(**fields):
  fields = {'vocab_size': VOCAB, 'num_tags': TAGS, 'embed_dim': 8,
            'hidden_dim': 6, 'dropout_rate': 0.0, 'char_vocab_size': CHARS,
            'char_embed_dim': 4, 'char_features': 5, **fields}
  model = RecurrentTagger(**fields)
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((2, 5), jnp.int32))
  return model, params['params']


def _apply(model, params, *args, **kwargs):
  """`model.apply`, compiled (much faster than eager for scanned cells)."""
  apply = jax.jit(model.apply, static_argnames='train')
  return apply({'params': params}, *args, **kwargs)


def _chars(inputs, width=4, seed=0):
  """Random characters, 1..width of them per real word."""
  rng = np.random.default_rng(seed)
  chars = rng.integers(1, CHARS, inputs.shape + (width,))
  used = rng.integers(1, width + 1, inputs.shape)
  chars[np.arange(width) >= used[..., None]] = 0
  chars[np.asarray(inputs) == 0] = 0
  return jnp.asarray(chars, jnp.int32)


@pytest.mark.parametrize('char_encoder', ['none', 'cnn', 'lstm'])
def test_padded_sentence_gets_the_tags_it_gets_alone(char_encoder):
  model, params = _model(char_encoder=char_encoder, num_layers=2)
  assert ('chars' in params) == (char_encoder != 'none')
  sentence = jnp.array([[3, 5, 7, 2]])
  chars = _chars(sentence)
  alone = _apply(model, params, sentence, chars=chars)
  assert alone.shape == (1, 4, TAGS) and alone.dtype == jnp.float32
  # Real-looking words and characters behind the stated length, and extra
  # character padding: none may leak in.
  batch = jnp.array([[3, 5, 7, 2, 9, 9], [4, 4, 4, 4, 4, 4]])
  batch_chars = jnp.zeros((2, 6, 7), jnp.int32)
  batch_chars = batch_chars.at[:, :, :4].set(_chars(batch, seed=1))
  batch_chars = batch_chars.at[0, :4, :4].set(chars[0])
  padded = _apply(model, params, batch, jnp.array([4, 6]), chars=batch_chars)
  assert padded.shape == (2, 6, TAGS)
  np.testing.assert_allclose(padded[0, :4], alone[0], atol=1e-5)


@pytest.mark.parametrize('encoder', [CharCNN, CharLSTM])
def test_char_encoders_ignore_character_padding(encoder):
  module = encoder(vocab_size=CHARS, embed_dim=4, features=5)
  chars = jnp.array([[[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]]])
  params = jax.jit(module.init)(jax.random.key(0), chars)
  apply = jax.jit(module.apply)
  features = apply(params, chars)
  wider = apply(params, jnp.pad(chars, ((0, 0), (0, 0), (0, 3))))
  np.testing.assert_allclose(wider, features, atol=1e-6)
  np.testing.assert_array_equal(features[0, 2], 0)  # a padding word
  assert not np.allclose(features[0, 0], features[0, 1])


def test_the_char_lstm_gets_the_taggers_forget_bias():
  sentence = jnp.array([[3, 5, 7, 2]])
  chars = _chars(sentence)
  features = {}
  for forget_bias in (0.0, 1.0):
    model, params = _model(char_encoder='lstm', forget_bias=forget_bias)
    _, state = model.apply(
        {'params': params}, sentence, chars=chars,
        capture_intermediates=lambda m, _: isinstance(m, CharLSTM))
    (features[forget_bias],) = state['intermediates']['chars']['__call__']
  assert not np.allclose(features[0.0], features[1.0], atol=1e-4)


def test_char_encoder_needs_chars_after_initialisation():
  model, params = _model(char_encoder='cnn')
  with pytest.raises(ValueError, match='needs chars'):
    model.apply({'params': params}, jnp.ones((1, 3), jnp.int32))


def test_extra_features_widen_the_recurrent_input():
  model, params = _model(char_encoder='cnn', extra_features_dim=3)
  assert params['rnn']['layer0_fwd']['input']['kernel'].shape[0] == 8 + 5 + 3
  inputs = jnp.array([[3, 4, 5]])
  extra = jnp.ones((1, 3, 3))
  logits = _apply(model, params, inputs, chars=_chars(inputs),
                  extra_features=extra)
  assert logits.shape == (1, 3, TAGS)


def _synthetic(n, rng, length=8):
  """Tag of each word = the next word's id mod 4, or 4 at the end of the
  sentence: only the backward direction can see it."""
  lengths = rng.integers(2, length + 1, n)
  inputs = rng.integers(1, VOCAB, (n, length)).astype(np.int32)
  live = np.arange(length)[None, :] < lengths[:, None]
  inputs[~live] = 0
  following = np.concatenate([inputs[:, 1:], np.zeros((n, 1), np.int32)], 1)
  tags = np.where(following > 0, following % 4, 4).astype(np.int32)
  return (jnp.asarray(inputs), jnp.asarray(lengths), jnp.asarray(tags),
          jnp.asarray(live, jnp.float32))


def test_learns_tags_that_depend_on_the_next_word():
  model, params = _model(hidden_dim=16)
  rng = np.random.default_rng(0)
  tx = optax.adam(0.02)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, inputs, lengths, tags, weights):
    def loss(p):
      logits = model.apply({'params': p}, inputs, lengths)
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, tags)
      return (losses * weights).sum() / weights.sum()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(150):
    params, opt_state = step(params, opt_state, *_synthetic(32, rng))
  inputs, lengths, tags, weights = _synthetic(300, np.random.default_rng(1))
  predictions = _apply(model, params, inputs, lengths).argmax(-1)
  accuracy = float(((predictions == tags) * weights).sum() / weights.sum())
  assert accuracy > 0.95
