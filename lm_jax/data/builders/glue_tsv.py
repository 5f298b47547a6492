"""A tfds builder for GLUE-style single-sentence classification TSV files
(SST-2's layout), written as array_record: one example per line, its
sentence and its label.

Raw files are read from `<raw_dir>/<dataset>/...` (plain or `.gz`) or,
where the machine has internet and a file is absent, downloaded from a
public copy of the GLUE files. Building needs no TensorFlow.

SST-2's files have a header line and no quoting. Labelled splits are
`sentence<TAB>label` (the sentence split off at the last tab); GLUE's test
splits are unlabelled, `index<TAB>sentence`, and get the label -1.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders.raw_files import (LocalDatasetInfo,
                                            RawFileBuilder, prepared,
                                            read_split, read_text)

UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class GlueDataset:
  """Where a dataset's split files are and what their labels are.

  Attributes:
    files: split name -> path relative to the data directory.
    urls: split name -> public download URL.
    num_classes: labels are 0 .. num_classes - 1.
    unlabelled: the splits in `index<TAB>sentence` form, without labels.
  """

  files: dict
  urls: dict
  num_classes: int
  unlabelled: tuple = ('test',)


_SST2_URL = ('https://raw.githubusercontent.com/brunnurs/'
             'binary-classification-bert/'
             '35e1628db50472679176dd31b992534a3866a86e/data/SST2/')

DATASETS = {
    'sst2': GlueDataset(
        files={'train': 'sst2/train.tsv', 'validation': 'sst2/dev.tsv',
               'test': 'sst2/test.tsv'},
        urls={'train': _SST2_URL + 'train.tsv',
              'validation': _SST2_URL + 'dev.tsv',
              'test': _SST2_URL + 'test.tsv'},
        num_classes=2),
}


def parse_tsv(text: str, labelled: bool, num_classes: int,
              source: str = '<string>') -> Iterator[tuple[str, int]]:
  """(sentence, label) per data line of a GLUE single-sentence TSV file.

  Args:
    text: the file's contents, header line first.
    labelled: `sentence<TAB>label` lines; else `index<TAB>sentence` lines,
      whose label is `UNLABELLED`.
    num_classes: labels must lie in [0, num_classes).
    source: the file's name, for error messages.

  Yields:
    (sentence without surrounding white space, label).

  Raises:
    ValueError: a missing header, a line without a tab, or a bad label;
      the message names `source` and the line number.
  """
  # Lines end at '\n' only: splitlines() would also cut a sentence at
  # '\x0c', '\x85' or '\u2028'.
  lines = text.removeprefix('\ufeff').split('\n')  # less a byte-order mark
  expected = ('sentence', 'label') if labelled else ('index', 'sentence')
  if not lines or tuple(lines[0].rstrip('\r').split('\t')) != expected:
    raise ValueError(f'{source}:1: expected the header '
                     f'{chr(9).join(expected)!r}, found {lines[0][:80]!r}')
  for number, line in enumerate(lines[1:], 2):
    line = line.rstrip('\r')
    if not line.strip():
      continue
    if '\t' not in line:
      raise ValueError(f'{source}:{number}: no tab in the line')
    if labelled:
      # GLUE has no quoting; the label is after the last tab.
      sentence, label = line.rsplit('\t', 1)
      # ASCII digits only: isdigit() passes '²' and reads '١' as 1.
      if not re.fullmatch(r'[0-9]+', label.strip()) or (
          int(label) >= num_classes):
        raise ValueError(f'{source}:{number}: label {label!r} is not one of '
                         f'0..{num_classes - 1}')
      yield sentence.strip(), int(label)
    else:
      yield line.split('\t', 1)[1].strip(), UNLABELLED


class GlueTsv(RawFileBuilder):
  """Sentences and labels of a dataset in `DATASETS`, one config per
  dataset, in file order."""

  SOURCES = DATASETS
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in DATASETS]

  def _info(self) -> LocalDatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description='Sentences of a GLUE single-sentence task and their '
                    f'labels ({UNLABELLED} where unlabelled).',
        features=tfds.features.FeaturesDict({
            'sentence': tfds.features.Text(),
            'label': tfds.features.Scalar(dtype=np.int64),
        }),
        disable_shuffling=True)

  def parsed(self, split: str) -> list[tuple[str, int]]:
    """Every example of `split`, parsed (and so checked) in full."""
    dataset = DATASETS[self.builder_config.name]
    path = self.raw_file(split)
    # newline='': parse_tsv alone decides where lines end.
    return list(parse_tsv(read_text(path, newline=''),
                          split not in dataset.unlabelled,
                          dataset.num_classes, path))

  def _split_generators(self, dl_manager):
    del dl_manager  # Its retrying downloader stalls for minutes offline.
    return {split: self._generate_examples(self.parsed(split))
            for split in DATASETS[self.builder_config.name].files}

  def _generate_examples(self, examples):
    for i, (sentence, label) in enumerate(examples):
      yield i, {'sentence': sentence, 'label': label}


def load_examples(dataset: str, split: str, raw_dir: str, cache_dir: str
                  ) -> tuple[list[str], np.ndarray]:
  """The sentences and labels of one split, in file order, building the
  tfds dataset on first use.

  Args:
    dataset: a key of `DATASETS`.
    split: 'train', 'validation' or 'test'.
    raw_dir: folder holding the raw dataset folders.
    cache_dir: where tfds writes the prepared array_record files.

  Returns:
    (sentences, int32 labels `[num_examples]`, `UNLABELLED` where the split
    has none).

  Raises:
    DataNotFoundError: a raw file is missing and not downloadable.
    ValueError: an unknown dataset or split, or a malformed file.
  """
  if dataset not in DATASETS:
    raise ValueError(f'unknown dataset {dataset!r}; known: '
                     f'{sorted(DATASETS)}')
  files = DATASETS[dataset].files
  if split not in files:
    raise ValueError(f'{dataset} has no split {split!r}; it has '
                     f'{sorted(files)}')
  builder = prepared(GlueTsv, dataset, raw_dir, cache_dir)
  columns = read_split(builder, split)
  return ([s.decode('utf-8') for s, in columns['sentence']],
          np.array([y for y, in columns['label']], np.int32))
