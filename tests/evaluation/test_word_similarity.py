"""Tests of lm_jax.evaluation.word_similarity: ranks and Spearman's rho,
similarity and 3CosAdd analogy scores with their coverage on tiny hand-made
sets, case folding, nearest neighbours, the word2vec text format, and the
real evaluation files.
"""

import os

import numpy as np
import pytest

from lm_jax.evaluation import word_similarity as ws


def test_rank_averages_ties():
  np.testing.assert_allclose(ws.rank([10, 30, 20, 30]), [1, 3.5, 2, 3.5])


def test_spearman_hand_values():
  assert ws.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert ws.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)); ranks differ by (0,-2,1,1,0).
  assert ws.spearman([1, 2, 3, 4, 5], [1, 4, 2, 3, 5]) == pytest.approx(
      1 - 6 * 6 / (5 * 24))
  # With ties: the Pearson correlation of the average ranks.
  x, y = [1, 2, 2, 3], [1, 3, 2, 4]
  rx, ry = [1, 2.5, 2.5, 4], [1, 3, 2, 4]
  assert ws.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
  # A diverged run's NaN cosines have no rank (scipy's spearmanr: NaN too).
  assert np.isnan(ws.spearman([0.1, np.nan, 0.3], [1, 2, 3]))
  assert np.isnan(ws.spearman([1, 2, 3], [0.1, np.nan, 0.3]))
  assert np.isnan(ws.spearman([0.1, np.inf, 0.3], [1, 2, 3]))


def _vectors():
  words = ['king', 'queen', 'man', 'woman', 'apple', 'King', 'car']
  vectors = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.1, 1.0, 0.0],
                      [0.1, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0],
                      [0.0, 0.3, 1.0]])
  return ws.WordVectors(words, vectors)


def test_similarity_spearman_and_coverage():
  vectors = _vectors()
  pairs = [('king', 'queen', 5.0), ('man', 'woman', 4.0),
           ('king', 'man', 8.0), ('apple', 'car', 9.0),
           ('king', 'unicorn', 1.0)]
  rho, coverage = ws.evaluate_similarity(vectors, pairs)
  assert coverage == pytest.approx(4 / 5)
  unit = vectors.unit
  cosines = [unit[0] @ unit[1], unit[2] @ unit[3], unit[0] @ unit[2],
             unit[4] @ unit[6]]
  assert rho == pytest.approx(ws.spearman(cosines, [5.0, 4.0, 8.0, 9.0]))
  rho, coverage = ws.evaluate_similarity(vectors, [('x', 'y', 1.0)])
  assert np.isnan(rho) and coverage == 0.0


def test_case_folding_prefers_the_more_frequent_spelling():
  vectors = _vectors()
  assert vectors.lookup('KING') == 0  # 'king' comes before 'King'
  assert vectors.lookup('King', case_insensitive=False) == 5
  assert vectors.lookup('Queen') == 1 and vectors.lookup('nope') is None


def test_analogies_by_3cosadd_exclude_the_question_words():
  vectors = _vectors()
  questions = [
      (0, 'man', 'king', 'woman', 'queen'),  # b - a + c = (0.9, -1, 0)
      (0, 'man', 'woman', 'king', 'queen'),
      (0, 'king', 'queen', 'man', 'apple'),  # answers woman: wrong
      (1, 'Man', 'King', 'Woman', 'Queen'),  # case-folded
      (1, 'man', 'king', 'woman', 'princess'),  # not covered
  ]
  result = ws.evaluate_analogies(vectors, questions, chunk=2)
  assert result['coverage'] == pytest.approx(4 / 5)
  assert result['accuracy'] == pytest.approx(3 / 4)
  assert result['semantic_accuracy'] == pytest.approx(3 / 4)  # sections <5
  assert 'syntactic_accuracy' not in result  # none covered


def test_analogies_never_answer_a_question_word():
  # woman is almost man, so king - man + woman is almost king itself.
  vectors = ws.WordVectors(['king', 'man', 'woman', 'queen'], np.array(
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.99, 0.14],
       [0.9, 0.0, 0.43]]))
  unit = vectors.unit
  assert np.argmax(unit @ (unit[0] - unit[1] + unit[2])) == 0
  result = ws.evaluate_analogies(vectors,
                                 [(0, 'man', 'king', 'woman', 'queen')])
  assert result['accuracy'] == 1.0


def test_analogies_fold_case_in_candidates_as_in_questions():
  """gensim's case_insensitive=True: any spelling of the answer is right,
  and no spelling of a question word is an answer."""
  words = ['Paris', 'France', 'Berlin', 'Germany', 'paris', 'germany', 'Italy']
  question = [(0, 'Paris', 'France', 'Berlin', 'Germany')]
  # France - Paris + Berlin points to (-0.29, 0.71, 1).
  near, close, far = [-0.29, 0.7, 1.0], [-0.2, 0.8, 0.9], [1.0, 0.0, 0.2]
  base = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
  # 'germany' nearest: right, though the answer is spelled 'Germany'.
  answer_lower = ws.WordVectors(words, np.array(
      base + [far, [1.0, 0.1, 0.0], near, [0.0, -1.0, 0.0]]))
  assert ws.evaluate_analogies(answer_lower, question)['accuracy'] == 1.0
  # 'paris' nearest, a spelling of a question word: skipped for 'germany'.
  question_lower = ws.WordVectors(words, np.array(
      base + [far, near, close, [0.0, -1.0, 0.0]]))
  assert ws.evaluate_analogies(question_lower, question)['accuracy'] == 1.0


def test_nearest_neighbours():
  vectors = _vectors()
  top = vectors.nearest(vectors.vectors[4], k=2, exclude=[4])
  # 'car' is nearest; five words tie for second place.
  assert len(top) == 2 and top[0][0] == 'car'
  assert top[0][1] == pytest.approx(
      1 / np.linalg.norm([0.0, 0.3, 1.0]), rel=1e-6)
  assert len(vectors.nearest(vectors.vectors[0], k=100)) == 7


def test_word2vec_text_round_trip(tmp_path):
  vectors = _vectors()
  path = str(tmp_path / 'vectors.txt')
  vectors.save_word2vec_text(path)
  with open(path) as f:
    assert f.readline() == '7 3\n'
    assert f.readline().split()[0] == 'king'
  loaded = ws.WordVectors.load_word2vec_text(path)
  assert loaded.words == vectors.words
  np.testing.assert_allclose(loaded.vectors, vectors.vectors, rtol=1e-5)


def test_file_readers_and_evaluate_all(tmp_path):
  (tmp_path / ws.WS353).write_text(
      '# comment\n# Word 1\tWord 2\tHuman (mean)\nking\tqueen\t8.5\n'
      'man\twoman\t8.3\napple\tcar\t2.0\n')
  (tmp_path / ws.ANALOGIES).write_text(
      ': capital\nman king woman queen\n: gram1\nman woman king queen\n')
  assert ws.read_similarity_pairs(str(tmp_path / ws.WS353))[0] == (
      'king', 'queen', 8.5)
  assert ws.read_analogies(str(tmp_path / ws.ANALOGIES)) == [
      (0, 'man', 'king', 'woman', 'queen'),
      (1, 'man', 'woman', 'king', 'queen')]
  results = ws.evaluate_all(_vectors(), str(tmp_path))
  assert set(results) == {'ws353_spearman', 'ws353_coverage',
                          'analogy_accuracy', 'analogy_coverage',
                          'analogy_semantic_accuracy'}  # no SimLex file,
  # and both sections are among the first five (semantic)
  assert np.isnan(ws.evaluate_analogies(_vectors(), [])['accuracy'])
  assert results['ws353_coverage'] == 1.0
  assert results['analogy_accuracy'] == 1.0


def test_the_real_sets_parse(shared_data_dir):
  directory = os.path.join(shared_data_dir, 'word_similarity')
  if not os.path.isdir(directory):
    pytest.skip(f'no {directory}')
  assert len(ws.read_similarity_pairs(os.path.join(directory, ws.WS353))) \
      == 353
  assert len(ws.read_similarity_pairs(
      os.path.join(directory, ws.SIMLEX999))) == 999
  questions = ws.read_analogies(os.path.join(directory, ws.ANALOGIES))
  assert len(questions) == 19544
  assert questions[-1][0] == 13  # 14 sections
