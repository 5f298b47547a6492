"""WordPiece, BERT's tokenizer (Schuster & Nakajima 2012; Devlin et al. 2019).

Text becomes ids in two stages, as in Google's BERT and Hugging Face's
`BertTokenizerFast` (whose output this module reproduces id for id, except
on characters that Python's `unicodedata` and the Rust library's older
Unicode tables classify differently; none occur in SST-2's dev text):

  1. basic tokenisation: control, format and private-use characters are
     dropped (unassigned code points are not, as in `BertTokenizerFast`),
     white space becomes a space, CJK ideographs get spaces around them,
     accents are stripped (NFD, then the non-spacing marks dropped) and
     letters lower-cased; the text is then split at white space and around
     every punctuation character;
  2. WordPiece: each word is cut greedily, longest vocabulary piece first;
     pieces after a word's first carry the prefix `##`. A word with a rest
     that no piece matches (or longer than `max_chars_per_word`) becomes one
     [UNK].

Special tokens written in the text ("a [MASK] b") stay whole, as Hugging
Face's added tokens do. `encode` adds no special token; `encode_sentence`
wraps the pieces in [CLS] ... [SEP], BERT's single-sentence input.

`WordPieceTokenizer.train` learns a vocabulary from a corpus: an alphabet of
the most frequent characters (each as a word start and as a `##`
continuation), then merges of the most frequent adjacent pair of pieces until
the vocabulary is full. That is how Hugging Face's WordPiece trainer learns
one too (byte-pair encoding merges over `##`-marked pieces); inference is
WordPiece's greedy longest match, not the merges.
"""

from __future__ import annotations

import ast
import collections
import fcntl
import functools
import hashlib
import heapq
import os
import re
import unicodedata
from typing import Iterable, Optional, Sequence

import numpy as np

from lm_jax import atomic_files
from lm_jax.data.tokenizers import (Tokenizer, training_digest,
                                     vocabulary_ids)

PAD, UNK, CLS, SEP, MASK = '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'
SPECIALS = (PAD, UNK, CLS, SEP, MASK)  # a trained vocabulary's ids 0-4
CONTINUATION = '##'

# Hugging Face's "Chinese character" blocks: the CJK Unified Ideographs and
# their extensions, and the compatibility ideographs (not Hangul, not kana).
# Extension E starts at 0x2B920 as in the Rust `BertNormalizer`, not at
# 0x2B820 as in Google's and the Python tokenizer.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
               (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF),
               (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
  return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(ch: str) -> bool:
  """ASCII punctuation (which counts `$+<=>^`|~`, symbols in Unicode) or any
  Unicode punctuation category."""
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith('P')


class _CharTable(dict):
  """ord(char) -> its basic-tokenised form, for `str.translate`, computed on
  a character's first use: the normalisation is per character, so a corpus
  costs one lookup per character."""

  def __init__(self, lower_case: bool, strip_accents: bool,
               chinese_chars: bool):
    super().__init__()
    self.lower_case, self.strip_accents = lower_case, strip_accents
    self.chinese_chars = chinese_chars

  def __missing__(self, cp: int) -> str:
    ch = chr(cp)
    category = unicodedata.category(ch)
    # Hugging Face's Rust normaliser drops control, format, private-use
    # (and surrogate) characters but keeps unassigned ones (Cn), whose word
    # then becomes [UNK]; Google's Python tokenizer drops those too.
    if cp in (0, 0xFFFD) or (category in ('Cc', 'Cf', 'Co', 'Cs')
                              and ch not in '\t\n\r'):
      out = ''
    elif ch.isspace():
      out = ' '
    else:
      # Hugging Face's order: accents stripped, then lower-cased, one
      # character at a time ('Σ' -> 'σ' wherever it stands).
      core = ch
      if self.strip_accents:
        core = ''.join(c for c in unicodedata.normalize('NFD', core)
                       if unicodedata.category(c) != 'Mn')
      if self.lower_case:
        core = ''.join(c.lower() for c in core)
      core = ''.join(f' {c} ' if _is_punctuation(c) else c for c in core)
      out = f' {core} ' if self.chinese_chars and _is_cjk(cp) else core
    self[cp] = out
    return out


class WordPieceTokenizer(Tokenizer):
  """BERT's tokenizer over a vocabulary of pieces (see the module docstring).

  Args:
    vocab: the pieces, id = position (a `vocab.txt`'s lines); it must hold
      [PAD], [UNK], [CLS], [SEP] and [MASK].
    lower_case: lower-case the text (an "uncased" model).
    strip_accents: drop accents; None: when lower-casing (BERT's rule).
    chinese_chars: split CJK ideographs into one word each.
    max_chars_per_word: longer words become [UNK] whole.
  """

  kind = 'wordpiece'

  def __init__(self, vocab: Sequence[str], lower_case: bool = True,
               strip_accents: Optional[bool] = None,
               chinese_chars: bool = True, max_chars_per_word: int = 100):
    self.vocab = list(vocab)
    self.lower_case, self.strip_accents = lower_case, strip_accents
    self.chinese_chars = chinese_chars
    self.max_chars_per_word = max_chars_per_word
    # A repeated line maps to its last id, as Hugging Face reads vocab.txt.
    self.index = {piece: i for i, piece in enumerate(self.vocab)}
    missing = [s for s in SPECIALS if s not in self.index]
    if missing:
      raise ValueError(f'WordPiece vocabulary lacks the special tokens '
                       f'{missing}')
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        self.index[s] for s in SPECIALS)
    self._table = _CharTable(
        lower_case, lower_case if strip_accents is None else strip_accents,
        chinese_chars)
    self._specials = re.compile('(' + '|'.join(map(re.escape, SPECIALS))
                                + ')')
    self._longest = max(map(len, self.index))
    self._words: dict[str, tuple[int, ...]] = {}

  @classmethod
  def from_vocab_file(cls, path: str, **kwargs) -> 'WordPieceTokenizer':
    """Reads a `vocab.txt`: one piece a line, id = line number."""
    with open(path, encoding='utf-8') as f:
      return cls([line.rstrip('\n') for line in f], **kwargs)

  def save_vocab(self, path: str) -> None:
    """Writes `vocab.txt` (one piece a line), replacing `path` whole."""
    with atomic_files.replacing(path, encoding='utf-8') as f:
      f.writelines(piece + '\n' for piece in self.vocab)

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def basic_tokenize(self, text: str) -> list[str]:
    """Stage 1: the words of `text` (no special-token handling)."""
    return text.translate(self._table).split()

  def _word_ids(self, word: str) -> tuple[int, ...]:
    """Stage 2 for one word: greedy longest-match-first pieces."""
    cached = self._words.get(word)
    if cached is not None:
      return cached
    ids, start, n = [], 0, len(word)
    if n > self.max_chars_per_word:
      ids, start = [self.unk_id], n
    while start < n:
      for end in range(min(n, start + self._longest), start, -1):
        piece = word[start:end] if start == 0 else (
            CONTINUATION + word[start:end])
        if piece in self.index:
          ids.append(self.index[piece])
          start = end
          break
      else:  # no piece matches the rest: the whole word is unknown
        ids = [self.unk_id]
        break
    if len(self._words) > 1_000_000:  # bound the cache on huge corpora
      self._words.clear()
    self._words[word] = out = tuple(ids)
    return out

  def encode_list(self, text: str) -> list[int]:
    """`encode` as a list of ints."""
    ids = []
    for i, part in enumerate(self._specials.split(text)):
      if i % 2:  # a special token written in the text
        ids.append(self.index[part])
        continue
      for word in self.basic_tokenize(part):
        ids.extend(self._word_ids(word))
    return ids

  def encode(self, text: str) -> np.ndarray:
    """Text -> int32 `[length]` piece ids, without [CLS] or [SEP]."""
    return np.asarray(self.encode_list(text), np.int32)

  def encode_sentence(self, text: str, max_length: int = 0) -> np.ndarray:
    """int32 `[length]`: [CLS] pieces [SEP], BERT's input for one sentence,
    the pieces cut so that the whole fits `max_length` (0: no limit)."""
    ids = self.encode_list(text)
    if max_length:
      if max_length < 2:
        raise ValueError(f'max_length {max_length} leaves no room for '
                         '[CLS] and [SEP]')
      ids = ids[:max_length - 2]
    return np.asarray([self.cls_id, *ids, self.sep_id], np.int32)

  def pieces(self, ids: Sequence[int]) -> list[str]:
    return [self.vocab[i] for i in vocabulary_ids(ids, len(self.vocab))]

  def tokenize(self, text: str) -> list[str]:
    """The pieces of `text` as strings (what `encode` numbers)."""
    return self.pieces(self.encode_list(text))

  def decode(self, ids: Sequence[int]) -> str:
    """Pieces joined by spaces, `##` continuations glued to the piece
    before; [PAD], [CLS] and [SEP] dropped."""
    out = []
    for piece in self.pieces(ids):
      if piece in (PAD, CLS, SEP):
        continue
      if piece.startswith(CONTINUATION) and out:
        out[-1] += piece[len(CONTINUATION):]
      else:
        out.append(piece)
    return ' '.join(out)

  def special_mask(self) -> np.ndarray:
    """bool `[vocab_size]`: True for the special tokens' ids."""
    mask = np.zeros(self.vocab_size, bool)
    mask[[self.index[s] for s in SPECIALS]] = True
    return mask

  def continuation_mask(self) -> np.ndarray:
    """bool `[vocab_size]`: True for `##` pieces (which continue a word)."""
    return np.array([p.startswith(CONTINUATION) for p in self.vocab], bool)

  def to_dict(self) -> dict:
    return {'vocab': self.vocab, 'lower_case': self.lower_case,
            'strip_accents': self.strip_accents,
            'chinese_chars': self.chinese_chars,
            'max_chars_per_word': self.max_chars_per_word}

  @classmethod
  def train(cls, sentences: Iterable[str], vocab_size: int,
            lower_case: bool = True, min_frequency: int = 2,
            limit_alphabet: int = 1000) -> 'WordPieceTokenizer':
    """Learns a vocabulary of (at most) `vocab_size` pieces, or of the
    specials and the alphabet alone where those are more.

    Args:
      sentences: the training text.
      vocab_size: pieces, the five special tokens included.
      lower_case: as the tokenizer's (accents are stripped with it).
      min_frequency: pairs seen fewer times are never merged; a corpus too
        small for `vocab_size` gets fewer pieces rather than an error.
      limit_alphabet: the most frequent characters kept; words with any
        other character are left out of training (they encode to [UNK]).
    """
    basic = cls(SPECIALS, lower_case=lower_case)
    counts = collections.Counter()
    for sentence in sentences:
      counts.update(basic.basic_tokenize(basic._specials.sub(' ', sentence)))
    chars = collections.Counter()
    for word, n in counts.items():
      for ch in word:
        chars[ch] += n
    alphabet = {ch for ch, _ in sorted(chars.items(),
                                       key=lambda kv: (-kv[1], kv[0]))
                [:limit_alphabet]}
    vocab = list(SPECIALS)
    for ch in sorted(alphabet):
      vocab += [ch, CONTINUATION + ch]
    merges = _merges(
        {w: n for w, n in counts.items() if set(w) <= alphabet},
        vocab_size - len(vocab), min_frequency, set(vocab))
    return cls(vocab + merges, lower_case=lower_case)


def _merges(counts: dict[str, int], budget: int, min_frequency: int,
            known: set[str]) -> list[str]:
  """Up to `budget` new pieces, each the merge of the most frequent adjacent
  pair of pieces in the words of `counts` (ties: the smallest pair).

  Pair counts are updated only in the words a merge touches; the heap holds
  stale counts that are checked when popped (a pair's count only falls
  until a merge creates it anew, when it is pushed again).
  """
  words = [[w[0]] + [CONTINUATION + c for c in w[1:]] for w in counts]
  freqs = list(counts.values())
  pairs: collections.Counter = collections.Counter()
  where = collections.defaultdict(set)
  for i, symbols in enumerate(words):
    for pair in zip(symbols, symbols[1:]):
      pairs[pair] += freqs[i]
      where[pair].add(i)
  heap = [(-n, pair) for pair, n in pairs.items()]
  heapq.heapify(heap)
  new_pieces = []
  while heap and len(new_pieces) < budget:
    negative, pair = heapq.heappop(heap)
    count = pairs.get(pair, 0)
    if count != -negative:
      if count > 0:
        heapq.heappush(heap, (-count, pair))
      continue
    if count < min_frequency:
      break
    a, b = pair
    merged = a + b[len(CONTINUATION):]
    if merged not in known:
      known.add(merged)
      new_pieces.append(merged)
    touched = set()
    for i in list(where[pair]):
      symbols, f = words[i], freqs[i]
      old = list(zip(symbols, symbols[1:]))
      out, j = [], 0
      while j < len(symbols):
        if j + 1 < len(symbols) and symbols[j] == a and symbols[j + 1] == b:
          out.append(merged)
          j += 2
        else:
          out.append(symbols[j])
          j += 1
      words[i] = out
      new = list(zip(out, out[1:]))
      for p in old:
        pairs[p] -= f
      for p in new:
        pairs[p] += f
        if merged in p:
          touched.add(p)
      for p in set(old) - set(new):
        where[p].discard(i)
      for p in new:
        where[p].add(i)
    del pairs[pair], where[pair]
    for p in touched:
      heapq.heappush(heap, (-pairs[p], p))
  return new_pieces


@functools.lru_cache(maxsize=None)
def _code_fingerprint() -> bytes:
  """SHA-256 of this module's code, comments and layout left out: the
  trainer, its defaults and the normaliser a cached vocabulary came from
  (as the dataset builders' `raw_files.code_fingerprint`)."""
  with open(__file__, encoding='utf-8') as f:
    return hashlib.sha256(ast.dump(ast.parse(f.read())).encode()).digest()


def cached_wordpiece(sentences: Sequence[str], cache_dir: str, name: str,
                     vocab_size: int, lower_case: bool = True
                     ) -> WordPieceTokenizer:
  """`WordPieceTokenizer.train`, or the vocabulary trained before.

  Stored as `cache_dir/wordpiece/NAME-DIGEST.txt` (a vocab.txt), the digest
  covering the sentences, the options and this module's code, so new data
  or a changed trainer trains anew and a cached vocabulary is never stale;
  concurrent builders wait for the first.
  """
  digest = training_digest([vocab_size, lower_case], sentences,
                           _code_fingerprint())
  folder = os.path.join(cache_dir, 'wordpiece')
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'{name}-{digest.hexdigest()[:16]}.txt')
  with open(path + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(path):
      return WordPieceTokenizer.from_vocab_file(path, lower_case=lower_case)
    tokenizer = WordPieceTokenizer.train(sentences, vocab_size, lower_case)
    tokenizer.save_vocab(path)
  return tokenizer
