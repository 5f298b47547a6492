"""Tests of lm_jax.data.pipelines: random windows, exact full passes, host
row slicing and the checkpointable grain iterator."""

import json

import numpy as np
import pytest

from lm_jax.data import pipelines

# Token i has value i, so a window's values are its positions in the split.
TOKENS = np.arange(1000, dtype=np.int32)


def _assert_batches_equal(a: dict, b: dict):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_random_windows_batch_has_the_documented_shapes_and_dtypes():
  batch = pipelines.RandomWindows(TOKENS, 8, 4, seed=0)(0)
  assert set(batch) == {'inputs', 'targets', 'weights'}
  for key, dtype in (('inputs', np.int32), ('targets', np.int32),
                     ('weights', np.float32)):
    assert batch[key].shape == (4, 8), key
    assert batch[key].dtype == dtype, key
  np.testing.assert_array_equal(batch['weights'], 1.0)


def test_random_windows_are_contiguous_and_targets_are_inputs_shifted_by_one():
  batch = pipelines.RandomWindows(TOKENS, 8, 16, seed=0)(3)
  # Contiguous windows of the split...
  np.testing.assert_array_equal(np.diff(batch['inputs'], axis=1), 1)
  # ...whose targets are the next tokens.
  np.testing.assert_array_equal(batch['targets'], batch['inputs'] + 1)
  assert batch['targets'].max() < len(TOKENS)


def test_random_windows_depend_only_on_seed_and_batch_index():
  windows = pipelines.RandomWindows(TOKENS, 8, 4, seed=7)
  later_first = [windows(i) for i in (5, 2, 9)]
  rebuilt = pipelines.RandomWindows(TOKENS.copy(), 8, 4, seed=7)
  for i, batch in zip((5, 2, 9), later_first):
    _assert_batches_equal(batch, rebuilt(i))
  assert not np.array_equal(windows(0)['inputs'], windows(1)['inputs'])
  other_seed = pipelines.RandomWindows(TOKENS, 8, 4, seed=8)
  assert not np.array_equal(windows(0)['inputs'], other_seed(0)['inputs'])


def test_random_windows_can_start_at_every_offset_including_the_last():
  """Every window of `length + 1` tokens can be drawn, so the split's last
  token is a target too (nanoGPT draws offsets in [0, N - length))."""
  length = 8
  tokens = np.arange(length + 4, dtype=np.int32)  # 4 possible windows
  windows = pipelines.RandomWindows(tokens, length, 64, seed=0)
  starts = set()
  for i in range(10):
    starts.update(windows(i)['inputs'][:, 0].tolist())
  assert starts == {0, 1, 2, 3}, (
      f'drawn window starts {sorted(starts)}: the window ending at the '
      "split's last token is never drawn")


def test_random_windows_rejects_too_short_splits():
  with pytest.raises(ValueError, match='too few'):
    pipelines.RandomWindows(np.arange(5, dtype=np.int32), 8, 4, seed=0)


@pytest.mark.parametrize('rows', [slice(0, 2), slice(2, 4), slice(1, 3)])
def test_host_rows_are_those_rows_of_the_global_batch(rows):
  global_windows = pipelines.RandomWindows(TOKENS, 8, 4, seed=0)
  host_windows = pipelines.RandomWindows(TOKENS, 8, 4, seed=0, rows=rows)
  for i in range(3):
    full = global_windows(i)
    _assert_batches_equal(host_windows(i),
                          {k: v[rows] for k, v in full.items()})


def test_sample_batches_are_the_first_random_window_batches_every_call():
  first = pipelines.lm_sample_batches(TOKENS, 8, 4, seed=3, num_batches=3)
  again = pipelines.lm_sample_batches(TOKENS, 8, 4, seed=3, num_batches=3)
  windows = pipelines.RandomWindows(TOKENS, 8, 4, seed=3)
  assert len(first) == 3
  for i, (a, b) in enumerate(zip(first, again)):
    _assert_batches_equal(a, b)
    _assert_batches_equal(a, windows(i))
  rows = pipelines.lm_sample_batches(TOKENS, 8, 4, seed=3, num_batches=3,
                                     rows=slice(1, 3))
  for a, b in zip(first, rows):
    _assert_batches_equal({k: v[1:3] for k, v in a.items()}, b)


@pytest.mark.parametrize('num_tokens,length,batch_size', [
    (1000, 8, 4),   # padded last window and last batch
    (33, 8, 4),     # 32 targets: exactly four windows, one batch
    (34, 8, 4),     # one target spills into a fifth window
    (10, 16, 3),    # fewer targets than one window
])
def test_full_pass_predicts_every_target_exactly_once(num_tokens, length,
                                                      batch_size):
  tokens = np.arange(num_tokens, dtype=np.int32) * 7 % 101
  batches = list(pipelines.lm_full_pass(tokens, length, batch_size))
  for batch in batches:
    for key in ('inputs', 'targets', 'weights'):
      assert batch[key].shape == (batch_size, length), key
  weights = np.concatenate([b['weights'].ravel() for b in batches])
  inputs = np.concatenate([b['inputs'].ravel() for b in batches])
  targets = np.concatenate([b['targets'].ravel() for b in batches])
  assert weights.sum() == num_tokens - 1
  assert set(np.unique(weights)) <= {0.0, 1.0}
  real = weights == 1.0
  # Real positions come first, in order, and rebuild the token stream.
  assert real[:num_tokens - 1].all() and not real[num_tokens - 1:].any()
  np.testing.assert_array_equal(inputs[real], tokens[:-1])
  np.testing.assert_array_equal(targets[real], tokens[1:])
  # Fewest batches that hold every target.
  assert len(batches) == -(-(num_tokens - 1) // (length * batch_size))


def test_full_pass_host_rows_are_rows_of_the_global_batches():
  full = list(pipelines.lm_full_pass(TOKENS, 8, 4))
  for rows in (slice(0, 2), slice(2, 4)):
    host = list(pipelines.lm_full_pass(TOKENS, 8, 4, rows=rows))
    assert len(host) == len(full)
    for a, b in zip(full, host):
      _assert_batches_equal({k: v[rows] for k, v in a.items()}, b)


def test_train_stream_yields_the_random_window_batches_in_order():
  stream = pipelines.lm_train_stream(TOKENS, 8, 4, seed=5)
  windows = pipelines.RandomWindows(TOKENS, 8, 4, seed=5)
  for i in range(4):
    _assert_batches_equal(next(stream), windows(i))


def test_train_stream_state_round_trip_resumes_exactly():
  stream = pipelines.lm_train_stream(TOKENS, 8, 4, seed=5)
  for _ in range(6):
    next(stream)
  state = stream.get_state()
  state = json.loads(json.dumps(state))  # what a checkpoint stores
  expected = [next(stream) for _ in range(4)]

  resumed = pipelines.lm_train_stream(TOKENS, 8, 4, seed=5)
  resumed.set_state(state)
  for batch in expected:
    _assert_batches_equal(next(resumed), batch)

  # A host's stream restored from the same state gives its rows.
  host = pipelines.lm_train_stream(TOKENS, 8, 4, seed=5, rows=slice(2, 4))
  host.set_state(state)
  for batch in expected:
    _assert_batches_equal(next(host), {k: v[2:4] for k, v in batch.items()})


def test_train_stream_state_can_rewind():
  stream = pipelines.lm_train_stream(TOKENS, 8, 4, seed=5)
  start = stream.get_state()
  first = [next(stream) for _ in range(3)]
  stream.set_state(start)
  for batch in first:
    _assert_batches_equal(next(stream), batch)


def test_contiguous_streams_read_each_row_in_order_and_reset_each_epoch():
  tokens = np.arange(103, dtype=np.int32)
  streams = pipelines.ContiguousStreams(tokens, length=4, batch_size=5)
  # 103 // 5 = 20 tokens a stream; (20 - 1) // 4 = 4 batches an epoch.
  assert streams.steps_per_epoch == 4
  first, second = streams(0), streams(1)
  np.testing.assert_array_equal(first['inputs'][1], [20, 21, 22, 23])
  np.testing.assert_array_equal(first['targets'][1], [21, 22, 23, 24])
  np.testing.assert_array_equal(second['inputs'][1], [24, 25, 26, 27])
  np.testing.assert_array_equal(first['reset'], 1.0)
  np.testing.assert_array_equal(second['reset'], 0.0)
  np.testing.assert_array_equal(streams(4)['inputs'], first['inputs'])
  np.testing.assert_array_equal(streams(4)['reset'], 1.0)
  host = pipelines.ContiguousStreams(tokens, 4, 5, rows=slice(2, 4))
  np.testing.assert_array_equal(host(1)['inputs'], second['inputs'][2:4])
  with pytest.raises(ValueError, match='too few'):
    pipelines.ContiguousStreams(tokens[:9], 4, 5)


def test_contiguous_stream_resumes_from_its_state():
  tokens = np.arange(500, dtype=np.int32)
  stream = pipelines.lm_contiguous_stream(tokens, 4, 5)
  for _ in range(3):
    next(stream)
  state = stream.get_state()
  expected = [next(stream)['inputs'] for _ in range(30)]  # crosses epochs
  resumed = pipelines.lm_contiguous_stream(tokens, 4, 5)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)['inputs'], want)


@pytest.mark.parametrize('num_tokens', [101, 103, 40])
def test_contiguous_pass_predicts_every_token_once(num_tokens):
  tokens = np.arange(1, num_tokens + 1, dtype=np.int32)
  batches = list(pipelines.lm_contiguous_pass(tokens, 4, 3))
  assert all(b['inputs'].shape == (3, 4) for b in batches)
  weights = np.concatenate([b['weights'] for b in batches], 1)
  targets = np.concatenate([b['targets'] for b in batches], 1)
  inputs = np.concatenate([b['inputs'] for b in batches], 1)
  real = weights > 0
  assert real.sum() == num_tokens - 1
  np.testing.assert_array_equal(np.sort(targets[real]), tokens[1:])
  np.testing.assert_array_equal(targets[real] - inputs[real], 1)
  # Each stream reads its tokens in order.
  for row, mask in zip(targets, real):
    assert (np.diff(row[mask]) == 1).all()
  assert [float(b['reset'][0]) for b in batches] == [1.0] + [0.0] * (
      len(batches) - 1)
  assert len(list(pipelines.lm_contiguous_pass(tokens, 4, 3,
                                               max_batches=2))) == 2


def test_contiguous_pass_pads_empty_rows_to_fill_the_devices():
  tokens = np.arange(1, 41, dtype=np.int32)
  plain = list(pipelines.lm_contiguous_pass(tokens, 4, 1))
  padded = list(pipelines.lm_contiguous_pass(tokens, 4, 1, num_rows=4))
  assert len(padded) == len(plain) == 10
  for a, b in zip(plain, padded):
    assert b['inputs'].shape == (4, 4) and b['reset'].shape == (4,)
    np.testing.assert_array_equal(b['inputs'][:1], a['inputs'])
    np.testing.assert_array_equal(b['weights'][:1], a['weights'])
    assert not b['weights'][1:].any()
  host = list(pipelines.lm_contiguous_pass(tokens, 4, 1, slice(2, 4),
                                           num_rows=4))
  assert host[0]['inputs'].shape == (2, 4) and not host[0]['weights'].any()
