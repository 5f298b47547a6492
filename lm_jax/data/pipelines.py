"""grain input pipelines. Every batch is a dict of numpy arrays:

  inputs:  int32 `[batch, length]`, the tokens the model reads;
  targets: int32 `[batch, length]`, the tokens it must predict;
  weights: float32 `[batch, length]`, 1 for real targets, 0 for padding;
  reset:   float32 `[batch]` (contiguous streams only), 1 where a stream
           starts over.

Training streams are indexed by batch number, so the iterator state is one
integer: a resumed run sees exactly the batches it would have seen, on any
number of hosts (each host keeps only its own rows of the global batch).
"""

from __future__ import annotations

from typing import Iterator

import grain
import numpy as np

# Effectively endless; grain's range is lazy.
_ENDLESS = 1 << 40


class RandomWindows:
  """Batch number -> `batch_size` windows at random offsets (nanoGPT style).

  Each batch's offsets come from a generator seeded by (seed, batch number),
  so any batch can be rebuilt without replaying the ones before it.

  Args:
    tokens: int32 `[num_tokens]`, the whole split.
    length: tokens per window the model reads (targets are shifted by 1).
    batch_size: global batch size.
    seed: stream seed.
    rows: the rows of each global batch this host keeps.
  """

  def __init__(self, tokens: np.ndarray, length: int, batch_size: int,
               seed: int, rows: slice = slice(None)):
    if len(tokens) < length + 1:
      raise ValueError(f'{len(tokens)} tokens are too few for windows of '
                       f'{length + 1}')
    self.tokens, self.length, self.batch_size = tokens, length, batch_size
    self.seed, self.rows = seed, rows
    self._span = np.arange(length + 1)

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, batch_index])
    # Every window start from 0 to N - length - 1 (as nanoGPT draws them).
    offsets = rng.integers(0, len(self.tokens) - self.length,
                           size=self.batch_size)[self.rows]
    windows = self.tokens[offsets[:, None] + self._span]
    return {'inputs': windows[:, :-1], 'targets': windows[:, 1:],
            'weights': np.ones(windows[:, 1:].shape, np.float32)}


def lm_train_stream(tokens: np.ndarray, length: int, batch_size: int,
                    seed: int, rows: slice = slice(None),
                    prefetch: int = 4) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of random-window LM batches.

  `get_state()` / `set_state()` on the returned iterator save and restore
  its position (a JSON-serialisable dict).
  """
  dataset = grain.MapDataset.range(0, _ENDLESS).map(
      RandomWindows(tokens, length, batch_size, seed, rows))
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def lm_sample_batches(tokens: np.ndarray, length: int, batch_size: int,
                      seed: int, num_batches: int,
                      rows: slice = slice(None)) -> list[dict]:
  """The same `num_batches` random-window batches every call (periodic eval)."""
  windows = RandomWindows(tokens, length, batch_size, seed, rows)
  return [windows(i) for i in range(num_batches)]


def lm_full_pass(tokens: np.ndarray, length: int, batch_size: int,
                 rows: slice = slice(None)) -> Iterator[dict]:
  """Every token of a split predicted once, in non-overlapping windows.

  Window k reads tokens[k*length : (k+1)*length] and predicts the next
  token of each; the last window and the last batch are padded with
  zero-weight positions, so every batch has the same shape.
  """
  num_targets = len(tokens) - 1
  num_windows = -(-num_targets // length)
  num_batches = -(-num_windows // batch_size)
  padded = np.zeros(num_batches * batch_size * length + 1, np.int32)
  padded[:len(tokens)] = tokens
  weights = np.zeros(num_batches * batch_size * length, np.float32)
  weights[:num_targets] = 1.0
  inputs = padded[:-1].reshape(num_batches, batch_size, length)
  targets = padded[1:].reshape(num_batches, batch_size, length)
  weights = weights.reshape(num_batches, batch_size, length)
  for b in range(num_batches):
    yield {'inputs': inputs[b][rows], 'targets': targets[b][rows],
           'weights': weights[b][rows]}


class ContiguousStreams:
  """Batch number -> the next `length` tokens of `batch_size` parallel
  streams, for truncated back-propagation through time.

  The split is cut into `batch_size` equal streams (rows), read left to
  right `length` tokens at a time, as in Zaremba et al.'s PTB reader; an
  epoch is `steps_per_epoch` batches and the next one starts over. Each
  batch also carries `reset` float32 `[batch]`: 1 on the first batch of an
  epoch, where a recurrent model must drop the state it carried.

  Args:
    tokens: int32 `[num_tokens]`, the whole split.
    length: tokens per row per batch.
    batch_size: global batch size (streams).
    rows: the rows of each global batch this host keeps.
  """

  def __init__(self, tokens: np.ndarray, length: int, batch_size: int,
               rows: slice = slice(None)):
    per_stream = len(tokens) // batch_size
    self.steps_per_epoch = (per_stream - 1) // length
    if self.steps_per_epoch < 1:
      raise ValueError(f'{len(tokens)} tokens are too few for {batch_size} '
                       f'streams of {length + 1} tokens')
    self.streams = tokens[:per_stream * batch_size].reshape(
        batch_size, per_stream)[rows]
    self.length = length

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    i = batch_index % self.steps_per_epoch
    window = self.streams[:, i * self.length:(i + 1) * self.length + 1]
    rows = len(window)
    return {'inputs': window[:, :-1], 'targets': window[:, 1:],
            'weights': np.ones((rows, self.length), np.float32),
            'reset': np.full((rows,), float(i == 0), np.float32)}


def lm_contiguous_stream(tokens: np.ndarray, length: int, batch_size: int,
                         rows: slice = slice(None), prefetch: int = 4
                         ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of `ContiguousStreams` batches."""
  dataset = grain.MapDataset.range(0, _ENDLESS).map(
      ContiguousStreams(tokens, length, batch_size, rows))
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def lm_contiguous_pass(tokens: np.ndarray, length: int, batch_size: int,
                       rows: slice = slice(None), max_batches: int = 0,
                       num_rows: int = 0) -> Iterator[dict]:
  """Every token of a split predicted once, by `batch_size` streams read in
  order (a recurrent model carries its state from batch to batch).

  Stream b predicts targets [b*R, (b+1)*R) with R = ceil((N-1)/batch_size);
  the tail is padded with zero-weight positions, so every batch has the
  same shape and the weighted mean is exact. Batches carry `reset`, 1 in
  the first batch only.

  Args:
    tokens: int32 `[num_tokens]`, the whole split.
    length: tokens per row per batch.
    batch_size: streams.
    rows: the rows (of `num_rows`) this host keeps.
    max_batches: stop after this many batches (0: the whole split).
    num_rows: rows per global batch, at least `batch_size`; those past the
      streams are empty (zero weights), to fill every device (0: as many
      as streams).
  """
  num_targets = len(tokens) - 1
  per_stream = -(-num_targets // batch_size)
  num_batches = -(-per_stream // length)
  if max_batches:
    num_batches = min(num_batches, max_batches)
  width = num_batches * length
  padded = np.zeros(batch_size * per_stream + 1, np.int32)
  padded[:len(tokens)] = tokens
  starts = np.arange(batch_size)[:, None] * per_stream
  offsets = np.minimum(np.arange(width), per_stream - 1)[None, :]
  inputs = padded[starts + offsets]
  targets = padded[starts + offsets + 1]
  real = (np.arange(width)[None, :] < per_stream) & (
      starts + offsets < num_targets)
  weights = real.astype(np.float32)
  if num_rows > batch_size:
    empty = ((0, num_rows - batch_size), (0, 0))
    inputs, targets, weights = (np.pad(x, empty)
                                for x in (inputs, targets, weights))
  for b in range(num_batches):
    cut = slice(b * length, (b + 1) * length)
    yield {'inputs': inputs[rows, cut], 'targets': targets[rows, cut],
           'weights': weights[rows, cut],
           'reset': np.full((len(inputs[rows]),), float(b == 0), np.float32)}
