"""Tests of lm_jax.data.padded_batches: padding, lengths and weights, epochs
shuffled by (seed, epoch), length buckets, host rows, exact evaluation
passes and the checkpointable iterator."""

import json

import numpy as np
import pytest

from lm_jax.data import padded_batches as pb


def _examples(n=50, seed=0, fixed_targets=False):
  """Sentence i has length 1 + (i * 7) % 13 and word values 100 * i + t,
  so every batch row names its example."""
  rng = np.random.default_rng(seed)
  lengths = [1 + (i * 7) % 13 for i in range(n)]
  inputs = [(100 * i + np.arange(1, n_ + 1)).astype(np.int32)
            for i, n_ in enumerate(lengths)]
  examples = {'inputs': inputs,
              'chars': [np.full((len(x), 3), i + 1, np.int32)
                        for i, x in enumerate(inputs)]}
  if fixed_targets:
    examples['targets'] = rng.integers(0, 2, n).astype(np.int32)
  else:
    examples['targets'] = [x % 5 for x in inputs]
  return examples


def _ids(batch):
  """The example number of each row (-1 for empty rows)."""
  return [int(row[0]) // 100 if length else -1
          for row, length in zip(batch['inputs'], batch['lengths'])]


def test_collate_pads_ragged_columns_and_weights_real_targets():
  examples = _examples()
  batch = pb.collate(examples, np.array([3, 0, -1]), length_multiple=4)
  lengths = [1 + 21 % 13, 1, 0]
  np.testing.assert_array_equal(batch['lengths'], lengths)
  assert batch['lengths'].dtype == np.int32
  assert batch['inputs'].shape == (3, 12) and batch['inputs'].dtype == np.int32
  assert batch['chars'].shape == (3, 12, 3)
  assert batch['weights'].dtype == np.float32
  for row, (i, n) in enumerate(zip([3, 0], lengths)):
    np.testing.assert_array_equal(batch['inputs'][row, :n],
                                  examples['inputs'][i])
    np.testing.assert_array_equal(batch['targets'][row, :n],
                                  examples['targets'][i])
    np.testing.assert_array_equal(batch['chars'][row, :n], i + 1)
  live = np.arange(12)[None, :] < np.array(lengths)[:, None]
  for key in ('inputs', 'targets'):
    assert (batch[key][~live] == 0).all(), key
  assert (batch['chars'][~live] == 0).all()
  np.testing.assert_array_equal(batch['weights'], live)


def test_collate_stacks_fixed_columns_and_weights_real_rows():
  examples = _examples(fixed_targets=True)
  batch = pb.collate(examples, np.array([5, 2, -1, -1]))
  assert batch['targets'].shape == (4,)
  np.testing.assert_array_equal(batch['targets'][:2],
                                examples['targets'][[5, 2]])
  np.testing.assert_array_equal(batch['targets'][2:], 0)
  np.testing.assert_array_equal(batch['weights'], [1, 1, 0, 0])


def test_host_rows_get_the_whole_batch_padded_length():
  examples = _examples()
  indices = np.array([1, 3, 0, 2])  # lengths 8, 9, 1, 2
  full = pb.collate(examples, indices, length_multiple=1)
  second_half = pb.collate(examples, indices, length_multiple=1,
                           rows=slice(2, 4))
  assert second_half['inputs'].shape == (2, 9)
  for key in full:
    np.testing.assert_array_equal(second_half[key], full[key][2:], key)


@pytest.mark.parametrize('bucketing', [False, True])
def test_each_epoch_is_a_permutation_drawn_from_seed_and_epoch(bucketing):
  examples = _examples(50)
  batches = pb.EpochBatches(examples, 8, seed=3, bucketing=bucketing)
  assert batches.steps_per_epoch == 6
  orders = [batches.epoch_order(e) for e in range(3)]
  for order in orders:
    assert order.shape == (6, 8)
    assert len(set(order.ravel())) == 48  # no example twice in an epoch
  assert not np.array_equal(orders[0], orders[1])
  # The 2 examples left out differ from epoch to epoch.
  left_out = [set(range(50)) - set(o.ravel()) for o in orders]
  assert left_out[0] != left_out[1] or left_out[1] != left_out[2]
  rebuilt = pb.EpochBatches(examples, 8, seed=3, bucketing=bucketing)
  np.testing.assert_array_equal(rebuilt.epoch_order(1), orders[1])
  other_seed = pb.EpochBatches(examples, 8, seed=4, bucketing=bucketing)
  assert not np.array_equal(other_seed.epoch_order(0), orders[0])


def test_batch_number_runs_through_the_epochs_in_order():
  batches = pb.EpochBatches(_examples(50), 8, seed=0)
  order = {e: batches.epoch_order(e) for e in (0, 1)}
  for k in (0, 5, 6, 11, 7):  # out of order, across the epoch boundary
    epoch, step = divmod(k, 6)
    assert _ids(batches(k)) == list(order[epoch][step])


def test_bucketing_groups_similar_lengths_with_little_padding():
  examples = _examples(200)
  lengths = pb.example_lengths(examples)

  def padding(bucketing):
    batches = pb.EpochBatches(examples, 8, seed=0, length_multiple=1,
                              bucketing=bucketing)
    padded = sum(batches(k)['inputs'].size for k in range(25))
    return 1 - lengths[batches.epoch_order(0)].sum() / padded

  assert padding(True) < 0.1 and padding(False) > 0.3
  # Buckets are not served in length order.
  batches = pb.EpochBatches(examples, 8, seed=0, length_multiple=1)
  widths = [batches(k)['inputs'].shape[1] for k in range(25)]
  assert widths != sorted(widths)


def test_too_few_examples_for_one_batch_is_an_error():
  with pytest.raises(ValueError, match='too few'):
    pb.EpochBatches(_examples(5), 8, seed=0)


def test_stream_resumes_exactly_from_its_saved_state():
  examples = _examples(40)
  stream = pb.train_stream(examples, 8, seed=1)
  for _ in range(7):  # into the second epoch (5 batches an epoch)
    next(stream)
  state = json.loads(json.dumps(stream.get_state()))
  expected = [next(stream) for _ in range(6)]

  resumed = pb.train_stream(examples, 8, seed=1)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    assert got.keys() == want.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_eval_batches_cover_every_example_once_then_empty_rows():
  examples = _examples(30)
  batches = pb.eval_batches(examples, 8, length_multiple=1)
  assert len(batches) == 4
  ids = [i for batch in batches for i in _ids(batch)]
  assert sorted(i for i in ids if i >= 0) == list(range(30))
  assert ids[30:] == [-1, -1]
  assert sum(b['weights'].sum() for b in batches) == sum(
      pb.example_lengths(examples))
  # Shortest first: each batch is no wider than the next.
  widths = [b['inputs'].shape[1] for b in batches]
  assert widths == sorted(widths)


def test_eval_sample_is_a_fixed_subset():
  examples = _examples(100)
  first = pb.eval_batches(examples, 8, max_batches=3, seed=5)
  again = pb.eval_batches(examples, 8, max_batches=3, seed=5)
  assert len(first) == 3
  ids = [_ids(b) for b in first]
  assert ids == [_ids(b) for b in again]
  assert len(set(sum(ids, []))) == 24 and -1 not in sum(ids, [])
  # More batches than the split needs: the whole split.
  assert len(pb.eval_batches(examples, 8, max_batches=50)) == 13


def test_subset_keeps_the_chosen_examples_in_order():
  examples = _examples(10, fixed_targets=True)
  picked = pb.subset(examples, [7, 2])
  np.testing.assert_array_equal(picked['inputs'][0], examples['inputs'][7])
  np.testing.assert_array_equal(picked['targets'],
                                examples['targets'][[7, 2]])
  assert pb.num_examples(picked) == 2
