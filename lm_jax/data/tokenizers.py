"""Tokenizers behind one interface: text <-> int32 ids, saved as JSON.

A run saves its tokenizer to `workdir/tokenizer.json`, so sampling and
evaluation need neither the corpus nor the data pipeline.
"""

from __future__ import annotations

import abc
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


_KINDS = {cls.kind: cls for cls in (CharTokenizer,)}


def load(path: str) -> Tokenizer:
  """Reads a tokenizer written by `Tokenizer.save`."""
  with open(path, encoding='utf-8') as f:
    state = json.load(f)
  kind = state.pop('kind')
  if kind not in _KINDS:
    raise ValueError(f'{path}: unknown tokenizer kind {kind!r}')
  return _KINDS[kind](**state)
