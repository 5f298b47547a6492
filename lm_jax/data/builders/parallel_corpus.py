"""A tfds builder for parallel corpora (sentence pairs), written as
array_record.

Raw files are read from a local data directory (`<raw_dir>/<corpus>/...`)
or, where the machine has internet and a file is absent, downloaded from
the corpus's public URL; building needs no TensorFlow. Each example is one
sentence pair, its fields named by language (`{'de': ..., 'en': ...}`), in
the order of the raw files (shuffling disabled), so line i of a split's
references is example i.

Corpora:
  multi30k: Multi30k task 1 (Elliott et al. 2016), German-English image
    captions; train 29,000 / validation 1,014 / test 1,000 pairs, the test
    split being `test_2016_flickr`, the one papers report.
  tatoeba_kor_eng: manythings.org's Tatoeba Korean-English export, 5,749
    pairs with no official split. Its splits are cut by groups of pairs
    linked through a shared sentence on either side (80/10/10 of the 4,954
    groups, in a fixed random order), so no sentence of either language is
    in two splits: a split by pair, or by one language's sentences, would
    put another translation of a test sentence into training.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders.raw_files import (LocalDatasetInfo,
                                            RawFileBuilder, prepared,
                                            read_split, read_text)

_MULTI30K_URL = ('https://raw.githubusercontent.com/multi30k/dataset/'
                 'a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/')
_TATOEBA_URL = ('https://raw.githubusercontent.com/r0cd7b/'
                'nlp_with_rnns_and_attention/'
                '875d03899a2c217633fa28e8917a8b26382c5269/kor-eng/kor.txt')


@dataclasses.dataclass(frozen=True)
class ParallelCorpus:
  """Where a corpus's files are and how its splits are cut.

  Attributes:
    languages: the two languages' codes, the example's field names.
    files: one entry per raw file, key -> path relative to the data dir.
      Line-aligned corpora have keys 'SPLIT.LANG'; a tab-separated corpus
      has one key 'all' (columns: `languages[0]`, `languages[1]`, ...).
    urls: the same keys -> public download URL.
    split_fractions: for an 'all' file, the train / validation / test
      shares of its groups of linked pairs (`linked_groups`).
    split_seed: the seed of the order those groups are cut in.
  """

  languages: tuple[str, str]
  files: dict
  urls: dict
  split_fractions: Optional[tuple[float, float, float]] = None
  split_seed: int = 0


_MULTI30K_SPLITS = {'train': 'train', 'validation': 'val',
                    'test': 'test_2016_flickr'}

CORPORA = {
    'multi30k': ParallelCorpus(
        languages=('de', 'en'),
        files={f'{split}.{lang}': f'multi30k/{name}.{lang}.gz'
               for split, name in _MULTI30K_SPLITS.items()
               for lang in ('de', 'en')},
        urls={f'{split}.{lang}': f'{_MULTI30K_URL}{name}.{lang}.gz'
              for split, name in _MULTI30K_SPLITS.items()
              for lang in ('de', 'en')}),
    'tatoeba_kor_eng': ParallelCorpus(
        languages=('en', 'ko'),
        files={'all': 'tatoeba_kor_eng/kor.txt'},
        urls={'all': _TATOEBA_URL},
        split_fractions=(0.8, 0.1, 0.1)),
}


def _read_lines(path: str) -> list[str]:
  return read_text(path, newline='\n').rstrip('\n').split('\n')


def linked_groups(rows: list[tuple[str, str]]) -> list[str]:
  """Each pair's group: pairs sharing a sentence in either language are
  one group (connected components of the bipartite graph of sentences).

  Returns:
    `len(rows)` keys, one per pair: its group's alphabetically first
    first-language sentence, so equal for a group and independent of the
    file's order.
  """
  parent = {}

  def root(node):
    parent.setdefault(node, node)
    while parent[node] != node:
      parent[node] = parent[parent[node]]  # path halving
      node = parent[node]
    return node

  for first, second in rows:
    a, b = root((0, first)), root((1, second))
    if a != b:
      parent[max(a, b)] = min(a, b)
  key = {}
  for first, _ in rows:
    group = root((0, first))
    key[group] = min(key.get(group, first), first)
  return [key[root((0, first))] for first, _ in rows]


def split_by_sentence(keys: list[str], fractions: tuple[float, ...],
                      seed: int) -> list[int]:
  """The split index of each example, the same for equal `keys`.

  The distinct keys, sorted, are put in a random order drawn from `seed`
  and cut by `fractions`, so the assignment depends only on the set of
  keys, not on the file's order.

  Returns:
    `len(keys)` indices into `fractions`.
  """
  distinct = sorted(set(keys))
  order = np.random.default_rng(seed).permutation(len(distinct))
  bounds = np.round(np.cumsum(fractions) / np.sum(fractions)
                    * len(distinct)).astype(int)
  split_of = {}
  for rank, i in enumerate(order):
    split_of[distinct[i]] = int(np.searchsorted(bounds, rank, side='right'))
  return [split_of[k] for k in keys]


class ParallelCorpusBuilder(RawFileBuilder):
  """Sentence pairs of a corpus in `CORPORA`, one config per corpus."""

  SOURCES = CORPORA
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.1.0': 'tatoeba_kor_eng: split by groups of linked pairs, so no '
               'Korean sentence is in two splits either.',
  }
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in CORPORA]

  @property
  def corpus(self) -> ParallelCorpus:
    return self.source

  def _info(self) -> LocalDatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description='Sentence pairs of a parallel corpus, in file order.',
        features=tfds.features.FeaturesDict(
            {lang: tfds.features.Text() for lang in self.corpus.languages}),
        disable_shuffling=True)

  def pairs(self) -> dict[str, list[tuple[str, str]]]:
    """Split name -> the split's sentence pairs, in `languages` order."""
    corpus = self.corpus
    if corpus.split_fractions is None:
      out = {}
      for split in _splits_of(corpus):
        first, second = (_read_lines(self.raw_file(f'{split}.{lang}'))
                         for lang in corpus.languages)
        if len(first) != len(second):
          raise ValueError(f'{self.builder_config.name} {split}: '
                           f'{len(first)} lines against {len(second)}')
        out[split] = list(zip(first, second))
      return out
    path = self.raw_file('all')
    rows = []
    for number, line in enumerate(_read_lines(path), 1):
      if not line:
        continue
      row = line.split('\t')[:2]
      if len(row) < 2:
        raise ValueError(f'{path} line {number} has no tab: each line is '
                         'a sentence, a tab and its translation')
      rows.append(row)
    splits = split_by_sentence(linked_groups(rows), corpus.split_fractions,
                               corpus.split_seed)
    names = ('train', 'validation', 'test')
    return {name: [tuple(r) for r, s in zip(rows, splits) if s == i]
            for i, name in enumerate(names)}

  def _split_generators(self, dl_manager):
    del dl_manager  # Its retrying downloader stalls for minutes offline.
    return {split: self._generate_examples(pairs)
            for split, pairs in self.pairs().items()}

  def _generate_examples(self, pairs):
    languages = self.corpus.languages
    for i, pair in enumerate(pairs):
      yield i, dict(zip(languages, pair))


def _splits_of(corpus: ParallelCorpus) -> list[str]:
  return sorted({key.split('.')[0] for key in corpus.files})


def load_pairs(corpus: str, split: str, source_lang: str, target_lang: str,
               raw_dir: str, cache_dir: str) -> tuple[list[str], list[str]]:
  """The (source, target) sentences of one split, building the tfds
  dataset on first use.

  Args:
    corpus: a key of `CORPORA`.
    split: 'train', 'validation' or 'test'.
    source_lang: the language translated from (one of the corpus's two).
    target_lang: the language translated into.
    raw_dir: folder holding the raw corpus files.
    cache_dir: where tfds writes the prepared array_record files.

  Returns:
    Two equally long lists of sentences, in the split's order.

  Raises:
    DataNotFoundError: the raw files are missing and not downloadable.
  """
  if corpus not in CORPORA:
    raise ValueError(f'unknown parallel corpus {corpus!r}; known: '
                     f'{sorted(CORPORA)}')
  languages = CORPORA[corpus].languages
  if {source_lang, target_lang} != set(languages):
    raise ValueError(f'{corpus} pairs {languages[0]!r} with {languages[1]!r}, '
                     f'not {source_lang!r} with {target_lang!r}')
  builder = prepared(ParallelCorpusBuilder, corpus, raw_dir, cache_dir)
  if split not in builder.info.splits:
    raise ValueError(f'{corpus} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}')
  columns = read_split(builder, split)
  return ([s.decode('utf-8') for s, in columns[source_lang]],
          [s.decode('utf-8') for s, in columns[target_lang]])
