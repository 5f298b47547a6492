"""Tokenizers behind one interface: text <-> int32 ids, saved as JSON.

A run saves its tokenizer to `workdir/tokenizer.json`, so sampling and
evaluation need neither the corpus nor the data pipeline.
"""

from __future__ import annotations

import abc
import collections
import json
from typing import Sequence

import numpy as np


class Tokenizer(abc.ABC):
  """Maps text to ids and back."""

  kind: str

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids (the model's embedding rows)."""

  @abc.abstractmethod
  def encode(self, text: str) -> np.ndarray:
    """Text -> int32 `[length]` ids."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """Ids -> text."""

  @abc.abstractmethod
  def to_dict(self) -> dict:
    """JSON-serialisable state; `kind` picks the class in `load`."""

  def save(self, path: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'kind': self.kind, **self.to_dict()}, f, ensure_ascii=False)


class CharTokenizer(Tokenizer):
  """One id per character, in sorted order (as nanoGPT's char models).

  Args:
    chars: the vocabulary, one string per character.
  """

  kind = 'char'

  def __init__(self, chars: Sequence[str]):
    self.chars = list(chars)
    self._index = {c: i for i, c in enumerate(self.chars)}
    # Code point -> id lookup table makes encoding a single numpy gather.
    self._table = np.full(max(map(ord, self.chars)) + 1, -1, np.int32)
    for c, i in self._index.items():
      self._table[ord(c)] = i

  @classmethod
  def from_text(cls, text: str) -> 'CharTokenizer':
    return cls(sorted(set(text)))

  @property
  def vocab_size(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode('utf-32-le'), np.uint32)
    known = codes < len(self._table)
    ids = np.where(known, self._table[np.where(known, codes, 0)], -1)
    if (ids < 0).any():
      unknown = sorted({chr(c) for c in codes[ids < 0]})
      raise ValueError(f'characters outside the vocabulary: {unknown!r}')
    return ids.astype(np.int32)

  def decode(self, ids: Sequence[int]) -> str:
    return ''.join(self.chars[int(i)] for i in ids)

  def to_dict(self) -> dict:
    return {'chars': self.chars}


class WordTokenizer(Tokenizer):
  """One id per word of a white-space tokenised corpus (PTB, SST-2, UD).

  A line break is the word `eos` (`<eos>` in Zaremba et al.'s PTB reader),
  so a corpus encodes to one stream; words outside the vocabulary become
  `unk`. Ids follow `words`: the specials first, then by falling frequency.

  Args:
    words: the vocabulary, id = position.
    unk: the unknown word; must be in `words`.
    eos: the word that stands for a line break, or '' to drop line breaks.
  """

  kind = 'word'

  def __init__(self, words: Sequence[str], unk: str = '<unk>',
               eos: str = '<eos>'):
    self.words, self.unk, self.eos = list(words), unk, eos
    self._index = {w: i for i, w in enumerate(self.words)}
    if len(self._index) != len(self.words):
      raise ValueError('duplicate words in the vocabulary')
    if unk not in self._index:
      raise ValueError(f'the unknown word {unk!r} is not in the vocabulary')
    self.unk_id = self._index[unk]

  @classmethod
  def from_text(cls, text: str, min_count: int = 1, max_size: int = 0,
                specials: Sequence[str] = ('<unk>', '<eos>'),
                unk: str = '<unk>', eos: str = '<eos>') -> 'WordTokenizer':
    """The vocabulary of `text`: `specials`, then words by falling count
    (ties alphabetical), keeping those seen `min_count` times, at most
    `max_size` words in all (0: no limit)."""
    counts = collections.Counter(cls._split(text, eos))
    ranked = sorted((w for w, n in counts.items()
                     if n >= min_count and w not in specials),
                    key=lambda w: (-counts[w], w))
    words = list(specials) + ranked
    return cls(words[:max_size] if max_size else words, unk=unk, eos=eos)

  @staticmethod
  def _split(text: str, eos: str) -> list[str]:
    return text.replace('\n', f' {eos} ').split() if eos else text.split()

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  def encode(self, text: str) -> np.ndarray:
    get, unk = self._index.get, self.unk_id
    words = self._split(text, self.eos)
    return np.fromiter((get(w, unk) for w in words), np.int32, len(words))

  def decode(self, ids: Sequence[int]) -> str:
    """Ids -> words joined by spaces, `eos` back to a line break."""
    pieces = []
    for i in ids:
      word = self.words[int(i)]
      if self.eos and word == self.eos:
        pieces.append('\n')
      else:
        starts_line = not pieces or pieces[-1] == '\n'
        pieces.append(word if starts_line else ' ' + word)
    return ''.join(pieces)

  def to_dict(self) -> dict:
    return {'words': self.words, 'unk': self.unk, 'eos': self.eos}


_KINDS = {cls.kind: cls for cls in (CharTokenizer, WordTokenizer)}


def load(path: str) -> Tokenizer:
  """Reads a tokenizer written by `Tokenizer.save`."""
  with open(path, encoding='utf-8') as f:
    state = json.load(f)
  kind = state.pop('kind')
  if kind not in _KINDS:
    raise ValueError(f'{path}: unknown tokenizer kind {kind!r}')
  return _KINDS[kind](**state)
