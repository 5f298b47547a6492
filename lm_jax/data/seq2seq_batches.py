"""Padded, length-bucketed batches of sentence pairs for sequence to
sequence models. Every batch is a dict of numpy arrays:

  inputs:         int32 `[batch, length]`, source ids, EOS, then PAD (0);
  decoder_inputs: int32 `[batch, length]`, BOS, the target ids, then PAD;
  targets:        int32 `[batch, length]`, the target ids, EOS, then PAD;
  weights:        float32 `[batch, length]`, 1 for real targets, else 0.

Both sides share one padded length, the sentence lengths rounded up to a
multiple of `bucket_width`, so only a few shapes are ever compiled; a batch
groups pairs of similar length so little of it is padding. Padding is id 0
(`SentencePieceTokenizer.PAD_ID`), which the models read as "no token".

The training stream is indexed by batch number, like `pipelines`: the
iterator state is one integer, and a resumed run sees exactly the batches
it would have seen, on any number of hosts (each keeps its own rows).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import grain
import numpy as np

PAD_ID = 0
_ENDLESS = 1 << 40  # effectively endless; grain's range is lazy


def padded_length(longest: int, bucket_width: int) -> int:
  """`longest` rounded up to a multiple of `bucket_width` (at least one)."""
  return max(-(-longest // bucket_width), 1) * bucket_width


def pad_pairs(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray],
              length: int, batch_size: int, bos_id: int, eos_id: int
              ) -> dict[str, np.ndarray]:
  """One batch of `batch_size` rows; rows past the pairs are all padding.

  Args:
    sources: each `[n]` source ids, without EOS; `n + 1 <= length`.
    targets: each `[m]` target ids, without BOS or EOS; `m + 1 <= length`.
    length: the padded length of both sides.
    batch_size: rows of the batch, `>= len(sources)`.
    bos_id: the decoder's first input.
    eos_id: ends each source and each target.
  """
  inputs = np.full((batch_size, length), PAD_ID, np.int32)
  decoder_inputs = np.full((batch_size, length), PAD_ID, np.int32)
  outputs = np.full((batch_size, length), PAD_ID, np.int32)
  for row, (src, tgt) in enumerate(zip(sources, targets)):
    inputs[row, :len(src)] = src
    inputs[row, len(src)] = eos_id
    decoder_inputs[row, 0] = bos_id
    decoder_inputs[row, 1:len(tgt) + 1] = tgt
    outputs[row, :len(tgt)] = tgt
    outputs[row, len(tgt)] = eos_id
  return {'inputs': inputs, 'decoder_inputs': decoder_inputs,
          'targets': outputs,
          'weights': (decoder_inputs != PAD_ID).astype(np.float32)}


def pad_sources(sources: Sequence[np.ndarray], batch_size: int,
                bucket_width: int, eos_id: int) -> np.ndarray:
  """int32 `[batch_size, length]` source ids with EOS, for decoding."""
  length = padded_length(max((len(s) + 1 for s in sources), default=1),
                         bucket_width)
  return pad_pairs(sources, [np.zeros(0, np.int32)] * len(sources), length,
                   batch_size, 0, eos_id)['inputs']


class BucketedPairs:
  """Batch number -> a training batch, in epochs of shuffled pairs.

  Epoch e shuffles the pairs with a generator seeded by (seed, e), sorts
  each pool of `pool_batches` batches' worth of pairs by length, cuts the
  pools into batches and shuffles the batches: similar lengths share a
  batch, yet every epoch's batches differ. Pairs longer than `max_length`
  (either side, EOS included) are left out; the last incomplete batch of an
  epoch is dropped, so every batch has `batch_size` real pairs.

  Args:
    sources: each `[n]` source ids (no EOS).
    targets: each `[m]` target ids (no BOS, no EOS).
    batch_size: global batch size.
    bucket_width: padded lengths are multiples of it.
    max_length: the longest side a training pair may have, EOS included.
    seed: stream seed.
    bos_id, eos_id: the special ids.
    rows: the rows of each global batch this host keeps.
    pool_batches: batches per sorted pool (larger: less padding, less
      randomness).
  """

  def __init__(self, sources: Sequence[np.ndarray],
               targets: Sequence[np.ndarray], batch_size: int,
               bucket_width: int, max_length: int, seed: int, bos_id: int,
               eos_id: int, rows: slice = slice(None), pool_batches: int = 32):
    lengths = np.array([max(len(s), len(t)) + 1
                        for s, t in zip(sources, targets)], np.int64)
    keep = np.flatnonzero(lengths <= max_length)
    if len(keep) < batch_size:
      raise ValueError(f'{len(keep)} pairs of at most {max_length} tokens '
                       f'are too few for a batch of {batch_size}')
    self.sources = [sources[i] for i in keep]
    self.targets = [targets[i] for i in keep]
    self.lengths = lengths[keep]
    self.batch_size, self.bucket_width = batch_size, bucket_width
    self.seed, self.rows, self.pool_batches = seed, rows, pool_batches
    self.bos_id, self.eos_id = bos_id, eos_id
    self._plan: tuple[int, np.ndarray] = (-1, np.zeros(0))

  @property
  def steps_per_epoch(self) -> int:
    return len(self.sources) // self.batch_size

  def epoch_plan(self, epoch: int) -> np.ndarray:
    """int `[steps_per_epoch, batch_size]` pair indices of each batch."""
    if self._plan[0] == epoch:
      return self._plan[1]
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(len(self.sources))
    order = order[:self.steps_per_epoch * self.batch_size]
    pool = self.pool_batches * self.batch_size
    for start in range(0, len(order), pool):
      chunk = order[start:start + pool]
      order[start:start + pool] = chunk[np.argsort(self.lengths[chunk],
                                                   kind='stable')]
    batches = order.reshape(self.steps_per_epoch, self.batch_size)
    plan = batches[rng.permutation(self.steps_per_epoch)]
    self._plan = (epoch, plan)
    return plan

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    epoch, step = divmod(batch_index, self.steps_per_epoch)
    indices = self.epoch_plan(epoch)[step]
    length = padded_length(int(self.lengths[indices].max()),
                           self.bucket_width)
    batch = pad_pairs([self.sources[i] for i in indices],
                      [self.targets[i] for i in indices], length,
                      self.batch_size, self.bos_id, self.eos_id)
    return {k: v[self.rows] for k, v in batch.items()}


def train_stream(pairs: BucketedPairs, prefetch: int = 4
                 ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of `pairs`' batches.

  `get_state()` / `set_state()` on the returned iterator save and restore
  its position (a JSON-serialisable dict).
  """
  dataset = grain.MapDataset.range(0, _ENDLESS).map(pairs)
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def eval_batches(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 batch_size: int, bucket_width: int, bos_id: int, eos_id: int,
                 rows: slice = slice(None),
                 num_batches: Optional[int] = None) -> Iterator[dict]:
  """Every pair once (or the first `num_batches` batches' worth), in order.

  Nothing is left out or cut: a batch is as long as its longest pair needs,
  and the last batch is filled up with all-padding rows of weight 0.
  """
  count = len(sources)
  if num_batches is not None:
    count = min(count, num_batches * batch_size)
  for start in range(0, count, batch_size):
    src = sources[start:min(start + batch_size, count)]
    tgt = targets[start:min(start + batch_size, count)]
    longest = max(max(len(s), len(t)) + 1 for s, t in zip(src, tgt))
    batch = pad_pairs(src, tgt, padded_length(longest, bucket_width),
                      batch_size, bos_id, eos_id)
    yield {k: v[rows] for k, v in batch.items()}
