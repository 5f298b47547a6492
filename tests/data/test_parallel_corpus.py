"""Tests of lm_jax.data.builders.parallel_corpus: the real Multi30k and
Tatoeba splits, the split by English sentence, local files, and the error
for missing data. No test touches the network (`offline`)."""

import gzip
import os

import pytest

from lm_jax.data.builders import parallel_corpus
from lm_jax.data.builders.parallel_corpus import (linked_groups, load_pairs,
                                                  split_by_sentence)
from lm_jax.data.builders.raw_files import DataNotFoundError


def _multi30k(shared_data_dir):
  if not os.path.exists(os.path.join(shared_data_dir, 'multi30k')):
    pytest.skip('no multi30k in the shared data')
  return shared_data_dir


def test_multi30k_splits_have_the_published_sizes_and_line_pairs(
    shared_data_dir, shared_cache_dir):
  data = _multi30k(shared_data_dir)
  sizes = {}
  for split in ('train', 'validation', 'test'):
    de, en = load_pairs('multi30k', split, 'de', 'en', data, shared_cache_dir)
    assert len(de) == len(en)
    sizes[split] = len(de)
  assert sizes == {'train': 29000, 'validation': 1014, 'test': 1000}
  de, en = load_pairs('multi30k', 'train', 'de', 'en', data, shared_cache_dir)
  # SOURCE.md's example: line 1 of train, in both languages.
  assert en[0] == 'Two young, White males are outside near many bushes.'
  assert de[0] == ('Zwei junge weiße Männer sind im Freien in der Nähe '
                   'vieler Büsche.')
  with gzip.open(os.path.join(data, 'multi30k', 'test_2016_flickr.en.gz'),
                 'rt', encoding='utf-8') as f:
    raw = f.read().splitlines()
  _, test_en = load_pairs('multi30k', 'test', 'de', 'en', data,
                          shared_cache_dir)
  assert test_en == raw  # the references, unchanged and in order


def test_the_direction_only_swaps_the_sides(shared_data_dir, shared_cache_dir):
  data = _multi30k(shared_data_dir)
  de, en = load_pairs('multi30k', 'validation', 'de', 'en', data,
                      shared_cache_dir)
  en2, de2 = load_pairs('multi30k', 'validation', 'en', 'de', data,
                        shared_cache_dir)
  assert (de, en) == (de2, en2)


def test_tatoeba_splits_share_no_sentence_in_either_language(
    shared_data_dir, shared_cache_dir):
  if not os.path.exists(os.path.join(shared_data_dir, 'tatoeba_kor_eng')):
    pytest.skip('no tatoeba_kor_eng in the shared data')
  splits = {s: load_pairs('tatoeba_kor_eng', s, 'ko', 'en', shared_data_dir,
                          shared_cache_dir)
            for s in ('train', 'validation', 'test')}
  assert sum(len(ko) for ko, _ in splits.values()) == 5749
  for side in (0, 1):  # Korean, English
    sentences = {s: set(pair[side]) for s, pair in splits.items()}
    assert not sentences['train'] & sentences['validation']
    assert not sentences['train'] & sentences['test']
    assert not sentences['validation'] & sentences['test']
  groups = {s: len(set(linked_groups(list(zip(en, ko)))))
            for s, (ko, en) in splits.items()}
  assert sum(groups.values()) == 4954
  # 80 / 10 / 10 of the groups of linked pairs.
  assert abs(groups['train'] - 0.8 * 4954) <= 1
  assert abs(groups['test'] - 0.1 * 4954) <= 1
  ko, en = splits['train']
  assert (ko[0], en[0]) == ('가.', 'Go.')  # file order within a split


def test_linked_groups_join_pairs_through_either_language():
  rows = [('Hi.', '안녕.'), ('Hello.', '안녕.'), ('Hello.', '안녕하세요.'),
          ('Go.', '가.'), ('Bye.', '잘 가.')]
  assert linked_groups(rows) == ['Hello.'] * 3 + ['Go.', 'Bye.']
  assert linked_groups(rows[::-1]) == linked_groups(rows)[::-1]


def test_split_by_sentence_depends_on_the_set_of_keys_only():
  keys = [f'sentence {i % 37}' for i in range(200)]
  splits = split_by_sentence(keys, (0.8, 0.1, 0.1), seed=0)
  by_key = {}
  for key, split in zip(keys, splits):
    assert by_key.setdefault(key, split) == split
  shuffled = keys[::-1]
  again = dict(zip(shuffled, split_by_sentence(shuffled, (0.8, 0.1, 0.1), 0)))
  assert again == by_key
  assert split_by_sentence(keys, (0.8, 0.1, 0.1), seed=1) != splits


def _write_multi30k(root, pairs_per_split):
  folder = root / 'multi30k'
  folder.mkdir(parents=True)
  for split, name in (('train', 'train'), ('validation', 'val'),
                      ('test', 'test_2016_flickr')):
    pairs = pairs_per_split[split]
    for i, lang in enumerate(('de', 'en')):
      with gzip.open(folder / f'{name}.{lang}.gz', 'wt',
                     encoding='utf-8') as f:
        f.write(''.join(p[i] + '\n' for p in pairs))


def test_local_files_are_read_line_by_line(tmp_path):
  pairs = {'train': [('Ein Hund.', 'A dog.'), ('Zwei  Katzen ', 'Two cats ')],
           'validation': [('Ja', 'Yes')], 'test': [('Nein.', 'No.')]}
  _write_multi30k(tmp_path / 'raw', pairs)
  de, en = load_pairs('multi30k', 'train', 'de', 'en',
                      str(tmp_path / 'raw'), str(tmp_path / 'cache'))
  # Spacing inside and at the end of a line is kept: references stay raw.
  assert list(zip(de, en)) == pairs['train']


def test_misaligned_files_are_an_error(tmp_path):
  pairs = {'train': [('a', 'b')], 'validation': [('c', 'd')],
           'test': [('e', 'f')]}
  _write_multi30k(tmp_path / 'raw', pairs)
  with gzip.open(tmp_path / 'raw' / 'multi30k' / 'val.en.gz', 'wt') as f:
    f.write('one\ntwo\n')
  with pytest.raises(ValueError, match='lines'):
    load_pairs('multi30k', 'train', 'de', 'en', str(tmp_path / 'raw'),
               str(tmp_path / 'cache'))


def test_a_tatoeba_line_without_a_tab_names_its_line(tmp_path):
  raw = tmp_path / 'raw' / 'tatoeba_kor_eng'
  raw.mkdir(parents=True)
  (raw / 'kor.txt').write_text('Hi.\t안녕.\tCC-BY\nGo.\n', encoding='utf-8')
  with pytest.raises(ValueError, match='line 2 has no tab'):
    load_pairs('tatoeba_kor_eng', 'train', 'ko', 'en', str(tmp_path / 'raw'),
               str(tmp_path / 'cache'))


def test_missing_data_names_the_file_and_the_data_dir(tmp_path, offline):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(DataNotFoundError) as error:
    load_pairs('tatoeba_kor_eng', 'train', 'ko', 'en', str(empty),
               str(tmp_path / 'cache'))
  assert 'tatoeba_kor_eng/kor.txt' in str(error.value)
  assert str(empty) in str(error.value)
  assert not (tmp_path / 'cache' / 'parallel_corpus_builder').exists()


@pytest.mark.parametrize('corpus,src,tgt,match', [
    ('nosuch', 'de', 'en', 'unknown parallel corpus'),
    ('multi30k', 'fr', 'en', "pairs 'de' with 'en'"),
])
def test_bad_corpus_or_languages_are_rejected(tmp_path, corpus, src, tgt,
                                              match):
  with pytest.raises(ValueError, match=match):
    load_pairs(corpus, 'train', src, tgt, '', str(tmp_path))


def test_every_corpus_has_urls_for_its_files():
  for corpus in parallel_corpus.CORPORA.values():
    assert set(corpus.urls) == set(corpus.files)
