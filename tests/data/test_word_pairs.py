"""Tests of lm_jax.data.word_pairs: vocabulary, Mikolov's subsampling, the
noise distribution, dynamic windows (exact pairs and their statistics),
CBOW windows, the batch streams (determinism, resumption, host rows) and
GloVe's distance-weighted co-occurrence counts against a plain loop.
"""

import collections

import numpy as np
import pytest

from lm_jax.data import word_pairs as wp


def _encoded(sentences):
  vocab = wp.WordVocabulary.from_sentences(sentences, min_count=1)
  return vocab, vocab.encode(sentences)


def test_vocabulary_orders_by_count_then_first_appearance_and_drops_rare():
  sentences = [['b', 'a', 'c'], ['a', 'd', 'c'], ['e']]
  vocab = wp.WordVocabulary.from_sentences(sentences, min_count=2)
  assert vocab.words == ['a', 'c']  # b, d, e are seen once
  assert list(vocab.counts) == [2, 2]
  vocab = wp.WordVocabulary.from_sentences(sentences, min_count=1)
  assert vocab.words == ['a', 'c', 'b', 'd', 'e']
  assert wp.WordVocabulary.from_sentences(
      sentences, min_count=1, max_size=2).words == ['a', 'c']
  with pytest.raises(ValueError, match='min_count'):
    wp.WordVocabulary.from_sentences(sentences, min_count=9)


def test_encode_drops_unknown_words_and_keeps_sentence_ids():
  vocab = wp.WordVocabulary(['x', 'y'], np.array([5, 3]))
  corpus = vocab.encode([['x', 'zz', 'y'], [], ['zz'], ['y', 'x']])
  assert list(corpus.ids) == [0, 1, 1, 0]
  assert list(corpus.sentence_ids) == [0, 0, 3, 3]


def test_keep_probabilities_follow_mikolovs_formula():
  keep = wp.keep_probabilities(np.array([900, 90, 10]), sample=0.01)
  f = np.array([0.9, 0.09, 0.01])
  np.testing.assert_allclose(keep[:2], (np.sqrt(f[:2] / 0.01) + 1) * 0.01 /
                             f[:2])
  assert keep[0] == pytest.approx(0.116520, abs=1e-6)  # (sqrt(90) + 1) / 90
  assert keep[2] == 1.0  # capped: (sqrt(1) + 1) * 1 = 2
  np.testing.assert_array_equal(wp.keep_probabilities(np.array([9, 1]), 0),
                                [1.0, 1.0])


def test_subsampling_keeps_each_word_at_its_rate():
  counts = np.array([20000, 5000, 500])
  ids = np.repeat(np.arange(3), counts).astype(np.int32)
  corpus = wp.EncodedCorpus(ids, np.zeros(len(ids), np.int64))
  keep = wp.keep_probabilities(counts, sample=1e-2)
  kept = wp.subsample(corpus, keep, np.random.default_rng(0))
  rates = np.bincount(kept.ids, minlength=3) / counts
  # Binomial standard errors are below 0.007 here.
  np.testing.assert_allclose(rates, keep, atol=0.03)
  assert rates[0] < 0.3 and rates[2] == 1.0


def test_noise_sampler_draws_unigram_to_the_three_quarters():
  counts = np.array([1000, 100, 10, 1, 0])
  sampler = wp.NoiseSampler(counts, power=0.75)
  draws = sampler(np.random.default_rng(0), (200_000,))
  assert draws.dtype == np.int32
  expected = counts ** 0.75 / (counts ** 0.75).sum()
  np.testing.assert_allclose(np.bincount(draws, minlength=5) / len(draws),
                             expected, atol=0.004)
  assert not np.any(draws == 4)  # a zero count is never drawn
  np.testing.assert_allclose(sampler.probs, expected)


def test_window_pairs_exact_with_sentence_boundaries():
  sentence_ids = np.array([0, 0, 0, 1, 1])
  radius = np.array([1, 2, 1, 1, 1])
  centres, contexts = wp.window_pairs(sentence_ids, radius)
  pairs = sorted(zip(centres.tolist(), contexts.tolist()))
  assert pairs == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]
  radius = np.array([2, 2, 2, 2, 2])
  pairs = set(zip(*wp.window_pairs(sentence_ids, radius)))
  assert (0, 2) in pairs and (2, 0) in pairs and (2, 3) not in pairs


def test_dynamic_window_distances_follow_the_uniform_radius():
  # One long sentence, no subsampling: a centre sees distance d with
  # probability P(radius >= d) = (W - d + 1) / W, on each side.
  window, n = 5, 40_000
  corpus = wp.EncodedCorpus(np.zeros(n, np.int32), np.zeros(n, np.int64))
  batches = wp.Word2VecBatches(corpus, np.ones(1), wp.NoiseSampler(
      np.ones(1)), window, 1, 1024, seed=3)
  rng = np.random.default_rng([3, 0, 0])  # the epoch's own generator
  kept = wp.subsample(corpus, np.ones(1), rng)
  radius = rng.integers(1, window + 1, size=len(kept.ids))
  centres, contexts = wp.window_pairs(kept.sentence_ids, radius)
  assert len(centres) == batches.examples_per_epoch
  distances = np.bincount(np.abs(centres - contexts), minlength=window + 2)
  expected = 2 * n * (window - np.arange(1, window + 1) + 1) / window
  np.testing.assert_allclose(distances[1:window + 1], expected, rtol=0.03)
  assert distances[0] == 0 and distances[window + 1] == 0
  # The radius is uniform on 1..window.
  np.testing.assert_allclose(np.bincount(radius)[1:] / n, 1 / window,
                             atol=0.01)


def test_cbow_windows_mask_and_positions():
  sentence_ids = np.array([0, 0, 0, 1])
  radius = np.array([1, 1, 2, 1])
  centres, contexts, mask = wp.cbow_windows(sentence_ids, radius, window=2)
  # Token 3 is alone in its sentence: no context, so no CBOW example.
  assert list(centres) == [0, 1, 2]
  offsets = [-2, -1, 1, 2]
  got = [sorted(int(contexts[r, j]) for j in range(4) if mask[r, j])
         for r in range(3)]
  assert got == [[1], [0, 2], [0, 1]]
  assert mask.shape == (3, 4) and contexts.shape == (3, 4)
  assert not mask[2, offsets.index(1)]  # position 3 is another sentence


def _tiny_batches(**kwargs):
  rng = np.random.default_rng(0)
  sentences = [[f'w{i}' for i in rng.integers(0, 30, rng.integers(2, 12))]
               for _ in range(300)]
  vocab, corpus = _encoded(sentences)
  args = dict(window=3, negatives=4, batch_size=64, seed=7,
              share_negatives=8)
  args.update(kwargs)
  return wp.Word2VecBatches(
      corpus, wp.keep_probabilities(vocab.counts, 1e-2),
      wp.NoiseSampler(vocab.counts), **args)


@pytest.mark.parametrize('cbow', [False, True])
def test_batches_shapes_and_determinism(cbow):
  batches = _tiny_batches(cbow=cbow)
  batch = batches(5)
  inputs_shape = (64, 6) if cbow else (64,)
  assert batch['inputs'].shape == inputs_shape
  assert batch['targets'].shape == (64,) and batch['weights'].shape == (64,)
  assert batch['negatives'].shape == (8, 4)
  assert batch['inputs'].dtype == batch['negatives'].dtype == np.int32
  if cbow:
    assert batch['input_mask'].shape == (64, 6)
    assert np.all(batch['input_mask'].sum(1) >= 1)
  again = _tiny_batches(cbow=cbow)
  # Rebuilt from (seed, batch number) alone, in any order.
  for index in (5, 2 * batches.steps_per_epoch + 1, 0):
    for key, value in batches(index).items():
      np.testing.assert_array_equal(value, again(index)[key])
  assert not np.array_equal(batches(1)['targets'], batches(2)['targets'])


def test_training_epochs_are_full_batches_and_exact_passes_pad():
  batches = _tiny_batches()
  n = batches.examples_per_epoch
  assert batches.steps_per_epoch == -(-n // 64)
  for epoch in range(3):
    for step in range(batches.steps_per_epoch):
      assert batches(epoch * batches.steps_per_epoch + step)[
          'weights'].all()
  exact = _tiny_batches(cycle=False)
  weights = np.concatenate([exact(i)['weights']
                            for i in range(exact.steps_per_epoch)])
  assert weights.sum() == n


def test_epochs_differ_and_pairs_stay_in_the_corpus():
  batches = _tiny_batches()
  e0, e1 = batches.epoch(0), batches.epoch(1)
  assert not np.array_equal(e0[0][:100], e1[0][:100])
  assert e0[0].max() < 30 and e0[1].max() < 30


def test_stream_resumes_from_its_state():
  batches = _tiny_batches()
  stream = wp.stream(batches)
  for _ in range(3):
    next(stream)
  state = stream.get_state()
  expected = [next(stream) for _ in range(2)]
  resumed = wp.stream(_tiny_batches())
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_host_rows_cut_every_array_in_proportion():
  batches = _tiny_batches()
  whole = batches(3)
  half = wp.HostRows(batches, slice(32, 64))(3)
  np.testing.assert_array_equal(half['targets'], whole['targets'][32:])
  np.testing.assert_array_equal(half['negatives'], whole['negatives'][4:])


def _naive_cooccurrence(sentences, window):
  counts = collections.defaultdict(float)
  for s in sentences:
    for i, a in enumerate(s):
      for d in range(1, window + 1):
        if i + d < len(s):
          counts[a, s[i + d]] += 1.0 / d
          counts[s[i + d], a] += 1.0 / d
  return counts


def test_cooccurrence_weights_by_inverse_distance():
  vocab, corpus = _encoded([['a', 'b', 'c'], ['c', 'a']])
  rows, cols, values = wp.cooccurrence(corpus, len(vocab), window=2)
  got = {(vocab.words[i], vocab.words[j]): v
         for i, j, v in zip(rows, cols, values)}
  assert got == {('a', 'b'): 1.0, ('b', 'a'): 1.0, ('b', 'c'): 1.0,
                 ('c', 'b'): 1.0, ('a', 'c'): 1.5, ('c', 'a'): 1.5}


def test_cooccurrence_matches_a_plain_loop(monkeypatch):
  # Small blocks, so that the blocked summation is exercised.
  monkeypatch.setattr(wp, '_BLOCK_CELLS', 50)
  rng = np.random.default_rng(1)
  sentences = [[f'w{i}' for i in rng.integers(0, 25, rng.integers(1, 15))]
               for _ in range(200)]
  vocab, corpus = _encoded(sentences)
  rows, cols, values = wp.cooccurrence(corpus, len(vocab), window=4)
  want = _naive_cooccurrence(sentences, 4)
  assert len(rows) == len(want)
  keys = rows.astype(np.int64) * len(vocab) + cols
  assert np.all(np.diff(keys) > 0)  # sorted by (row, col), no duplicates
  for i, j, v in zip(rows, cols, values):
    assert v == pytest.approx(want[vocab.words[i], vocab.words[j]])


def test_cooccurrence_batches_cover_every_entry_once_per_epoch():
  rows = np.arange(10, dtype=np.int32)
  cols = rows[::-1].copy()
  values = np.arange(1.0, 11.0)
  batches = wp.CooccurrenceBatches(rows, cols, values, batch_size=4, seed=0)
  assert batches.steps_per_epoch == 3
  seen = [batches(i) for i in range(3)]
  weights = np.concatenate([b['weights'] for b in seen])
  assert weights.sum() == 10 and list(weights[-2:]) == [0, 0]
  got = np.concatenate([b['inputs'] for b in seen])[weights > 0]
  assert sorted(got) == list(range(10))
  assert all(b['counts'].min() > 0 for b in seen)  # log X stays finite
  in_order = wp.CooccurrenceBatches(rows, cols, values, 4, seed=None)
  np.testing.assert_array_equal(in_order(0)['inputs'], [0, 1, 2, 3])
