"""Tests of lm_jax.decode: KV-cached decoding against full recomputation,
greedy generation against repeated full forward passes, logit filtering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import decode

MAX_LENGTH = 16


def _full_logits(model, params):
  """Jitted full (cache-free) forward pass: tokens -> logits."""
  return jax.jit(lambda tokens: model.apply({'params': params}, tokens))


@pytest.mark.parametrize('positional', ['learned', 'sinusoidal'])
@pytest.mark.parametrize('chunks', [(5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
                                    (1,) * 16, (3, 4, 1, 8)])
def test_kv_cached_decoding_matches_full_recomputation(make_tiny_gpt,
                                                       positional, chunks):
  """Prefilling a prompt and appending the rest a token (or a few) at a
  time gives the logits of one full forward pass, at every position."""
  model, params = make_tiny_gpt(positional=positional, max_length=MAX_LENGTH)
  assert sum(chunks) <= MAX_LENGTH
  tokens = jax.random.randint(jax.random.key(3), (2, sum(chunks)), 0, 13)
  full = _full_logits(model, params)(tokens)
  cache = decode.empty_cache(model, batch_size=2, max_length=MAX_LENGTH)
  pieces, start = [], 0
  for size in chunks:
    logits, cache = decode.prefill(model, params, cache,
                                   tokens[:, start:start + size])
    pieces.append(logits)
    start += size
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full,
                             rtol=1e-5, atol=1e-5)
  assert int(cache['position']) == sum(chunks)


def _reference_greedy(model, params, prompt, num_tokens, max_length):
  """Greedy decoding by full forward passes over the visible window.

  The window follows `decode.generate`'s documented context policy: the
  prompt's last `max_length` tokens, and once the window would exceed
  `max_length` it restarts from its last `max_length // 2` tokens. Windows
  are right-padded to `max_length` (one compiled shape): causal attention
  makes the padding invisible to the window's last position.
  """
  forward = _full_logits(model, params)
  window = np.asarray(prompt)[:, -max_length:]
  out = []
  for _ in range(num_tokens):
    if window.shape[1] > max_length:
      window = window[:, -(max_length // 2):]
    padded = np.pad(window, ((0, 0), (0, max_length - window.shape[1])))
    logits = np.asarray(forward(jnp.asarray(padded)))[:, window.shape[1] - 1]
    top2 = np.sort(logits, axis=-1)[:, -2:]
    # A near-tie could flip on rounding noise and make the test ambiguous.
    assert (top2[:, 1] - top2[:, 0] > 1e-5).all(), 'near-tie; change seed'
    token = logits.argmax(-1).astype(np.int32)
    out.append(token)
    window = np.concatenate([window, token[:, None]], axis=1)
  return np.stack(out, axis=1)


@pytest.mark.parametrize('positional,prompt_length,num_tokens', [
    ('learned', 4, 13),     # fills the cache exactly (4 + 13 - 1 = 16)
    ('sinusoidal', 1, 10),  # fits in one cache
    ('learned', 5, 30),     # past max_length: the cache restarts twice
    ('sinusoidal', 5, 30),
    ('learned', 20, 6),     # a prompt longer than max_length is cropped
])
def test_greedy_generate_equals_argmax_of_full_forward_passes(
    make_tiny_gpt, positional, prompt_length, num_tokens):
  model, params = make_tiny_gpt(seed=1, positional=positional,
                                max_length=MAX_LENGTH)
  prompt = np.asarray(jax.random.randint(jax.random.key(4),
                                         (2, prompt_length), 0, 13))
  got = decode.generate(model, params, prompt, num_tokens,
                        jax.random.key(0), max_length=MAX_LENGTH,
                        temperature=0.0)
  assert got.shape == (2, num_tokens)
  assert got.dtype == np.int32
  expected = _reference_greedy(model, params, prompt, num_tokens, MAX_LENGTH)
  np.testing.assert_array_equal(got, expected)


def test_sampling_is_seeded_and_top_k_one_is_greedy(make_tiny_gpt):
  model, params = make_tiny_gpt(max_length=MAX_LENGTH)
  prompt = np.zeros((3, 2), np.int32)
  sample = lambda seed, **kw: decode.generate(  # noqa: E731
      model, params, prompt, 8, jax.random.key(seed), max_length=MAX_LENGTH,
      **kw)
  np.testing.assert_array_equal(sample(0), sample(0))
  assert (sample(0) != sample(1)).any()
  np.testing.assert_array_equal(sample(5, top_k=1),
                                sample(0, temperature=0.0))


def test_generate_with_a_one_token_window_equals_greedy_bigram_steps(
    make_tiny_gpt):
  """max_length 1: each token is predicted from the one before alone."""
  model, params = make_tiny_gpt(max_length=4)
  got = decode.generate(model, params, np.asarray([[3, 5]], np.int32), 4,
                        jax.random.key(0), max_length=1, temperature=0.0)
  token, expected = 5, []
  for _ in range(4):
    logits = model.apply({'params': params}, np.asarray([[token]], np.int32))
    token = int(jnp.argmax(logits[0, -1]))
    expected.append(token)
  np.testing.assert_array_equal(got, [expected])


def test_generate_rejects_empty_prompts(make_tiny_gpt):
  model, params = make_tiny_gpt(max_length=MAX_LENGTH)
  with pytest.raises(ValueError, match='prompt'):
    decode.generate(model, params, np.zeros((2, 0), np.int32), 3,
                    jax.random.key(0), max_length=MAX_LENGTH)
  none = decode.generate(model, params, np.ones((2, 3), np.int32), 0,
                         jax.random.key(0), max_length=MAX_LENGTH)
  assert none.shape == (2, 0) and none.dtype == np.int32


# Probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled vocabulary order.
_PROBS = np.array([0.15, 0.5, 0.05, 0.3])
_LOGITS = jnp.log(jnp.asarray(_PROBS[None], jnp.float32))


def _kept(logits) -> set[int]:
  return set(np.flatnonzero(np.isfinite(np.asarray(logits)[0])).tolist())


@pytest.mark.parametrize('top_k,expected', [
    (1, {1}), (2, {1, 3}), (3, {0, 1, 3}), (4, {0, 1, 2, 3}), (0, {0, 1, 2, 3}),
    (100, {0, 1, 2, 3})])  # more than the vocabulary: all
def test_filter_logits_top_k_keeps_the_k_most_likely(top_k, expected):
  assert _kept(decode.filter_logits(_LOGITS, top_k=top_k)) == expected


@pytest.mark.parametrize('top_p,expected', [
    (0.01, {1}),          # the most likely token always stays
    (0.49, {1}),
    (0.51, {1, 3}),       # 0.5 is not yet 0.51: add the next one
    (0.79, {1, 3}),
    (0.81, {0, 1, 3}),
    (0.96, {0, 1, 2, 3}),
    (1.0, {0, 1, 2, 3})])
def test_filter_logits_top_p_keeps_the_smallest_nucleus(top_p, expected):
  assert _kept(decode.filter_logits(_LOGITS, top_p=top_p)) == expected


def test_top_p_filters_the_tempered_distribution():
  """At temperature 0.5 the probabilities are 0.22, 0.61, 0.02, 0.15 (in
  vocabulary order): 0.9 of the mass is tokens 1 and 3, where at
  temperature 1 it takes token 0 as well."""
  out = decode.filter_logits(_LOGITS, temperature=0.5, top_p=0.9)
  assert _kept(out) == {1, 3}


def test_top_p_stops_where_the_mass_reaches_p_exactly():
  out = decode.filter_logits(jnp.log(jnp.asarray([[1., 4., 3.]])), top_p=0.5)
  assert _kept(out) == {1}  # 4 / 8 is exact in float32


def _softmax(logits) -> np.ndarray:
  return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))


def test_filter_logits_scales_by_temperature_and_combines_filters():
  scaled = decode.filter_logits(_LOGITS, temperature=0.5)
  np.testing.assert_allclose(_softmax(scaled), _softmax(_LOGITS / 0.5),
                             rtol=1e-6)
  both = decode.filter_logits(_LOGITS, top_k=3, top_p=0.6)
  assert _kept(both) == {1, 3}
  np.testing.assert_allclose(_softmax(np.asarray(both)[:, [1, 3]]),
                             _softmax(np.asarray(_LOGITS)[:, [1, 3]]),
                             rtol=1e-6)


@pytest.mark.parametrize('temperature', [1e-38, 1e-40])
def test_filter_logits_tiny_temperatures_sample_the_argmax(temperature):
  # Unshifted, 5 / 1e-38 overflows to inf and the softmax to NaN; 1e-40 is
  # subnormal, flushed to 0 on CPU.
  logits = jnp.asarray([[2.0, 5.0, -3.0], [1.0, -1.0, 0.5]])
  scaled = decode.filter_logits(logits, temperature=temperature)
  np.testing.assert_array_equal(_softmax(scaled), [[0, 1, 0], [1, 0, 0]])
  tokens = jax.random.categorical(jax.random.key(0), scaled)
  np.testing.assert_array_equal(tokens, [1, 0])


def test_filter_logits_filters_each_row_independently():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))
  out = np.isfinite(np.asarray(decode.filter_logits(logits, top_k=1)))
  np.testing.assert_array_equal(out, [[True, False, False],
                                      [False, False, True]])
