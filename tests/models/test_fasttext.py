"""Tests of lm_jax.models.fasttext: FNV-1a hashing as fastText computes it,
character n-gram extraction, the subword table, shapes, and vectors for
words never seen in training.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models import fasttext


def test_fnv1a_matches_published_test_vectors():
  # The FNV reference test suite: FNV-1a 32 of '', 'a', 'foobar'.
  got = fasttext.fnv1a_32(['', 'a', 'foobar'])
  assert got.dtype == np.uint32
  assert [hex(h) for h in got] == ['0x811c9dc5', '0xe40c292c', '0xbf9cf968']


def test_fnv1a_sign_extends_bytes_above_127_as_fasttext_does():
  # 'é' is UTF-8 c3 a9; fastText XORs uint32(int8(b)): 0xffffffc3, 0xffffffa9.
  h = 2166136261
  for byte in (0xFFFFFFC3, 0xFFFFFFA9):
    h = ((h ^ byte) * 16777619) % 2 ** 32
  assert h == 0x3CFA68C1
  assert fasttext.fnv1a_32(['é'])[0] == h
  # Plain FNV-1a (no sign extension) would give 0x1e9de8c1.
  assert fasttext.fnv1a_32(['é'])[0] != 0x1E9DE8C1


def test_fnv1a_vectorised_matches_a_byte_loop():
  words = ['<wh', 'where>', 'naïve', '日本語', 'x' * 40, '']

  def scalar(s):
    h = 2166136261
    for b in s.encode('utf-8'):
      signed = b - 256 if b > 127 else b
      h = ((h ^ (signed % 2 ** 32)) * 16777619) % 2 ** 32
    return h

  assert list(fasttext.fnv1a_32(words)) == [scalar(w) for w in words]


def test_char_ngrams_of_where():
  # The fastText paper's example: the 3-grams of <where>.
  assert fasttext.char_ngrams('where', 3, 3) == [
      '<wh', 'whe', 'her', 'ere', 're>']
  grams = fasttext.char_ngrams('where', 3, 6)
  assert len(grams) == 5 + 4 + 3 + 2
  assert grams[:4] == ['<wh', '<whe', '<whe' + 'r', '<where']
  assert '<where>' not in grams  # 7 characters > max_n
  assert fasttext.char_ngrams('a', 3, 6) == ['<a>']  # the whole token
  # Characters, not bytes: 'é' is one.
  assert fasttext.char_ngrams('été', 3, 3) == ['<ét', 'été', 'té>']
  # From 1 as fastText counts: no empty n-gram, which every word would share.
  assert fasttext.char_ngrams('cat', 0, 0) == []
  assert fasttext.char_ngrams('cat', 1, 1) == ['c', 'a', 't']
  assert fasttext.char_ngrams('cat', 0, 2) == fasttext.char_ngrams('cat', 1, 2)


def test_subword_rows_and_table():
  words = ['the', 'cat']
  assert fasttext.char_ngrams('the') == ['<th', '<the', '<the>', 'the',
                                         'the>', 'he>']
  rows, owners = fasttext.subword_table(words, buckets=1000)
  assert list(owners) == [0] * 7 + [1] * 7  # own row + 6 n-grams each
  assert rows[0] == 0 and rows[7] == 1
  assert np.all(rows[1:7] >= 2) and np.all(rows < 2 + 1000)
  the = fasttext.subword_rows('the', 2, 1000, word_id=0)
  np.testing.assert_array_equal(the, rows[:7])
  expected = 2 + fasttext.fnv1a_32(['<th']).astype(np.int64)[0] % 1000
  assert the[1] == expected
  unseen = fasttext.subword_rows('thecat', 2, 1000)
  assert len(unseen) == len(fasttext.char_ngrams('thecat'))  # no own row


def _model(words=('the', 'cat', 'sat'), buckets=50, dim=6):
  rows, owners = fasttext.subword_table(list(words), buckets)
  model = fasttext.FastText(len(words), buckets, dim, rows, owners)
  params = model.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))['params']
  return model, params, rows, owners


def test_ngrams_without_buckets_are_an_error_not_one_shared_row():
  with pytest.raises(ValueError, match='fasttext_buckets'):
    fasttext.subword_table(['the', 'cat'], buckets=0)
  with pytest.raises(ValueError, match='fasttext_buckets'):
    fasttext.subword_rows('cat', 2, 0)
  # Without n-grams (max_n 0) no bucket is needed: fastText's own rule.
  rows, _ = fasttext.subword_table(['the', 'cat'], buckets=0, max_n=0)
  assert rows.tolist() == [0, 1]
  assert fasttext.subword_rows('q', 2, 10, min_n=4).size == 0


def test_shapes_and_initialisation():
  model, params, _, _ = _model()
  assert params['input_vectors'].shape == (3 + 50, 6)
  assert params['output_vectors'].shape == (3, 6)
  assert np.abs(params['input_vectors']).max() <= 1 / 6
  np.testing.assert_array_equal(params['output_vectors'], 0.0)
  true, noise = model.apply({'params': params}, jnp.array([0, 2]),
                            jnp.array([1, 1]), jnp.array([[0, 2, 1]]))
  assert true.shape == (2,) and noise.shape == (2, 3)
  assert model.apply({'params': params}, jnp.array([0, 2])).shape == (2, 6)


def test_word_vectors_are_means_of_their_rows():
  model, params, rows, owners = _model()
  table = np.asarray(params['input_vectors'])
  vectors = model.apply({'params': params}, method='embeddings')
  for w in range(3):
    np.testing.assert_allclose(vectors[w], table[rows[owners == w]].mean(0),
                               rtol=1e-5, atol=1e-7)


def test_unseen_words_have_vectors_from_shared_ngrams():
  model, params, _, _ = _model()
  table = np.asarray(params['input_vectors'])
  rows = fasttext.subword_rows('cats', 3, 50)
  vector = model.apply({'params': params}, jnp.asarray(rows), method='compose')
  assert vector.shape == (6,) and np.all(np.isfinite(vector))
  np.testing.assert_allclose(vector, table[rows].mean(0), rtol=1e-5,
                             atol=1e-7)
  # 'cats' shares '<ca', 'cat', '<cat' with 'cat'.
  cat = set(fasttext.subword_rows('cat', 3, 50, word_id=1).tolist())
  assert len(cat & set(rows.tolist())) >= 3


def test_gradients_reach_every_row_of_the_input_word_undivided():
  model, params, rows, owners = _model()

  def f(p):
    return model.apply({'params': p}, jnp.array([1])).sum()

  grads = np.asarray(jax.grad(f)(params)['input_vectors'])
  cat_rows = rows[owners == 1]
  # Every row of 'cat' (some n-grams may share a bucket) gets all of it.
  counts = np.bincount(cat_rows, minlength=len(grads))
  np.testing.assert_allclose(grads[:, 0], counts.astype(np.float32))
