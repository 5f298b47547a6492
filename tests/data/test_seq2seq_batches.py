"""Tests of lm_jax.data.seq2seq_batches: the padded layout, length buckets,
epochs, checkpointable streams, host rows and exact evaluation passes."""

import itertools

import numpy as np
import pytest

from lm_jax.data import seq2seq_batches
from lm_jax.data.seq2seq_batches import BucketedPairs, pad_pairs

BOS, EOS = 2, 3


def _pairs(n, seed=0, longest=30):
  """Random pairs whose lengths are close, as a translation's are."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, longest, n)
  sources = [rng.integers(4, 50, m).astype(np.int32) for m in lengths]
  targets = [rng.integers(4, 50, m + rng.integers(-2, 3)).astype(np.int32)
             for m in lengths]
  return sources, targets


def test_pad_pairs_layout():
  batch = pad_pairs([np.array([5, 6, 7]), np.array([8])],
                    [np.array([9, 10]), np.array([11, 12, 13])], 6, 3, BOS,
                    EOS)
  np.testing.assert_array_equal(batch['inputs'], [[5, 6, 7, EOS, 0, 0],
                                                  [8, EOS, 0, 0, 0, 0],
                                                  [0] * 6])
  np.testing.assert_array_equal(batch['decoder_inputs'],
                                [[BOS, 9, 10, 0, 0, 0],
                                 [BOS, 11, 12, 13, 0, 0], [0] * 6])
  np.testing.assert_array_equal(batch['targets'], [[9, 10, EOS, 0, 0, 0],
                                                   [11, 12, 13, EOS, 0, 0],
                                                   [0] * 6])
  np.testing.assert_array_equal(batch['weights'], [[1, 1, 1, 0, 0, 0],
                                                   [1, 1, 1, 1, 0, 0],
                                                   [0] * 6])
  assert batch['inputs'].dtype == np.int32
  assert batch['weights'].dtype == np.float32


def _key(src, tgt):
  return (tuple(src.tolist()), tuple(tgt.tolist()))


def _unpad(batch, row):
  src = batch['inputs'][row]
  tgt = batch['targets'][row]
  return (tuple(src[:np.flatnonzero(src == EOS)[0]].tolist()),
          tuple(tgt[:np.flatnonzero(tgt == EOS)[0]].tolist()))


def test_an_epoch_reads_each_short_enough_pair_at_most_once():
  sources, targets = _pairs(203)
  pairs = BucketedPairs(sources, targets, 8, 8, 24, 0, BOS, EOS,
                        pool_batches=4)
  kept = [_key(s, t) for s, t in zip(sources, targets)
          if max(len(s), len(t)) + 1 <= 24]
  assert pairs.steps_per_epoch == len(kept) // 8
  seen = []
  for step in range(pairs.steps_per_epoch):
    batch = pairs(step)
    length = batch['inputs'].shape[1]
    assert length % 8 == 0 and length <= 24
    assert batch['weights'].sum(1).min() > 0  # no filler rows in training
    seen += [_unpad(batch, row) for row in range(8)]
  assert len(set(seen)) == len(seen)
  assert set(seen) <= set(kept)
  assert len(kept) - len(seen) < 8  # only the incomplete last batch dropped


def test_epochs_differ_and_batches_are_reproducible():
  sources, targets = _pairs(100)
  pairs = BucketedPairs(sources, targets, 4, 8, 64, 7, BOS, EOS)
  again = BucketedPairs(sources, targets, 4, 8, 64, 7, BOS, EOS)
  n = pairs.steps_per_epoch
  for index in (0, 3, n, n + 3, 5 * n + 1):
    for key in ('inputs', 'targets'):
      np.testing.assert_array_equal(pairs(index)[key], again(index)[key])
  assert not np.array_equal(pairs.epoch_plan(0), pairs.epoch_plan(1))


def test_length_bucketing_cuts_padding():
  sources, targets = _pairs(2000, longest=40)
  def padding(pool_batches):
    pairs = BucketedPairs(sources, targets, 16, 8, 64, 0, BOS, EOS,
                          pool_batches=pool_batches)
    total = real = 0
    for step in range(pairs.steps_per_epoch):
      batch = pairs(step)
      total += batch['weights'].size
      real += batch['weights'].sum()
    return 1 - real / total
  assert padding(32) < 0.5 * padding(1)


def test_hosts_rows_are_slices_of_the_global_batch():
  sources, targets = _pairs(64)
  full = BucketedPairs(sources, targets, 8, 8, 64, 0, BOS, EOS)
  half = BucketedPairs(sources, targets, 8, 8, 64, 0, BOS, EOS,
                       rows=slice(4, 8))
  for step in range(3):
    for key in ('inputs', 'decoder_inputs', 'targets', 'weights'):
      np.testing.assert_array_equal(half(step)[key], full(step)[key][4:8])


def test_the_stream_resumes_where_it_was_saved():
  sources, targets = _pairs(64)
  make = lambda: seq2seq_batches.train_stream(  # noqa: E731
      BucketedPairs(sources, targets, 8, 8, 64, 0, BOS, EOS))
  stream = make()
  for _ in range(5):
    next(stream)
  state = stream.get_state()
  expected = [next(stream) for _ in range(10)]  # crosses an epoch
  resumed = make()
  resumed.set_state(state)
  for want, got in zip(expected, itertools.islice(resumed, 10)):
    np.testing.assert_array_equal(want['inputs'], got['inputs'])


def test_too_few_pairs_for_a_batch_is_an_error():
  sources, targets = _pairs(10)
  with pytest.raises(ValueError, match='too few'):
    BucketedPairs(sources, targets, 16, 8, 64, 0, BOS, EOS)


def test_eval_batches_cover_every_pair_once_and_pad_with_weightless_rows():
  sources, targets = _pairs(21, longest=80)
  batches = list(seq2seq_batches.eval_batches(sources, targets, 8, 8, BOS,
                                              EOS))
  assert len(batches) == 3
  got = [_unpad(b, r) for b in batches for r in range(8)
         if b['weights'][r].any()]
  assert got == [_key(s, t) for s, t in zip(sources, targets)]
  assert batches[-1]['weights'][5:].sum() == 0
  assert sum(b['weights'].sum() for b in batches) == sum(
      len(t) + 1 for t in targets)
  limited = list(seq2seq_batches.eval_batches(sources, targets, 8, 8, BOS,
                                              EOS, num_batches=2))
  assert len(limited) == 2


def test_pad_sources_for_decoding():
  inputs = seq2seq_batches.pad_sources([np.array([5, 6]), np.array([7])], 4,
                                       8, EOS)
  np.testing.assert_array_equal(inputs, [[5, 6, EOS, 0, 0, 0, 0, 0],
                                         [7, EOS, 0, 0, 0, 0, 0, 0],
                                         [0] * 8, [0] * 8])
