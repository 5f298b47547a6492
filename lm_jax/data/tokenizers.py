"""Tokenizers behind one interface: text <-> int32 ids, saved as JSON.

A run saves its tokenizer to `workdir/tokenizer.json` (a translation run:
`source_tokenizer.json` and `target_tokenizer.json`), so sampling and
evaluation need neither the corpus nor the data pipeline.
"""

from __future__ import annotations

import abc
import base64
import collections
import fcntl
import hashlib
import io
import json
import os
from typing import Iterable, Sequence

import numpy as np

from lm_jax import atomic_files


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
    """Writes the tokenizer to `path` through a file beside it: a run
    killed meanwhile leaves the old file whole."""
    with atomic_files.replacing(path, encoding='utf-8') as f:
      json.dump({'kind': self.kind, **self.to_dict()}, f, ensure_ascii=False)


def vocabulary_ids(ids: Sequence[int], size: int) -> list[int]:
  """`ids` as ints, each checked to name one of `size` entries (a negative
  id would otherwise index from the end)."""
  out = [int(i) for i in ids]
  bad = [i for i in out if not 0 <= i < size]
  if bad:
    raise ValueError(f'ids {bad[:5]} are outside the vocabulary of {size}')
  return out


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
    return ''.join(self.chars[i] for i in vocabulary_ids(ids, len(self.chars)))

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
    for i in vocabulary_ids(ids, len(self.words)):
      word = self.words[i]
      if self.eos and word == self.eos:
        pieces.append('\n')
      else:
        starts_line = not pieces or pieces[-1] == '\n'
        pieces.append(word if starts_line else ' ' + word)
    return ''.join(pieces)

  def to_dict(self) -> dict:
    return {'words': self.words, 'unk': self.unk, 'eos': self.eos}


class SentencePieceTokenizer(Tokenizer):
  """Subwords from a SentencePiece model (Kudo & Richardson 2018): unigram
  LM (Kudo 2018) or BPE (Sennrich et al. 2016) pieces, learnt from raw
  text, so the vocabulary needs no language-specific pre-tokeniser and
  decoding restores the spacing (detokenised text, as sacreBLEU wants) of
  the normalised text: NFKC, runs of white space as one space.

  Ids 0-3 are fixed: `PAD_ID` (what batches pad with), `UNK_ID`, `BOS_ID`
  (the decoder's first input) and `EOS_ID` (the last target). `encode`
  adds none of them; `decode` drops PAD, BOS and EOS and writes UNK as
  SentencePiece does, ' ⁇ ' (so a translation's unknown words stay in the
  text sacreBLEU scores, as fairseq's do).

  Args:
    model: the serialised SentencePiece model proto, base64 (as saved).
  """

  kind = 'sentencepiece'
  PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

  def __init__(self, model: str):
    import sentencepiece  # pylint: disable=g-import-not-at-top
    self.proto = base64.b64decode(model)
    self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.proto)
    ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(),
           self._sp.eos_id())
    if ids != (self.PAD_ID, self.UNK_ID, self.BOS_ID, self.EOS_ID):
      raise ValueError(f'SentencePiece model with special ids {ids}; '
                       'lm_jax expects pad, unk, bos, eos = 0, 1, 2, 3')

  @classmethod
  def from_proto(cls, proto: bytes) -> 'SentencePieceTokenizer':
    return cls(base64.b64encode(proto).decode('ascii'))

  @classmethod
  def train(cls, sentences: Iterable[str], vocab_size: int,
            model_type: str = 'unigram', character_coverage: float = 1.0
            ) -> 'SentencePieceTokenizer':
    """Learns a vocabulary of (at most) `vocab_size` pieces.

    Args:
      sentences: the training text, one sentence each.
      vocab_size: pieces, the four special ids included. A corpus too small
        for that many gets fewer rather than an error.
      model_type: 'unigram' or 'bpe'.
      character_coverage: the share of characters the pieces must cover;
        the rarest rest map to `UNK_ID` (1.0 keeps every character).
    """
    import sentencepiece  # pylint: disable=g-import-not-at-top
    if model_type not in ('unigram', 'bpe'):
      raise ValueError(f"SentencePiece model_type is 'unigram' or 'bpe', "
                       f'not {model_type!r}')
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model,
        vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage, hard_vocab_limit=False,
        pad_id=cls.PAD_ID, unk_id=cls.UNK_ID, bos_id=cls.BOS_ID,
        eos_id=cls.EOS_ID,
        # One thread: multi-threaded EM sums in a varying order, and the
        # cached vocabulary must be the same on every machine.
        num_threads=1, minloglevel=2)
    return cls.from_proto(model.getvalue())

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def pad_id(self) -> int:
    return self.PAD_ID

  @property
  def bos_id(self) -> int:
    return self.BOS_ID

  @property
  def eos_id(self) -> int:
    return self.EOS_ID

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._sp.encode(text, out_type=int), np.int32)

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    """`encode` of each text, in one call into SentencePiece."""
    return [np.asarray(ids, np.int32)
            for ids in self._sp.encode(list(texts), out_type=int)]

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def pieces(self, ids: Sequence[int]) -> list[str]:
    """The piece of each id (for attention pictures' axis labels)."""
    return [self._sp.id_to_piece(int(i)) for i in ids]

  def to_dict(self) -> dict:
    return {'model': base64.b64encode(self.proto).decode('ascii')}


def training_digest(options: list, sentences: Sequence[str],
                    code: bytes = b''):
  """SHA-256 over a trainer's JSON-able `options`, its `code` fingerprint
  and `sentences`: the key of a cached tokenizer trained on them."""
  digest = hashlib.sha256(json.dumps(options).encode() + code)
  for sentence in sentences:
    # Length first: ['a\nb'] and ['a', 'b'] are different corpora.
    data = sentence.encode('utf-8')
    digest.update(len(data).to_bytes(8, 'little') + data)
  return digest


def cached_sentencepiece(sentences: Sequence[str], cache_dir: str, name: str,
                         vocab_size: int, model_type: str = 'unigram',
                         character_coverage: float = 1.0
                         ) -> SentencePieceTokenizer:
  """`SentencePieceTokenizer.train`, or the model trained before.

  The model is stored as `cache_dir/sentencepiece/NAME-DIGEST.model`, the
  digest covering the sentences, the options and sentencepiece's version
  (the trainer), so new data, options or trainer train a new model and a
  cached one is never stale. Processes building the same model at once
  (tests, sweeps) wait for the first.
  """
  import sentencepiece  # pylint: disable=g-import-not-at-top
  digest = training_digest(
      [vocab_size, model_type, character_coverage, sentencepiece.__version__],
      sentences)
  folder = os.path.join(cache_dir, 'sentencepiece')
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'{name}-{digest.hexdigest()[:16]}.model')
  with open(path + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(path):
      with open(path, 'rb') as f:
        return SentencePieceTokenizer.from_proto(f.read())
    tokenizer = SentencePieceTokenizer.train(
        sentences, vocab_size, model_type, character_coverage)
    with atomic_files.replacing(path, 'wb') as f:
      f.write(tokenizer.proto)
  return tokenizer


_KINDS = {cls.kind: cls
          for cls in (CharTokenizer, WordTokenizer, SentencePieceTokenizer)}


def load(path: str) -> Tokenizer:
  """Reads a tokenizer written by `Tokenizer.save`."""
  try:
    with open(path, encoding='utf-8') as f:
      state = json.load(f)
    kind = state.pop('kind')
  except (ValueError, TypeError, AttributeError, KeyError) as e:
    raise ValueError(f'{path} is not a tokenizer file ({type(e).__name__}: '
                     f'{e}); restore it, or train the run again') from None
  # WordPiece lives in its own module, which imports this one.
  from lm_jax.data.wordpiece import WordPieceTokenizer
  kinds = {**_KINDS, WordPieceTokenizer.kind: WordPieceTokenizer}
  if kind not in kinds:
    raise ValueError(f'{path}: unknown tokenizer kind {kind!r}')
  try:
    return kinds[kind](**state)
  except TypeError as e:  # a field the tokenizer does not take, or lacks
    raise ValueError(f'{path} is not a {kind} tokenizer file ({e}); '
                     'restore it, or train the run again') from None
