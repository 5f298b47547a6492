"""Masked-LM data: sentences packed into BERT inputs, and BERT's corruption.

Packing: each corpus's sentences, in order, fill sequences of at most
`length` ids, [CLS] pieces [SEP]; a sentence that does not fit starts the
next sequence, and one longer than a whole sequence is cut into pieces. So
sequences hold whole sentences (the "full sentences" inputs of RoBERTa, Liu et
al. 2019, without next-sentence pairs) and little padding.

Corruption (Devlin et al. 2019, section 3.1 and appendix A.1; after
Google's `create_pretraining_data.py`): in each sequence, 15% (rounded half
up) of the tokens that are not special (at least one, at most
`max_predictions`) are chosen as targets; of those, 80% become [MASK], 10%
a random non-special token and 10% stay as they are. With whole-word
masking, words (a piece and its `##` continuations) are chosen instead, in
random order, skipping any word that would overshoot the budget, so a word
is masked whole or not at all. Where Google's script differs: it counts
15% of all the tokens, [CLS] and [SEP] included (with Python's `round`),
draws the random replacements from the whole vocabulary (special tokens
too), may choose [UNK] as a target (here it is special, never chosen), and
masks the data once, into `dupe_factor` copies, where `MaskedBatches`
masks anew every epoch.

Every batch is a dict of numpy arrays:
  inputs: int32 `[batch, length]` corrupted ids, padded with [PAD];
  lengths: int32 `[batch]` real tokens per row (0 for filler rows);
  mlm_positions: int32 `[batch, max_predictions]` the targets' positions;
  mlm_targets: int32 `[batch, max_predictions]` their original ids;
  mlm_weights: float32 `[batch, max_predictions]` 1 for a target, 0 for
    the unused slots.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence

import grain
import numpy as np

_ENDLESS = 1 << 40  # effectively endless; grain's range is lazy
# Streams are seeded by [seed, purpose, index]. The purpose is never 0 and
# every key has three parts because numpy pads a short entropy list with
# zeros: [seed, e] and [seed, e, 0] would be one and the same generator.
_TRAIN_MASKS, _EVAL_MASKS, _ORDER = 1, 2, 3


def pack_sentences(sentences: Iterable[np.ndarray], length: int, cls_id: int,
                   sep_id: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Greedy packing of whole sentences into [CLS] ... [SEP] sequences.

  Args:
    sentences: int `[n_i]` piece ids of each sentence, in order (empty ones
      are skipped).
    length: ids per sequence, [CLS] and [SEP] included.
    cls_id, sep_id, pad_id: the special tokens' ids.

  Returns:
    int32 `[num_sequences, length]` ids padded with `pad_id`, and int32
    `[num_sequences]` their lengths.
  """
  room = length - 2
  if room < 1:
    raise ValueError(f'sequences of {length} ids leave no room for text')
  rows, current = [], []
  for ids in sentences:
    ids = list(ids)
    if current and len(current) + len(ids) > room:
      rows.append(current)
      current = []
    while len(ids) > room:  # a sentence longer than a sequence is cut
      rows.append(ids[:room])
      ids = ids[room:]
    current += ids
  if current:
    rows.append(current)
  out = np.full((len(rows), length), pad_id, np.int32)
  lengths = np.zeros(len(rows), np.int32)
  for r, ids in enumerate(rows):
    out[r, :len(ids) + 2] = [cls_id, *ids, sep_id]
    lengths[r] = len(ids) + 2
  return out, lengths


@dataclasses.dataclass(frozen=True)
class Masking:
  """How targets are chosen and corrupted.

  Attributes:
    mask_id: the [MASK] id.
    special: bool `[vocab]`, True for ids never chosen ([CLS], [SEP],
      [PAD], ...).
    continuation: bool `[vocab]`, True for `##` pieces (whole-word masking
      only).
    max_predictions: targets per sequence at most (the slots of a batch).
    rate: the share of a sequence's tokens chosen.
    mask_prob: the share of targets replaced by [MASK].
    random_prob: the share replaced by a random non-special token.
    whole_word: choose whole words.
  """

  mask_id: int
  special: np.ndarray
  continuation: Optional[np.ndarray] = None
  max_predictions: int = 20
  rate: float = 0.15
  mask_prob: float = 0.8
  random_prob: float = 0.1
  whole_word: bool = False

  def budget(self, candidates: np.ndarray) -> np.ndarray:
    """int `[batch]`: targets per row, from its `[batch, length]` bool
    candidate positions."""
    n = candidates.sum(axis=1)
    chosen = np.maximum(np.floor(n * self.rate + 0.5), 1).astype(np.int64)
    return np.where(n > 0, np.minimum(chosen, self.max_predictions), 0)

  def _choose_tokens(self, candidates, budget, rng):
    """`[batch, slots]` positions, each row's first `budget` of them
    chosen (its candidates in random order), and those counts."""
    scores = np.where(candidates, rng.random(candidates.shape), 2.0)
    slots = min(self.max_predictions, candidates.shape[1])
    return np.argsort(scores, axis=1, kind='stable')[:, :slots], budget

  def _choose_words(self, ids, candidates, budget, rng):
    """As `_choose_tokens`, whole words at a time (the counts may fall
    short of the budget where no remaining word fits)."""
    slots = min(self.max_predictions, candidates.shape[1])
    chosen = np.zeros((len(ids), slots), np.int64)
    counts = np.zeros(len(ids), np.int64)
    for r in range(len(ids)):
      positions = np.flatnonzero(candidates[r])
      if not len(positions):
        continue
      # A word starts at a piece without `##` or after a non-candidate.
      starts = (~self.continuation[ids[r, positions]]
                | (np.diff(positions, prepend=-2) != 1))
      words = np.split(positions, np.flatnonzero(starts)[1:])
      picked = []
      for w in rng.permutation(len(words)):
        if len(picked) >= budget[r]:
          break
        if len(picked) + len(words[w]) <= budget[r]:
          picked.extend(words[w])
      chosen[r, :len(picked)] = sorted(picked)
      counts[r] = len(picked)
    return chosen, counts

  def __call__(self, ids: np.ndarray, lengths: np.ndarray,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Corrupts a batch.

    Args:
      ids: int `[batch, length]` clean ids.
      lengths: int `[batch]` real tokens per row.
      rng: the draws' generator.

    Returns:
      The batch (module docstring).
    """
    ids = np.asarray(ids, np.int32)
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    candidates = valid & ~self.special[ids]
    budget = self.budget(candidates)
    if self.whole_word:
      positions, counts = self._choose_words(ids, candidates, budget, rng)
    else:
      positions, counts = self._choose_tokens(candidates, budget, rng)
    live = np.arange(positions.shape[1])[None, :] < counts[:, None]
    positions = np.where(live, positions, 0)
    rows = np.arange(len(ids))[:, None]
    targets = np.where(live, ids[rows, positions], 0)
    u = rng.random(positions.shape)
    random_ids = np.flatnonzero(~self.special)
    replaced = np.where(
        u < self.mask_prob, self.mask_id,
        np.where(u < self.mask_prob + self.random_prob,
                 rng.choice(random_ids, positions.shape), targets))
    inputs = ids.copy()
    r, slot = np.nonzero(live)
    inputs[r, positions[r, slot]] = replaced[r, slot]
    if self.max_predictions > positions.shape[1]:
      pad = ((0, 0), (0, self.max_predictions - positions.shape[1]))
      positions, targets, live = (np.pad(x, pad) for x in
                                  (positions, targets, live))
    return {'inputs': inputs, 'lengths': np.asarray(lengths, np.int32),
            'mlm_positions': positions.astype(np.int32),
            'mlm_targets': targets.astype(np.int32),
            'mlm_weights': live.astype(np.float32)}


class MaskedBatches:
  """Batch number -> masked training batch, in epochs of packed sequences.

  Batch k is batch k mod steps_per_epoch of a permutation drawn from (seed,
  epoch); its corruption is drawn from (seed, k), independent of every
  epoch's order, so a resumed run sees the same batches, and every epoch
  masks each sequence anew (RoBERTa's dynamic masking).

  Args:
    sequences: int32 `[n, length]` packed ids.
    lengths: int32 `[n]`.
    masking: the corruption.
    batch_size: global batch size.
    seed: stream seed.
    rows: the rows of each global batch this host keeps.
  """

  def __init__(self, sequences: np.ndarray, lengths: np.ndarray,
               masking: Masking, batch_size: int, seed: int,
               rows: slice = slice(None)):
    if len(sequences) < batch_size:
      raise ValueError(f'{len(sequences)} sequences are too few for batches '
                       f'of {batch_size}')
    self.sequences, self.lengths = sequences, lengths
    self.masking, self.batch_size = masking, batch_size
    self.seed, self.rows = seed, rows

  @property
  def steps_per_epoch(self) -> int:
    return len(self.sequences) // self.batch_size

  def __call__(self, batch_number: int) -> dict[str, np.ndarray]:
    epoch, step = divmod(int(batch_number), self.steps_per_epoch)
    order = np.random.default_rng([self.seed, _ORDER, epoch]).permutation(
        len(self.sequences))
    picked = order[step * self.batch_size:(step + 1) * self.batch_size]
    rng = np.random.default_rng([self.seed, _TRAIN_MASKS, batch_number])
    batch = self.masking(self.sequences[picked], self.lengths[picked], rng)
    return {k: v[self.rows] for k, v in batch.items()}


def train_stream(batches: MaskedBatches, prefetch: int = 4
                 ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of `batches`' batches."""
  dataset = grain.MapDataset.range(0, _ENDLESS).map(batches)
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def eval_batches(sequences: np.ndarray, lengths: np.ndarray, masking: Masking,
                 batch_size: int, seed: int, rows: slice = slice(None),
                 max_batches: int = 0) -> list[dict]:
  """Every sequence once (or a fixed sample of `max_batches` batches),
  corrupted the same way at every call; the last batch is filled with empty
  rows, whose targets have weight 0."""
  chosen = np.arange(len(sequences))
  if 0 < max_batches and max_batches * batch_size < len(chosen):
    chosen = np.sort(np.random.default_rng(seed).choice(
        len(chosen), max_batches * batch_size, replace=False))
  sequences, lengths, n = sequences[chosen], lengths[chosen], len(chosen)
  batches = []
  for b, start in enumerate(range(0, n, batch_size)):
    ids = np.zeros((batch_size, sequences.shape[1]), np.int32)
    size = np.zeros(batch_size, np.int32)
    stop = min(start + batch_size, n)
    ids[:stop - start], size[:stop - start] = (sequences[start:stop],
                                               lengths[start:stop])
    batch = masking(ids, size, np.random.default_rng([seed, _EVAL_MASKS, b]))
    batches.append({k: v[rows] for k, v in batch.items()})
  return batches


def sentences_to_sequences(tokenized: Sequence[Sequence[np.ndarray]],
                           length: int, cls_id: int, sep_id: int, pad_id: int
                           ) -> tuple[np.ndarray, np.ndarray]:
  """`pack_sentences` of each corpus apart (no sequence spans two corpora),
  concatenated."""
  packed = [pack_sentences(c, length, cls_id, sep_id, pad_id)
            for c in tokenized]
  return (np.concatenate([p[0] for p in packed]),
          np.concatenate([p[1] for p in packed]))
