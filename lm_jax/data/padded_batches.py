"""Padded batches of variable-length examples (sentences), shuffled per
epoch, optionally bucketed by length, checkpointable.

Examples are held column by column, `Examples = dict[str, Column]`:

  a ragged column is a list with one array per example whose first
    dimension is the example's length: 'inputs' `[length]`, a tagger's
    'targets' `[length]`, 'chars' `[length, word_chars]`;
  a fixed column is one array `[num_examples, ...]`: a classifier's
    'targets'.

'inputs' must be ragged; its lengths are the examples'. Every batch is a
dict of numpy arrays:

  ragged columns: padded with 0 to `[batch, length, ...]`, where length is
    the longest example of the global batch rounded up to a multiple of
    `length_multiple` (few distinct shapes, so few jit compilations);
  fixed columns: `[batch, ...]`;
  lengths: int32 `[batch]`, each row's true length;
  weights: float32, the shape of 'targets': 1 for a real target, 0 for
    padding and for the empty rows (length 0) that fill an evaluation's
    last batch.

A training stream is indexed by batch number: batch k is batch
k mod steps_per_epoch of epoch k // steps_per_epoch, whose order is drawn
from (seed, epoch) alone. The iterator's state is one integer, so a resumed
run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import grain
import numpy as np

Column = Union[list, np.ndarray]
Examples = dict[str, Column]

# Effectively endless; grain's range is lazy.
_ENDLESS = 1 << 40


def num_examples(examples: Examples) -> int:
  return len(examples['inputs'])


def example_lengths(examples: Examples) -> np.ndarray:
  """int32 `[num_examples]`: the length of each example's 'inputs'."""
  return np.fromiter((len(x) for x in examples['inputs']), np.int32,
                     num_examples(examples))


def _is_ragged(column: Column) -> bool:
  return isinstance(column, list)


def collate(examples: Examples, indices: np.ndarray, length_multiple: int = 1,
            rows: slice = slice(None)) -> dict[str, np.ndarray]:
  """One padded batch.

  Args:
    examples: the example columns.
    indices: int `[batch]` example numbers; -1 makes an empty row (length
      0, weight 0).
    length_multiple: the padded length is rounded up to a multiple of this.
    rows: the rows of the batch to build (this host's); the padded length
      is that of the whole batch, so every host builds the same shape.

  Returns:
    The batch (see the module docstring).
  """
  lengths = np.array([len(examples['inputs'][i]) if i >= 0 else 0
                      for i in indices], np.int32)
  length = max(int(lengths.max(initial=0)), 1)
  length = -(-length // length_multiple) * length_multiple
  indices, lengths = indices[rows], lengths[rows]
  batch = {'lengths': lengths}
  for key, column in examples.items():
    if _is_ragged(column):
      sample = column[0]
      padded = np.zeros((len(indices), length) + sample.shape[1:],
                        sample.dtype)
      for row, i in enumerate(indices):
        if i >= 0:
          padded[row, :lengths[row]] = column[i]
      batch[key] = padded
    else:
      picked = column[np.maximum(indices, 0)]
      batch[key] = np.where(
          (indices >= 0).reshape((-1,) + (1,) * (picked.ndim - 1)),
          picked, np.zeros_like(picked))
  if 'targets' in examples:
    if _is_ragged(examples['targets']):
      weights = np.arange(length)[None, :] < lengths[:, None]
    else:
      weights = indices >= 0
    batch['weights'] = weights.astype(np.float32)
  return batch


class EpochBatches:
  """Batch number -> padded training batch, in epochs.

  Each epoch draws a permutation of the examples from (seed, epoch) and
  keeps its first steps_per_epoch x batch_size (the few left over differ
  from epoch to epoch). With bucketing, those are then sorted by padded
  length (stably, so the order within a length stays random), cut into
  batches of similar lengths, and the batches shuffled: little padding, no
  order to learn from.

  Args:
    examples: the training examples.
    batch_size: global batch size.
    seed: stream seed.
    length_multiple: padded lengths are multiples of this.
    bucketing: form batches of similar lengths.
    rows: the rows of each global batch this host keeps.
  """

  def __init__(self, examples: Examples, batch_size: int, seed: int,
               length_multiple: int = 8, bucketing: bool = True,
               rows: slice = slice(None)):
    n = num_examples(examples)
    if n < batch_size:
      raise ValueError(f'{n} examples are too few for batches of '
                       f'{batch_size}')
    self.examples, self.batch_size, self.seed = examples, batch_size, seed
    self.length_multiple, self.bucketing = length_multiple, bucketing
    self.rows = rows
    self._buckets = -(-example_lengths(examples) // length_multiple)
    self._epoch: Optional[tuple[int, np.ndarray]] = None

  @property
  def steps_per_epoch(self) -> int:
    return num_examples(self.examples) // self.batch_size

  def epoch_order(self, epoch: int) -> np.ndarray:
    """int `[steps_per_epoch, batch_size]`: the example numbers of each
    batch of `epoch`."""
    rng = np.random.default_rng([self.seed, epoch])
    steps = self.steps_per_epoch
    order = rng.permutation(num_examples(self.examples))[:steps *
                                                          self.batch_size]
    if not self.bucketing:
      return order.reshape(steps, self.batch_size)
    order = order[np.argsort(self._buckets[order], kind='stable')]
    return order.reshape(steps, self.batch_size)[rng.permutation(steps)]

  def __call__(self, batch_number: int) -> dict[str, np.ndarray]:
    epoch, step = divmod(int(batch_number), self.steps_per_epoch)
    # Consecutive batches share an epoch; its order is drawn once.
    cached = self._epoch
    if cached is None or cached[0] != epoch:
      cached = self._epoch = (epoch, self.epoch_order(epoch))
    return collate(self.examples, cached[1][step], self.length_multiple,
                   self.rows)


def train_stream(examples: Examples, batch_size: int, seed: int,
                 length_multiple: int = 8, bucketing: bool = True,
                 rows: slice = slice(None), prefetch: int = 4
                 ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of `EpochBatches` batches.

  `get_state()` / `set_state()` on the returned iterator save and restore
  its position (a JSON-serialisable dict).
  """
  dataset = grain.MapDataset.range(0, _ENDLESS).map(
      EpochBatches(examples, batch_size, seed, length_multiple, bucketing,
                   rows))
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def eval_batches(examples: Examples, batch_size: int,
                 length_multiple: int = 8, rows: slice = slice(None),
                 max_batches: int = 0, seed: int = 0) -> list[dict]:
  """Every example once (or a fixed sample), in padded batches.

  Examples are batched shortest first, which wastes little on padding and
  changes no summed metric; the last batch is filled with empty rows of
  weight 0, so every batch has `batch_size` rows.

  Args:
    examples: the split.
    batch_size: global batch size.
    length_multiple: padded lengths are multiples of this.
    rows: the rows of each global batch this host keeps.
    max_batches: > 0: at most this many batches, of a random sample of
      the examples drawn from `seed` (the same at every call).
    seed: the sample's seed.
  """
  n = num_examples(examples)
  chosen = np.arange(n)
  if 0 < max_batches and max_batches * batch_size < n:
    chosen = np.sort(np.random.default_rng(seed).choice(
        n, max_batches * batch_size, replace=False))
  chosen = chosen[np.argsort(example_lengths(examples)[chosen], kind='stable')]
  num_batches = -(-len(chosen) // batch_size)
  padded = np.full(num_batches * batch_size, -1, np.int64)
  padded[:len(chosen)] = chosen
  return [collate(examples, indices, length_multiple, rows)
          for indices in padded.reshape(num_batches, batch_size)]


def subset(examples: Examples, indices: Sequence[int]) -> Examples:
  """The examples numbered `indices`, in that order."""
  return {key: [column[i] for i in indices] if _is_ragged(column)
          else column[np.asarray(indices, np.int64)]
          for key, column in examples.items()}
