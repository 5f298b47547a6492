"""Tests of lm_jax.evaluation.bleu: a hand-computed BLEU, sacreBLEU's own
figures on a small corpus, and the 13a tokenisation of raw text."""

import math

import pytest
import sacrebleu

from lm_jax.evaluation.bleu import corpus_bleu

HYPOTHESES = ['A man in an orange hat starring at something.',
              'A Boston Terrier is running on lush green grass.',
              'A girl in karate uniform breaking a stick with a front kick.',
              'Five people wearing winter jackets are standing in the snow.']
REFERENCES = ['A man in an orange hat staring at something.',
              'A Boston terrier is running on lush green grass in front of a '
              'white fence.',
              'A girl in karate uniform breaking a stick with a front kick.',
              'Five people in winter jackets and helmets stand in the snow, '
              'with snowmobiles in the background.']


def test_identical_text_scores_100():
  result = corpus_bleu(REFERENCES, REFERENCES)
  assert result.score == pytest.approx(100.0)
  assert result.brevity_penalty == 1.0


def test_a_hand_computed_sentence():
  # 13a splits off the full stop: 7 tokens each. Matching n-grams:
  # 6 of 7 unigrams, 4 of 6 bigrams, 2 of 5 trigrams, 1 of 4 4-grams.
  result = corpus_bleu(['The cat is on the mat.'], ['The cat sat on the mat.'])
  expected = 100 * (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
  assert result.score == pytest.approx(expected, rel=1e-9)
  assert result.precisions == pytest.approx((600 / 7, 400 / 6, 40, 25))
  assert (result.hyp_len, result.ref_len) == (7, 7)


def test_short_output_pays_the_brevity_penalty():
  result = corpus_bleu(['The cat sat on the mat.'],
                       ['The cat sat on the mat in the sun.'])
  # 7 tokens against 10; 'mat .' is the only n-gram start not matched.
  brevity = math.exp(1 - 10 / 7)
  assert result.brevity_penalty == pytest.approx(brevity)
  assert result.score == pytest.approx(
      100 * brevity * (1 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25)


def test_equals_sacrebleu_on_a_corpus():
  ours = corpus_bleu(HYPOTHESES, REFERENCES)
  theirs = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], tokenize='13a')
  assert ours.score == pytest.approx(theirs.score, rel=1e-12)
  assert 0 < ours.score < 100
  assert 'tok:13a' in ours.signature and 'case:mixed' in ours.signature


def test_case_and_tokenisation_count():
  # Raw references: a lower-cased or re-tokenised output is not a match.
  assert corpus_bleu(['a dog runs .'], ['A dog runs.']).score < 100
  assert corpus_bleu(['A dog runs.'], ['A dog runs .']).score == (
      pytest.approx(100.0))  # 13a splits the full stop off both


def test_mismatched_lengths_are_an_error():
  with pytest.raises(ValueError, match='hypotheses'):
    corpus_bleu(HYPOTHESES, REFERENCES[:2])
