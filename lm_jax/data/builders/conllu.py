"""A tfds builder for CoNLL-U treebanks (Universal Dependencies), written as
array_record: one example per sentence, its word forms and UPOS tags.

Raw files are read from `<raw_dir>/<treebank>/...` (plain or `.gz`) or,
where the machine has internet and a file is absent, downloaded from the
treebank's release on GitHub. Building needs no TensorFlow.

Only syntactic words are kept: multi-word token lines (`3-4 don't`, whose
words follow as their own lines) and empty nodes (`5.1`, enhanced
dependencies only) are skipped, as UD's own tagging evaluation does.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import tensorflow_datasets as tfds

from lm_jax.data.builders.raw_files import (LocalDatasetInfo,
                                            RawFileBuilder, prepared,
                                            read_split, read_text)

# The 17 universal part-of-speech tags of UD v2, in the UD guidelines' order.
UPOS_TAGS = ('ADJ', 'ADP', 'ADV', 'AUX', 'CCONJ', 'DET', 'INTJ', 'NOUN', 'NUM',
             'PART', 'PRON', 'PROPN', 'PUNCT', 'SCONJ', 'SYM', 'VERB', 'X')

# Multi-word token ranges (`3-4`) and empty nodes (`5.1`).
_SKIPPED_ID = re.compile(r'[0-9]+-[0-9]+|[0-9]+\.[0-9]+')
_SPLITS = (('train', 'train'), ('validation', 'dev'), ('test', 'test'))
_RELEASE = 'r2.17'


@dataclasses.dataclass(frozen=True)
class Treebank:
  """Where a treebank's split files are.

  Attributes:
    files: split name -> path relative to the data directory.
    urls: split name -> public download URL.
  """

  files: dict
  urls: dict


def _ud_treebank(folder: str, repository: str, prefix: str) -> Treebank:
  return Treebank(
      files={split: f'{folder}/{prefix}-ud-{name}.conllu'
             for split, name in _SPLITS},
      urls={split: f'https://raw.githubusercontent.com/UniversalDependencies/'
                   f'{repository}/{_RELEASE}/{prefix}-ud-{name}.conllu'
            for split, name in _SPLITS})


TREEBANKS = {
    'ud_english_lines': _ud_treebank('ud_english_lines', 'UD_English-LinES',
                                     'en_lines'),
    'ud_english_atis': _ud_treebank('ud_english_atis', 'UD_English-Atis',
                                    'en_atis'),
}


def parse_conllu(text: str, source: str = '<string>'
                 ) -> Iterator[tuple[list[str], list[str]]]:
  """Sentences of a CoNLL-U document as (word forms, UPOS tags).

  Args:
    text: the document.
    source: its name, for error messages.

  Yields:
    (words, tags) per sentence, in document order; sentences made only of
    comments are skipped.

  Raises:
    ValueError: a token line without 10 tab-separated columns, an ID that
      is neither an integer, a range nor a decimal, a word ID that does not
      follow the previous one (two sentences without a blank line between
      them), or an unknown UPOS tag; the message names `source` and the
      line number.
  """
  words, tags = [], []
  # Lines end at '\n' only (splitlines() also cuts at '\x0c', '\u2028'...).
  lines = text.removeprefix('\ufeff').split('\n')
  for number, line in enumerate(lines, 1):
    line = line.rstrip('\r')
    if not line.strip():
      if words:
        yield words, tags
      words, tags = [], []
      continue
    if line.startswith('#'):
      continue
    columns = line.split('\t')
    if len(columns) != 10:
      raise ValueError(f'{source}:{number}: a CoNLL-U token line has 10 '
                       f'tab-separated columns, this one {len(columns)}')
    token_id = columns[0]
    if _SKIPPED_ID.fullmatch(token_id):
      continue  # a multi-word token's surface form, or an empty node
    if not (token_id.isascii() and token_id.isdigit()):
      raise ValueError(f'{source}:{number}: bad token ID {token_id!r}')
    if int(token_id) != len(words) + 1:
      raise ValueError(f'{source}:{number}: token ID {token_id} where '
                       f'{len(words) + 1} comes next; is a blank line '
                       'missing before this sentence?')
    if columns[3] not in UPOS_TAGS:
      raise ValueError(f'{source}:{number}: unknown UPOS tag '
                       f'{columns[3]!r}')
    words.append(columns[1])
    tags.append(columns[3])
  if words:  # the last sentence may lack its closing blank line
    yield words, tags


class ConlluTreebank(RawFileBuilder):
  """Tagged sentences of a treebank in `TREEBANKS`, one config per
  treebank, in file order."""

  SOURCES = TREEBANKS
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in TREEBANKS]

  def _info(self) -> LocalDatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description='Sentences of a UD treebank: word forms and UPOS tags.',
        features=tfds.features.FeaturesDict({
            'words': tfds.features.Sequence(tfds.features.Text()),
            'upos': tfds.features.Sequence(
                tfds.features.ClassLabel(names=UPOS_TAGS)),
        }),
        disable_shuffling=True)

  def parsed(self, split: str) -> list[tuple[list[str], list[str]]]:
    """Every sentence of `split`, parsed (and so checked) in full."""
    path = self.raw_file(split)
    # newline='': parse_conllu alone decides where lines end.
    sentences = list(parse_conllu(read_text(path, newline=''), path))
    if not sentences:
      raise ValueError(f'{path} holds no sentences; copy or download it '
                       'again')
    return sentences

  def _split_generators(self, dl_manager):
    del dl_manager  # Its retrying downloader stalls for minutes offline.
    return {split: self._generate_examples(self.parsed(split))
            for split in TREEBANKS[self.builder_config.name].files}

  def _generate_examples(self, sentences):
    for i, (words, tags) in enumerate(sentences):
      yield i, {'words': words, 'upos': tags}


def load_sentences(treebank: str, split: str, raw_dir: str, cache_dir: str,
                   ) -> list[tuple[list[str], list[str]]]:
  """The (words, UPOS tags) of every sentence of one split, in file order,
  building the tfds dataset on first use.

  Args:
    treebank: a key of `TREEBANKS`.
    split: 'train', 'validation' or 'test'.
    raw_dir: folder holding the raw treebank folders.
    cache_dir: where tfds writes the prepared array_record files.

  Raises:
    DataNotFoundError: a raw file is missing and not downloadable.
    ValueError: an unknown treebank or split, or a malformed file.
  """
  if treebank not in TREEBANKS:
    raise ValueError(f'unknown treebank {treebank!r}; known: '
                     f'{sorted(TREEBANKS)}')
  files = TREEBANKS[treebank].files
  if split not in files:
    raise ValueError(f'{treebank} has no split {split!r}; it has '
                     f'{sorted(files)}')
  builder = prepared(ConlluTreebank, treebank, raw_dir, cache_dir)
  columns = read_split(builder, split)
  return [([w.decode('utf-8') for w in words], [UPOS_TAGS[t] for t in tags])
          for words, tags in zip(columns['words'], columns['upos'])]


def word_form(word: str) -> str:
  """A word form as one white-space-free token (a word tokenizer splits at
  white space; a few UD forms contain a space)."""
  return '_'.join(word.split()) or '_'


def load_text(treebank: str, split: str, raw_dir: str, cache_dir: str
              ) -> str:
  """One split's sentences as plain text, tags dropped: each sentence's
  `word_form`s joined by spaces, one sentence a line (the unlabelled
  in-domain text a bi-LM for a tagger is trained on)."""
  return ''.join(' '.join(map(word_form, words)) + '\n'
                 for words, _ in load_sentences(treebank, split, raw_dir,
                                                cache_dir))
