"""Training data of static word embeddings, built with vectorised numpy.

word2vec and fastText train on (centre, context) pairs drawn the way
word2vec.c and gensim draw them: frequent words are first subsampled
(Mikolov et al. 2013, keep probability `(sqrt(f / t) + 1) * t / f` for a
word of corpus frequency f and threshold t), then every remaining word is a
centre whose window radius is drawn uniformly from 1..window ("dynamic
window"), and windows never cross a sentence (line) boundary. Negatives come
from the unigram distribution raised to a power (0.75 in word2vec).

GloVe trains on the entries of a word-word co-occurrence matrix, each
co-occurrence at distance d counted as 1/d (Pennington et al. 2014).

Batches are dicts of numpy arrays (shapes per global batch `[batch, ...]`):

  word2vec skip-gram / fastText:
    inputs:    int32 `[batch]`, the word whose input vector is used;
    targets:   int32 `[batch]`, the word to predict;
    weights:   float32 `[batch]`, 1 for real examples, 0 for padding;
    negatives: int32 `[batch // share, negatives]`, noise words, each row
      shared by `share` consecutive examples (1: each its own).
  word2vec CBOW: as skip-gram, but inputs `[batch, 2 * window]` (the
    window's words, padded) with `input_mask` float32 `[batch, 2 * window]`.
  GloVe:
    inputs, contexts: int32 `[batch]`, a matrix entry's row and column;
    counts: float32 `[batch]`, its weighted co-occurrence count X_ij;
    weights: float32 `[batch]`, 0 for padding.

Streams are indexed by batch number: epoch e is built from a generator
seeded by (seed, e) and cut into `steps_per_epoch` batches, and the
negatives of batch b come from (seed, b), so any batch can be rebuilt
without replaying the ones before it and the iterator state is one integer.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import grain
import numpy as np

# Effectively endless; grain's range is lazy.
_ENDLESS = 1 << 40
# Seed-stream tags, so that epochs and negatives never share a generator.
_EPOCH, _NEGATIVES, _ORDER = 0, 1, 2
# Cells of the co-occurrence matrix summed at once (128 MiB of float64).
_BLOCK_CELLS = 1 << 24


def split_sentences(text: str) -> list[list[str]]:
  """Text -> its lines as lists of white-space separated words."""
  return [line.split() for line in text.split('\n')]


@dataclasses.dataclass
class WordVocabulary:
  """The words kept for training, most frequent first.

  Attributes:
    words: the words; a word's id is its position.
    counts: int64 `[vocab]`, each word's count in the training text.
  """

  words: list[str]
  counts: np.ndarray

  def __post_init__(self):
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def from_sentences(cls, sentences: Sequence[Sequence[str]],
                     min_count: int = 5, max_size: int = 0
                     ) -> 'WordVocabulary':
    """Words seen at least `min_count` times, by descending count; ties in
    order of first appearance (gensim's order).

    Args:
      sentences: the training sentences.
      min_count: rarer words are dropped from the text, as word2vec does.
      max_size: > 0 keeps only that many of the most frequent words.
    """
    counts = collections.Counter()
    for sentence in sentences:
      counts.update(sentence)
    # Counter keeps first-appearance order, and sorted() is stable.
    kept = sorted((item for item in counts.items() if item[1] >= min_count),
                  key=lambda item: -item[1])
    if max_size > 0:
      kept = kept[:max_size]
    if not kept:
      raise ValueError(f'no word occurs {min_count} times; lower min_count')
    return cls([w for w, _ in kept], np.array([c for _, c in kept], np.int64))

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, sentences: Sequence[Sequence[str]]) -> 'EncodedCorpus':
    """The sentences as one id stream, out-of-vocabulary words dropped
    (word2vec and gensim drop them before drawing windows)."""
    lengths = np.array([len(s) for s in sentences], np.int64)
    ids = np.fromiter((self.index.get(w, -1) for s in sentences for w in s),
                      np.int64, count=int(lengths.sum()))
    sentence_ids = np.repeat(np.arange(len(sentences)), lengths)
    known = ids >= 0
    return EncodedCorpus(ids[known].astype(np.int32), sentence_ids[known])


@dataclasses.dataclass
class EncodedCorpus:
  """A corpus as word ids.

  Attributes:
    ids: int32 `[tokens]`, the in-vocabulary words in order.
    sentence_ids: int64 `[tokens]`, non-decreasing: the sentence of each.
  """

  ids: np.ndarray
  sentence_ids: np.ndarray


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
  """Mikolov's subsampling: the probability of keeping each word.

  `(sqrt(f / t) + 1) * t / f`, capped at 1, for a word of frequency
  f = count / total and threshold t = `sample`; word2vec.c and gensim use
  this form (the paper's 1 - sqrt(t / f) is its approximation). 0 keeps all.

  Args:
    counts: `[vocab]` word counts of the training text.
    sample: the threshold t (word2vec's -sample, 1e-3 by default).

  Returns:
    float64 `[vocab]` keep probabilities.
  """
  if sample <= 0:
    return np.ones(len(counts))
  frequency = counts / counts.sum()
  return np.minimum((np.sqrt(frequency / sample) + 1) * sample / frequency,
                    1.0)


class NoiseSampler:
  """Draws words from unigram counts ** `power` by Walker's alias method.

  Exact (no table quantisation, unlike word2vec.c's 1e8-entry table) and
  O(1) per draw: a uniform slot, then a biased coin between the slot's word
  and its alias.

  Args:
    counts: `[vocab]` word counts.
    power: the exponent (0.75 in word2vec, 0.5 in fastText).
  """

  def __init__(self, counts: np.ndarray, power: float = 0.75):
    weights = np.power(counts.astype(np.float64), power)
    self.probs = weights / weights.sum()
    n = len(weights)
    scaled = self.probs * n
    self.accept = np.ones(n)
    self.alias = np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    # Vose's construction: a loop over the vocabulary, once.
    while small and large:
      s, l = small.pop(), large[-1]
      self.accept[s], self.alias[s] = scaled[s], l
      scaled[l] -= 1.0 - scaled[s]
      if scaled[l] < 1.0:
        small.append(large.pop())

  def __call__(self, rng: np.random.Generator, shape: tuple[int, ...]
               ) -> np.ndarray:
    """int32 word ids of `shape`."""
    slots = rng.integers(0, len(self.accept), size=shape)
    coin = rng.random(shape)
    return np.where(coin < self.accept[slots], slots,
                    self.alias[slots]).astype(np.int32)


def subsample(corpus: EncodedCorpus, keep: np.ndarray,
              rng: np.random.Generator) -> EncodedCorpus:
  """The corpus with each token kept with probability `keep[word]`."""
  kept = rng.random(len(corpus.ids)) < keep[corpus.ids]
  return EncodedCorpus(corpus.ids[kept], corpus.sentence_ids[kept])


def window_pairs(sentence_ids: np.ndarray, radius: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Every (centre, context) position pair of dynamic windows.

  Position j is a context of centre i when 0 < |i - j| <= radius[i] and
  both are in the same sentence. One vectorised pass per offset, none per
  token.

  Args:
    sentence_ids: `[tokens]` non-decreasing sentence of each token.
    radius: int `[tokens]`, each centre's window radius (>= 1).

  Returns:
    (centres, contexts): int64 `[pairs]` positions, grouped by offset.
  """
  n = len(sentence_ids)
  centres, contexts = [], []
  for d in range(1, int(radius.max(initial=0)) + 1):
    if d >= n:
      break
    left = np.arange(n - d)  # pairs (left, left + d)
    same = sentence_ids[:-d] == sentence_ids[d:]
    # The left token as centre sees its right neighbour, and vice versa.
    for centre, context in ((left, left + d), (left + d, left)):
      ok = same & (radius[centre] >= d)
      centres.append(centre[ok])
      contexts.append(context[ok])
  if not centres:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  return np.concatenate(centres), np.concatenate(contexts)


def cbow_windows(sentence_ids: np.ndarray, radius: np.ndarray, window: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Each centre's dynamic window as a padded row of context positions.

  Args:
    sentence_ids: `[tokens]` non-decreasing sentence of each token.
    radius: int `[tokens]`, each centre's window radius in 1..window.
    window: the largest radius.

  Returns:
    (centres `[n]`, contexts `[n, 2 * window]`, mask `[n, 2 * window]`) for
    the centres with at least one context; padded slots hold position 0
    and mask 0.
  """
  n = len(sentence_ids)
  offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
  positions = np.arange(n)[:, None] + offsets
  inside = (positions >= 0) & (positions < n)
  positions = np.where(inside, positions, 0)
  mask = (inside & (sentence_ids[positions] == sentence_ids[:, None])
          & (np.abs(offsets) <= radius[:, None]))
  has_context = mask.any(axis=1)
  return (np.flatnonzero(has_context),
          np.where(mask, positions, 0)[has_context], mask[has_context])


class Word2VecBatches:
  """Batch number -> a batch of word2vec / fastText training examples.

  Epoch e subsamples the corpus, draws every centre's window radius and
  shuffles the resulting examples, all from a generator seeded by
  (seed, e); the epoch is then cut into `steps_per_epoch` batches, a number
  fixed by epoch 0. The example count varies a little from epoch to epoch
  (0.1% on PTB), so a training epoch is cut or cycled to exactly that many
  full batches; an exact pass (`cycle=False`, for evaluation) instead pads
  its last batch with zero-weight rows.

  Args:
    corpus: the encoded training text.
    keep: `[vocab]` subsampling keep probabilities (`keep_probabilities`).
    noise: the negatives' distribution (`NoiseSampler`).
    window: the largest window radius.
    negatives: negatives per example.
    batch_size: global batch size (examples).
    seed: stream seed.
    cbow: CBOW examples (the window's words predict the centre) instead of
      skip-gram pairs.
    centre_is_input: skip-gram pairs read the centre's input vector and
      predict the context (fastText), rather than the reverse (word2vec.c
      and gensim read the context's and predict the centre).
    share_negatives: consecutive examples that share one draw of noise
      words (1: each its own, as word2vec.c draws them).
    cycle: fill every batch of every epoch by cycling through the epoch's
      examples (training), rather than padding the last (exact passes).
  """

  def __init__(self, corpus: EncodedCorpus, keep: np.ndarray,
               noise: NoiseSampler,
               window: int, negatives: int, batch_size: int, seed: int,
               cbow: bool = False, centre_is_input: bool = False,
               share_negatives: int = 1, cycle: bool = True):
    if batch_size % share_negatives:
      raise ValueError(f'batch_size {batch_size} must divide by '
                       f'share_negatives {share_negatives}')
    self.corpus, self.keep, self.noise = corpus, keep, noise
    self.window, self.negatives = window, negatives
    self.batch_size, self.seed = batch_size, seed
    self.cbow, self.centre_is_input = cbow, centre_is_input
    self.share_negatives, self.cycle = share_negatives, cycle
    first = self._build_epoch(0)
    self.examples_per_epoch = len(first[0])
    if not self.examples_per_epoch:
      raise ValueError('the corpus yields no training pairs (sentences of '
                       'one word?)')
    self.steps_per_epoch = -(-self.examples_per_epoch // batch_size)
    # (epoch, its examples): one epoch is kept, as batches come in order.
    self._cached = (0, self._fit(first))

  def epoch(self, epoch: int) -> tuple[np.ndarray, ...]:
    """The shuffled examples of one epoch: (inputs, true words[, mask])."""
    if self._cached[0] != epoch:
      self._cached = (epoch, self._fit(self._build_epoch(epoch)))
    return self._cached[1]

  def _fit(self, examples: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    if not self.cycle:
      return examples
    size = self.steps_per_epoch * self.batch_size
    # np.resize repeats an array cyclically (or cuts it) to the size.
    return tuple(np.resize(a, (size,) + a.shape[1:]) for a in examples)

  def _build_epoch(self, epoch: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([self.seed, _EPOCH, epoch])
    kept = subsample(self.corpus, self.keep, rng)
    # word2vec.c: b = rand() % window, radius = window - b, so 1..window.
    radius = rng.integers(1, self.window + 1, size=len(kept.ids))
    if self.cbow:
      centres, contexts, mask = cbow_windows(kept.sentence_ids, radius,
                                             self.window)
      order = rng.permutation(len(centres))
      return (kept.ids[contexts[order]], kept.ids[centres[order]],
              mask[order].astype(np.float32))
    centres, contexts = window_pairs(kept.sentence_ids, radius)
    if self.centre_is_input:
      centres, contexts = contexts, centres
    order = rng.permutation(len(centres))
    # inputs: the word read; truth: the word predicted.
    return kept.ids[contexts[order]], kept.ids[centres[order]]

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    epoch, step = divmod(int(batch_index), self.steps_per_epoch)
    arrays = self.epoch(epoch)
    start = step * self.batch_size
    chunk = [a[start:start + self.batch_size] for a in arrays]
    real = len(chunk[0])
    if real < self.batch_size:  # the end of an epoch: zero-weight padding
      chunk = [np.concatenate([c, np.zeros((self.batch_size - real,)
                                           + c.shape[1:], c.dtype)])
               for c in chunk]
    rng = np.random.default_rng([self.seed, _NEGATIVES, int(batch_index)])
    groups = self.batch_size // self.share_negatives
    batch = {'inputs': chunk[0].astype(np.int32),
             'targets': chunk[1].astype(np.int32),
             'weights': (np.arange(self.batch_size) < real).astype(np.float32),
             'negatives': self.noise(rng, (groups, self.negatives))}
    if self.cbow:
      batch['input_mask'] = chunk[2]
    return batch


def cooccurrence(corpus: EncodedCorpus, vocab_size: int, window: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """GloVe's symmetric co-occurrence matrix with 1/distance weighting.

  Two words d <= `window` positions apart in one sentence add 1/d to both
  X[a, b] and X[b, a] (as GloVe's cooccur.c does with -symmetric 1).

  Returns:
    (rows, cols, values): the non-zero entries, sorted by (row, col);
    int32, int32, float64 `[entries]`.
  """
  ids, sentences = corpus.ids.astype(np.int64), corpus.sentence_ids
  keys, values = [], []
  for d in range(1, window + 1):
    if d >= len(ids):
      break
    same = sentences[:-d] == sentences[d:]
    a, b = ids[:-d][same], ids[d:][same]
    keys += [a * vocab_size + b, b * vocab_size + a]
    values.append(np.full(2 * len(a), 1.0 / d))
  if not keys:
    empty = np.zeros(0, np.int32)
    return empty, empty, np.zeros(0)
  keys, values = np.concatenate(keys), np.concatenate(values)
  # Summed by np.bincount over blocks of rows: a dense vocab x vocab
  # accumulator would not fit, and sorting all the keys is several times
  # slower than one stable (radix) sort of their small block numbers.
  block = max(1, _BLOCK_CELLS // vocab_size) * vocab_size
  num_blocks = -(-vocab_size * vocab_size // block)
  block_of = (keys // block).astype(np.uint16 if num_blocks < 1 << 16
                                    else np.int64)
  order = np.argsort(block_of, kind='stable')
  keys, values = keys[order], values[order]
  bounds = np.searchsorted(block_of[order], np.arange(num_blocks + 1))
  rows, cols, totals = [], [], []
  for b in range(num_blocks):
    start, (lo, hi) = b * block, bounds[b:b + 2]
    if lo == hi:
      continue
    sums = np.bincount(keys[lo:hi] - start, weights=values[lo:hi],
                       minlength=block)
    cells = np.flatnonzero(sums)
    rows.append((cells + start) // vocab_size)
    cols.append((cells + start) % vocab_size)
    totals.append(sums[cells])
  return (np.concatenate(rows).astype(np.int32),
          np.concatenate(cols).astype(np.int32), np.concatenate(totals))


class CooccurrenceBatches:
  """Batch number -> a batch of co-occurrence entries, shuffled per epoch.

  Args:
    rows, cols, values: the matrix's non-zero entries (`cooccurrence`).
    batch_size: global batch size (entries).
    seed: stream seed; None keeps the entries in their order (exact passes).
  """

  def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
               batch_size: int, seed: Optional[int]):
    if not len(rows):
      raise ValueError('the co-occurrence matrix is empty')
    self.entries = (rows, cols, values.astype(np.float32))
    self.batch_size, self.seed = batch_size, seed
    self.steps_per_epoch = -(-len(rows) // batch_size)
    self._cached = (None, None)  # (epoch, its order)

  def order(self, epoch: int) -> np.ndarray:
    """The entries' order in `epoch`."""
    if self._cached[0] != epoch:
      n = len(self.entries[0])
      order = (np.arange(n) if self.seed is None else
               np.random.default_rng([self.seed, _ORDER, epoch]).permutation(n))
      self._cached = (epoch, order)
    return self._cached[1]

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    epoch, step = divmod(int(batch_index), self.steps_per_epoch)
    take = self.order(epoch)[step * self.batch_size:
                             (step + 1) * self.batch_size]
    pad = self.batch_size - len(take)
    rows, cols, values = (np.pad(a[take], (0, pad)) for a in self.entries)
    weights = np.pad(np.ones(len(take), np.float32), (0, pad))
    # Padding gets count 1 so that log X stays finite; its weight is 0.
    values[len(take):] = 1.0
    return {'inputs': rows, 'contexts': cols, 'counts': values,
            'weights': weights}


class HostRows:
  """`batches(i)` cut to the rows of the global batch this host keeps.

  Every host builds the whole global batch (its negatives are drawn for all
  rows at once, so they do not depend on the host count) and keeps its own
  share of each array: an array of fewer rows than the batch (negatives
  shared by groups of examples) is cut in proportion.
  """

  def __init__(self, batches, rows: slice = slice(None)):
    self.batches, self.rows = batches, rows

  def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
    batch = self.batches(batch_index)
    if self.rows == slice(None):
      return batch
    size = self.batches.batch_size
    return {k: v[self.rows.start * len(v) // size:
                 self.rows.stop * len(v) // size] for k, v in batch.items()}


def stream(batches, rows: slice = slice(None)) -> grain.DatasetIterator:
  """An endless, checkpointable iterator over `batches(0), batches(1), ...`
  (this host's `rows` of each).

  `get_state()` / `set_state()` save and restore its position.
  """
  dataset = grain.MapDataset.range(0, _ENDLESS).map(HostRows(batches, rows))
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)))
