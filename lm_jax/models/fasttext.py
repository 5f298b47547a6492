"""fastText (Bojanowski et al. 2017): skip-gram over character n-grams.

A word is represented by its own input vector and those of its character
n-grams (3 to 6 characters of `<word>`, the angle brackets marking its
boundaries), each n-gram hashed with 32-bit FNV-1a into one of `buckets`
shared rows, exactly as fastText's `Dictionary::hash` and
`computeSubwords` do. The word's vector is the mean of those rows (fastText
averages them; the paper writes a sum, the same up to scale), and a word
never seen in training still has its n-grams, hence a vector.

Training is skip-gram with negative sampling: the centre word's composed
vector predicts each context word. Like fastText, the error of the mean is
added undivided to every row that formed it (see
`word2vec.mean_with_summed_gradient`). Initialisation is fastText's: input
rows uniform in [-1/dim, 1/dim], output vectors zero.

Input rows: row w < vocab_size is word w's own vector; row vocab_size + b is
hash bucket b.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.models.word2vec import (candidate_scores,
                                    mean_with_summed_gradient, scale_gradient,
                                    uniform_init, use_scale)

Array = jax.Array
BOW, EOW = '<', '>'
_FNV_OFFSET, _FNV_PRIME = 2166136261, 16777619


def fnv1a_32(strings: Sequence[str]) -> np.ndarray:
  """fastText's 32-bit FNV-1a hash of each string's UTF-8 bytes.

  Vectorised over the strings (one step per byte position). fastText XORs
  each byte as `uint32(int8(byte))`, so bytes >= 0x80 are sign-extended;
  for ASCII this is the standard FNV-1a.

  Returns:
    uint32 `[len(strings)]`.
  """
  encoded = [s.encode('utf-8') for s in strings]
  width = max((len(b) for b in encoded), default=0)
  padded = np.zeros((len(encoded), width), np.uint8)
  lengths = np.array([len(b) for b in encoded], np.int64)
  for i, b in enumerate(encoded):
    padded[i, :len(b)] = np.frombuffer(b, np.uint8)
  # int8 -> int32 sign-extends; viewing as uint32 wraps as C does.
  signed = padded.view(np.int8).astype(np.int32).view(np.uint32)
  h = np.full(len(encoded), _FNV_OFFSET, np.uint32)
  prime = np.uint32(_FNV_PRIME)
  for j in range(width):
    live = j < lengths
    h = np.where(live, (h ^ signed[:, j]) * prime, h)
  return h


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
  """The character n-grams of `<word>` with min_n <= n <= max_n, in
  fastText's order (by start position, then length).

  As in fastText, n-grams of one character are skipped where they would be
  a lone boundary marker, and the whole `<word>` is an n-gram when it is
  short enough.
  """
  marked = BOW + word + EOW
  grams = []
  for i in range(len(marked)):
    # From 1, as fastText: an empty "n-gram" would be one row every word
    # shares (min_n = max_n = 0 is fastText's "no subwords").
    for n in range(max(min_n, 1), max_n + 1):
      if i + n > len(marked):
        break
      if n == 1 and (i == 0 or i + n == len(marked)):
        continue
      grams.append(marked[i:i + n])
  return grams


def _bucket(grams: Sequence[str], buckets: int) -> np.ndarray:
  """int64 `[len(grams)]`: each n-gram's hash bucket."""
  if grams and buckets < 1:  # numpy's x % 0 is 0, with a warning only
    raise ValueError(f'character n-grams need fasttext_buckets >= 1, not '
                     f'{buckets}')
  return fnv1a_32(grams).astype(np.int64) % max(buckets, 1)


def subword_rows(word: str, vocab_size: int, buckets: int, min_n: int = 3,
                 max_n: int = 6, word_id: Optional[int] = None
                 ) -> np.ndarray:
  """The input rows of a word: its own (if in the vocabulary) and its
  hashed n-grams'.

  Returns:
    int32 `[rows]`.
  """
  grams = char_ngrams(word, min_n, max_n)
  rows = vocab_size + _bucket(grams, buckets)
  own = [] if word_id is None else [word_id]
  return np.concatenate([np.array(own, np.int64), rows]).astype(np.int32)


def subword_table(words: Sequence[str], buckets: int, min_n: int = 3,
                  max_n: int = 6) -> tuple[np.ndarray, np.ndarray]:
  """Every vocabulary word's input rows, flattened.

  Returns:
    (rows, owners): int32 `[total]` input rows and the word each belongs
    to, grouped by word.
  """
  grams = [char_ngrams(w, min_n, max_n) for w in words]
  flat = [g for gs in grams for g in gs]
  hashed = len(words) + _bucket(flat, buckets)
  counts = np.array([len(gs) for gs in grams], np.int64)
  # Each word's own row first, then its n-grams'.
  starts = np.concatenate([[0], np.cumsum(counts + 1)[:-1]])
  rows = np.empty(int((counts + 1).sum()), np.int64)
  rows[starts] = np.arange(len(words))
  is_gram = np.ones(len(rows), bool)
  is_gram[starts] = False
  rows[is_gram] = hashed
  owners = np.repeat(np.arange(len(words)), counts + 1)
  return rows.astype(np.int32), owners.astype(np.int32)


class FastText(nn.Module):
  """Word vectors composed of hashed character n-gram vectors.

  Attributes:
    vocab_size: number of words.
    buckets: number of n-gram hash buckets.
    dim: vector size.
    rows: int32 `[total]`, every word's input rows (`subword_table`).
    owners: int32 `[total]`, the word each of `rows` belongs to.
    max_row_uses: caps the uses summed in an input row's or an output
      vector's gradient (`word2vec.gather_rows`); 0 for none.
  """

  vocab_size: int
  buckets: int
  dim: int
  rows: Any
  owners: Any
  max_row_uses: float = 0.0

  def setup(self):
    self.input_vectors = self.param(
        'input_vectors', uniform_init(1.0 / self.dim),
        (self.vocab_size + self.buckets, self.dim))
    self.output_vectors = self.param(
        'output_vectors', nn.initializers.zeros, (self.vocab_size, self.dim))

  def embeddings(self, inputs: Optional[Array] = None) -> Array:
    """Every vocabulary word's vector `[vocab, dim]`: the mean of its rows.

    The whole vocabulary is composed at once (a gather and a segment sum
    over all its n-grams), which costs the same whatever the batch.

    Args:
      inputs: int `[batch]`, the batch's input words; with `max_row_uses`,
        they set each row's number of uses: an n-gram row is used once for
        every use of every word that contains it.
    """
    rows, owners = jnp.asarray(self.rows), jnp.asarray(self.owners)
    vectors = self.input_vectors[rows]
    if self.max_row_uses and inputs is not None:
      word_uses = jnp.zeros(self.vocab_size).at[inputs.reshape(-1)].add(1.0)
      row_uses = jnp.zeros(self.input_vectors.shape[0]).at[rows].add(
          word_uses[owners])
      vectors = scale_gradient(
          vectors, use_scale(row_uses, self.max_row_uses)[rows][:, None])
    total = jax.ops.segment_sum(vectors, owners, num_segments=self.vocab_size,
                                indices_are_sorted=True)
    # Counted here rather than in the graph, where XLA would spend seconds
    # constant-folding a scatter of constants.
    count = np.bincount(np.asarray(self.owners), minlength=self.vocab_size)
    return mean_with_summed_gradient(total, jnp.asarray(count, jnp.float32))

  def compose(self, rows: Array) -> Array:
    """The vector of any word from its input rows `[n]` (`subword_rows`):
    `[dim]`."""
    return self.input_vectors[rows].mean(axis=0)

  def __call__(self, inputs: Array, targets: Optional[Array] = None,
               negatives: Optional[Array] = None):
    """Scores of the true and noise words, or the input words' vectors.

    Args:
      inputs: int `[batch]` input (centre) words.
      targets: int `[batch]` words to predict (context words).
      negatives: int `[groups, negatives]` noise words
        (`word2vec.candidate_scores`).

    Returns:
      (`[batch]`, `[batch, negatives]`) scores, or `[batch, dim]` vectors
      when no targets are given.
    """
    h = self.embeddings(inputs)[inputs]
    if targets is None:
      return h
    return candidate_scores(h, self.output_vectors, targets, negatives,
                            self.max_row_uses)
