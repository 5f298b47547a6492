"""Tests of lm_jax.data.builders.glue_tsv: GLUE TSV parsing (trailing
spaces, tabs, unlabelled test files), the tfds build, and clear errors for
missing or malformed data.

No test touches the network: `offline` makes host names unresolvable.
"""

import gzip
import os
import time

import numpy as np
import pytest

from lm_jax.data.builders import glue_tsv
from lm_jax.data.builders.raw_files import DataNotFoundError

TRAIN = ('sentence\tlabel\n'
         'hide new secretions from the parental units \t0\n'
         'a \ttab\tin the sentence \t1\n'  # no quoting: split at the last tab
         '\n'
         "it 's a charming journey . \t1\r\n")
# A byte-order mark; a lone '\r' inside a sentence ends no line.
DEV = '\ufeffsentence\tlabel\na\rb c \t0\n'
TEST = ('index\tsentence\n'
        '0\tuneasy mishmash of styles and genres .\n'
        '1\ta poor -- if durable -- imitation .\n')


def test_labelled_lines_split_at_the_last_tab_and_lose_their_spaces():
  assert list(glue_tsv.parse_tsv(TRAIN, True, 2)) == [
      ('hide new secretions from the parental units', 0),
      ('a \ttab\tin the sentence', 1),
      ("it 's a charming journey .", 1)]


def test_unlabelled_lines_split_at_the_first_tab():
  assert list(glue_tsv.parse_tsv(TEST, False, 2)) == [
      ('uneasy mishmash of styles and genres .', glue_tsv.UNLABELLED),
      ('a poor -- if durable -- imitation .', glue_tsv.UNLABELLED)]


@pytest.mark.parametrize('text, message', [
    ('sentence\tlabel\ngood film\t2\n', "x.tsv:2: label '2' is not one of"),
    ('sentence\tlabel\ngood film\tpos\n', "x.tsv:2: label 'pos'"),
    ('sentence\tlabel\ngood film\t\u00b2\n', "x.tsv:2: label '\u00b2'"),
    ('sentence\tlabel\ngood film\t\u0661\n', "x.tsv:2: label '\u0661'"),
    ('sentence\tlabel\ngood film\n', 'x.tsv:2: no tab'),
    ('good film\t1\n', "x.tsv:1: expected the header .*, found 'good film"),
    ('', 'x.tsv:1: expected the header'),
])
def test_malformed_files_raise_an_error_naming_file_and_line(text, message):
  with pytest.raises(ValueError, match=message):
    list(glue_tsv.parse_tsv(text, True, 2, 'x.tsv'))


def test_lines_end_only_at_newlines():
  """A form feed or a line separator inside a sentence is text."""
  text = 'sentence\tlabel\r\na\x0cb\t1\r\nc\u2028d\t0\n'
  assert list(glue_tsv.parse_tsv(text, True, 2)) == [('a\x0cb', 1),
                                                      ('c\u2028d', 0)]


def _write_sst2(root, train=TRAIN, dev=TRAIN, test=TEST):
  folder = root / 'sst2'
  folder.mkdir(parents=True, exist_ok=True)
  with gzip.open(folder / 'train.tsv.gz', 'wt', encoding='utf-8') as f:
    f.write(train)
  (folder / 'dev.tsv').write_text(dev, encoding='utf-8')
  if test is not None:
    (folder / 'test.tsv').write_text(test, encoding='utf-8')


def test_built_splits_equal_the_parsed_files(tmp_path):
  _write_sst2(tmp_path / 'raw', dev=DEV)
  assert list(glue_tsv.parse_tsv(DEV, True, 2)) == [('a\rb c', 0)]
  for split, text in (('train', TRAIN), ('validation', DEV),
                      ('test', TEST)):
    sentences, labels = glue_tsv.load_examples(
        'sst2', split, str(tmp_path / 'raw'), str(tmp_path / 'cache'))
    expected = list(glue_tsv.parse_tsv(text, split != 'test', 2))
    assert sentences == [s for s, _ in expected], split
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [y for _, y in expected])


def test_missing_file_offline_raises_data_not_found_quickly(offline,
                                                            tmp_path):
  _write_sst2(tmp_path / 'raw', test=None)
  start = time.perf_counter()
  with pytest.raises(DataNotFoundError) as info:
    glue_tsv.load_examples('sst2', 'train', str(tmp_path / 'raw'),
                           str(tmp_path / 'cache'))
  assert time.perf_counter() - start < 20
  message = str(info.value)
  assert 'sst2/test.tsv' in message and str(tmp_path / 'raw') in message
  assert '\n' not in message


def test_malformed_file_fails_with_its_path(tmp_path):
  _write_sst2(tmp_path / 'raw', dev='sentence\tlabel\nbad\t7\n')
  with pytest.raises(ValueError, match=r'dev\.tsv:2: label'):
    glue_tsv.load_examples('sst2', 'validation', str(tmp_path / 'raw'),
                           str(tmp_path / 'cache'))


def test_unknown_dataset_and_split_raise_value_error(tmp_path):
  with pytest.raises(ValueError, match='mnli'):
    glue_tsv.load_examples('mnli', 'train', str(tmp_path), str(tmp_path))
  with pytest.raises(ValueError, match='dev'):
    glue_tsv.load_examples('sst2', 'dev', str(tmp_path), str(tmp_path))


def test_real_sst2_has_the_glue_counts(shared_data_dir, shared_cache_dir):
  if not os.path.isdir(os.path.join(shared_data_dir, 'sst2')):
    pytest.skip(f'no sst2 under {shared_data_dir}')
  counts = {}
  for split in ('train', 'validation', 'test'):
    sentences, labels = glue_tsv.load_examples('sst2', split, shared_data_dir,
                                               shared_cache_dir)
    assert all(s == s.strip() and s for s in sentences)
    counts[split] = (len(sentences), int((labels == 1).sum()),
                     int((labels == 0).sum()))
  assert counts == {'train': (67349, 37569, 29780),
                    'validation': (872, 444, 428), 'test': (1821, 0, 0)}
