"""Intrinsic evaluation of word vectors, and the word2vec text format.

- Word similarity (WordSim-353, SimLex-999): Spearman's rank correlation
  between the vectors' cosine similarities and the human scores, over the
  pairs whose two words are both in the vocabulary; coverage is the
  fraction of pairs that are.
- Analogies (Mikolov et al. 2013, `questions-words.txt`): a : b :: c : ?
  is answered by 3CosAdd, the word d maximising cos(d, b) - cos(d, a) +
  cos(d, c) among all words but a, b and c; accuracy is over the questions
  whose four words are in the vocabulary, coverage the fraction that are.

Words are matched case-insensitively, the most frequent spelling winning
(gensim's `case_insensitive=True`, as word2vec's compute-accuracy does by
upper-casing), so PTB's lower-case vocabulary answers `Athens Greece ...`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional, Sequence

import numpy as np

WS353, SIMLEX999, ANALOGIES = ('wordsim353.tsv', 'simlex999.txt',
                               'questions-words.txt')
# The analogy file's first five sections are semantic, the rest syntactic.
_SEMANTIC_SECTIONS = 5


def read_similarity_pairs(path: str) -> list[tuple[str, str, float]]:
  """`word1 TAB word2 TAB score` lines; `#` lines are comments."""
  pairs = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.startswith('#') or not line.strip():
        continue
      a, b, score = line.split('\t')[:3]
      pairs.append((a.strip(), b.strip(), float(score)))
  return pairs


def read_analogies(path: str) -> list[tuple[int, str, str, str, str]]:
  """`a b c d` questions as (section number, a, b, c, d); sections are
  opened by `: name` lines and numbered from 0."""
  questions, section = [], -1
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.startswith(':'):
        section += 1
      elif line.strip():
        a, b, c, d = line.split()
        questions.append((section, a, b, c, d))
  return questions


def rank(values: np.ndarray) -> np.ndarray:
  """Ranks from 1, tied values sharing their average rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind='stable')
  sorted_values = values[order]
  # Runs of equal values: each gets the mean of the ranks it spans.
  starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
  ends = np.r_[starts[1:], len(values)]
  mean_rank = (starts + ends + 1) / 2.0
  ranks = np.empty(len(values))
  ranks[order] = np.repeat(mean_rank, ends - starts)
  return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rho: the Pearson correlation of the (tie-averaged) ranks;
  NaN where a value is not finite (a diverged run's vectors), which ranks
  would otherwise place arbitrarily."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    return float('nan')
  rx, ry = rank(x), rank(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
  return float((rx * ry).sum() / denominator) if denominator else float('nan')


@dataclasses.dataclass
class WordVectors:
  """Words and their vectors, with cosine look-ups.

  Attributes:
    words: the vocabulary, most frequent first (ties to case folding go to
      the earlier word).
    vectors: float `[vocab, dim]`.
  """

  words: list[str]
  vectors: np.ndarray

  def __post_init__(self):
    self.vectors = np.asarray(self.vectors, np.float32)
    norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
    self.unit = self.vectors / np.maximum(norms, 1e-12)
    self.index = {w: i for i, w in enumerate(self.words)}
    self._folded = {}
    for i, w in enumerate(self.words):
      self._folded.setdefault(w.lower(), i)
    # Each id's case-folded id: the most frequent spelling of its word.
    self.folded_ids = np.array([self._folded[w.lower()] for w in self.words],
                               np.int64)

  def lookup(self, word: str, case_insensitive: bool = True
             ) -> Optional[int]:
    """The word's id, or None if it is not in the vocabulary."""
    if case_insensitive:
      return self._folded.get(word.lower())
    return self.index.get(word)

  def nearest(self, query: np.ndarray, k: int = 10,
              exclude: Iterable[int] = ()) -> list[tuple[str, float]]:
    """The `k` words of highest cosine similarity to `query` `[dim]`."""
    query = np.asarray(query, np.float32)
    scores = self.unit @ (query / max(np.linalg.norm(query), 1e-12))
    scores[list(exclude)] = -np.inf
    k = min(k, len(self.words))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind='stable')]
    return [(self.words[i], float(scores[i])) for i in top
            if np.isfinite(scores[i])]

  def save_word2vec_text(self, path: str) -> None:
    """word2vec's text format: `count dim`, then `word v1 ... vdim` lines
    (gensim's `KeyedVectors.load_word2vec_format` reads it)."""
    with open(path, 'w', encoding='utf-8') as f:
      f.write(f'{len(self.words)} {self.vectors.shape[1]}\n')
      for word, row in zip(self.words, self.vectors):
        f.write(word + ' ' + ' '.join(f'{v:.6g}' for v in row) + '\n')

  @classmethod
  def load_word2vec_text(cls, path: str) -> 'WordVectors':
    """Reads the word2vec text format."""
    with open(path, encoding='utf-8') as f:
      count, dim = (int(x) for x in f.readline().split())
      words, rows = [], np.zeros((count, dim), np.float32)
      for i in range(count):
        parts = f.readline().rstrip('\n').split(' ')
        words.append(parts[0])
        rows[i] = np.array(parts[1:1 + dim], np.float32)
    return cls(words, rows)


def evaluate_similarity(vectors: WordVectors,
                        pairs: Sequence[tuple[str, str, float]]
                        ) -> tuple[float, float]:
  """(Spearman rho, coverage) over the pairs whose words are both known."""
  ids = [(vectors.lookup(a), vectors.lookup(b), s) for a, b, s in pairs]
  known = [(i, j, s) for i, j, s in ids if i is not None and j is not None]
  if len(known) < 2:
    return float('nan'), len(known) / max(len(pairs), 1)
  i, j, gold = (np.array(x) for x in zip(*known))
  cosines = np.sum(vectors.unit[i] * vectors.unit[j], axis=1)
  return spearman(cosines, gold), len(known) / len(pairs)


def evaluate_analogies(vectors: WordVectors,
                       questions: Sequence[tuple[int, str, str, str, str]],
                       chunk: int = 1024) -> dict[str, float]:
  """3CosAdd accuracy over the covered questions.

  Returns:
    accuracy (NaN if no question is covered), coverage, and
    semantic_accuracy / syntactic_accuracy (the first five sections, the
    rest) over their covered questions, where some are.
  """
  rows = []
  for section, *words in questions:
    ids = [vectors.lookup(w) for w in words]
    if None not in ids:
      rows.append([section] + ids)
  out = {'coverage': len(rows) / max(len(questions), 1)}
  if not rows:
    return dict(out, accuracy=float('nan'))
  rows = np.array(rows)
  correct = np.zeros(len(rows), bool)
  for start in range(0, len(rows), chunk):
    section, a, b, c, d = rows[start:start + chunk].T
    target = vectors.unit[b] - vectors.unit[a] + vectors.unit[c]
    scores = target @ vectors.unit.T  # [chunk, vocab]
    # Case-insensitive as gensim's: no spelling of a question word is an
    # answer, and any spelling of d is right (question ids are folded).
    folded = vectors.folded_ids[None, :]
    for question_word in (a, b, c):
      scores[folded == question_word[:, None]] = -np.inf
    guess = vectors.folded_ids[scores.argmax(axis=1)]
    correct[start:start + chunk] = guess == d
  out['accuracy'] = float(correct.mean())
  semantic = rows[:, 0] < _SEMANTIC_SECTIONS
  for name, part in (('semantic', semantic), ('syntactic', ~semantic)):
    if part.any():
      out[f'{name}_accuracy'] = float(correct[part].mean())
  return out


def evaluate_all(vectors: WordVectors, directory: str) -> dict[str, float]:
  """WordSim-353, SimLex-999 and analogy figures of the sets present in
  `directory`, as flat names (`ws353_spearman`, `analogy_coverage`, ...)."""
  out = {}
  for name, filename in (('ws353', WS353), ('simlex999', SIMLEX999)):
    path = os.path.join(directory, filename)
    if os.path.exists(path):
      rho, coverage = evaluate_similarity(vectors, read_similarity_pairs(path))
      out[f'{name}_spearman'], out[f'{name}_coverage'] = rho, coverage
  path = os.path.join(directory, ANALOGIES)
  if os.path.exists(path):
    results = evaluate_analogies(vectors, read_analogies(path))
    out.update((f'analogy_{k}', v) for k, v in results.items())
  return out
