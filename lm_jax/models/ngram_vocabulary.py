"""The word list of a counted n-gram LM (`ngram.NGramLM`).

Ids are positions in the list; `<s>`, `</s>` and the unknown-word symbol
(`<unk>`, or NLTK's `<UNK>` for 'kn_nltk' models) are always present, and
an ARPA file's 1-grams, in file order, rebuild the same list.
"""

from __future__ import annotations

import collections
import itertools
from typing import Sequence

import numpy as np

BOS, EOS, UNK = '<s>', '</s>', '<unk>'
NLTK_UNK = '<UNK>'  # NLTK's unknown word ('kn_nltk' models)


class Vocabulary:
  """Words <-> ids, with `<s>`, `</s>` and `<unk>` always present.

  Args:
    words: every word, id = position; the three special symbols are added
      at the end if absent.
    unk: the symbol unknown words become (NLTK's is `<UNK>`).
  """

  def __init__(self, words: Sequence[str], unk: str = UNK):
    self.words = list(words)
    for special in (BOS, EOS, unk):
      if special not in self.words:
        self.words.append(special)
    self._index = {w: i for i, w in enumerate(self.words)}
    if len(self._index) != len(self.words):
      raise ValueError('duplicate words in the vocabulary')
    self.bos_id, self.eos_id, self.unk_id = (self._index[s]
                                             for s in (BOS, EOS, unk))

  @classmethod
  def from_sentences(cls, sentences: Sequence[Sequence[str]],
                     min_count: int = 1, unk: str = UNK) -> 'Vocabulary':
    """The specials, then the words of `sentences` in sorted order.

    A corpus that already contains `unk` as a word (PTB has `<unk>`) keeps
    it as that word: it is counted like any other.

    Args:
      sentences: the training sentences.
      min_count: words seen fewer times are left out, so that they become
        `unk` (NLTK's `unk_cutoff`).
      unk: the unknown-word symbol.
    """
    if min_count > 1:
      counts = collections.Counter(itertools.chain.from_iterable(sentences))
      seen = {w for w, c in counts.items() if c >= min_count}
    else:
      seen = set().union(*map(set, sentences)) if sentences else set()
    return cls([BOS, EOS, unk] + sorted(seen - {BOS, EOS, unk}), unk)

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, tokens: Sequence[str]) -> np.ndarray:
    """Words -> int64 `[len(tokens)]` ids; unknown words become `<unk>`."""
    get, unk = self._index.get, self.unk_id
    return np.fromiter((get(t, unk) for t in tokens), np.int64, len(tokens))

  def decode(self, ids: Sequence[int]) -> list[str]:
    return [self.words[int(i)] for i in ids]
