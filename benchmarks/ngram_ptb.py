"""N-gram language models on Penn Treebank: estimation and scoring speed,
perplexity, and agreement with KenLM and NLTK where they are installed.

Fits interpolated modified Kneser-Ney of orders 3 and 5 on PTB train
(Mikolov et al.'s 10k-word version) and reports the median estimation time,
valid/test perplexity (over every word and `</s>`, as KenLM reports it) and
the median time to score the test split.

  python benchmarks/ngram_ptb.py
  python benchmarks/ngram_ptb.py --data_dir ../shared/data/ptb --repeats 5

With `kenlm` importable, the 5-gram is written as ARPA, loaded by KenLM, and
the two full-sentence log10 scores of every test sentence are compared.
With `nltk` importable, `nltk.lm.KneserNeyInterpolated(3)` is fitted on the
same sentences and timed against our fixed-discount 'kn' mode with NLTK's
discount (0.1) on a subset of test sentences. The estimators still differ
in details NLTK fixes (two `<s>` of padding, a uniform lowest order, gamma
from raw follower counts), so the perplexities are close, not equal.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lm_jax.models.ngram import NGramLM, Vocabulary  # noqa: E402


def read_split(data_dir: str, split: str) -> list[list[str]]:
  """PTB's `ptb.<split>.txt` (or `.txt.gz`): one sentence a line."""
  path = os.path.join(data_dir, f'ptb.{split}.txt')
  if not os.path.exists(path):
    path += '.gz'
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    return [line.split() for line in f]


def timed(fn, repeats: int):
  """(last result, median seconds over `repeats` calls)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return result, statistics.median(times)


def compare_kenlm(model: NGramLM, vocab: Vocabulary, test) -> None:
  import kenlm  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'model.arpa')
    _, write_s = timed(lambda: model.to_arpa(path), 1)
    reference = kenlm.Model(path)
  theirs = np.array([reference.score(' '.join(s)) for s in test])
  ours = np.array([model.sentence_log10_prob(vocab.encode(s)) for s in test])
  tokens = sum(len(s) + 1 for s in test)
  print(f'  KenLM on our ARPA (written in {write_s:.1f} s): perplexity '
        f'{10 ** (-theirs.sum() / tokens):.3f}, max |log10 difference| per '
        f'sentence {np.abs(theirs - ours).max():.2e}')


def compare_nltk(vocab: Vocabulary, train, train_ids, test, order: int,
                 num_sentences: int) -> None:
  # pylint: disable=import-outside-toplevel
  from nltk.lm import KneserNeyInterpolated
  from nltk.lm.preprocessing import padded_everygram_pipeline
  subset = test[:num_sentences]

  def fit_nltk():
    lm = KneserNeyInterpolated(order)
    ngrams, words = padded_everygram_pipeline(order, train)
    lm.fit(ngrams, words)
    return lm

  def score_nltk(lm):
    # Score the tokens we score (every word and one `</s>`), in log2.
    total = 0.0
    for s in subset:
      padded = ['<s>'] * (order - 1) + s + ['</s>']
      for i in range(order - 1, len(padded)):
        total += lm.logscore(padded[i], padded[i - order + 1:i])
    return total

  lm, nltk_fit_s = timed(fit_nltk, 1)
  log2_sum, nltk_score_s = timed(lambda: score_nltk(lm), 1)
  subset_ids = [vocab.encode(s) for s in subset]
  ours, fit_s = timed(
      lambda: NGramLM(vocab, order, 'kn', discount=0.1).fit(train_ids), 3)
  perplexity, score_s = timed(lambda: ours.perplexity(subset_ids), 3)
  tokens = sum(len(s) + 1 for s in subset)
  print(f'NLTK KneserNeyInterpolated({order}), {len(subset)} test sentences:')
  print(f'  NLTK   fit {nltk_fit_s:8.2f} s  score {nltk_score_s:8.2f} s  '
        f'perplexity {2 ** (-log2_sum / tokens):.2f}')
  print(f'  lm_jax fit {fit_s:8.2f} s  score {score_s:8.4f} s  '
        f'perplexity {perplexity:.2f}  (kn, discount 0.1)')
  print(f'  speed-up: fit x{nltk_fit_s / fit_s:.0f}, '
        f'score x{nltk_score_s / score_s:.0f}')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir',
                      default=os.path.join(ROOT, '..', 'shared', 'data', 'ptb'))
  parser.add_argument('--orders', type=int, nargs='+', default=[3, 5])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--nltk_sentences', type=int, default=200)
  args = parser.parse_args()

  train, valid, test = (read_split(args.data_dir, s)
                        for s in ('train', 'valid', 'test'))
  vocab = Vocabulary.from_sentences(train)
  train_ids, valid_ids, test_ids = ([vocab.encode(s) for s in split]
                                    for split in (train, valid, test))
  print(f'PTB: vocabulary {len(vocab)}, train {len(train)} sentences, '
        f'test {sum(len(s) + 1 for s in test)} scored tokens')
  for order in args.orders:
    model, fit_s = timed(
        lambda o=order: NGramLM(vocab, o, 'mkn').fit(train_ids), args.repeats)
    test_ppl, score_s = timed(lambda m=model: m.perplexity(test_ids),
                              args.repeats)
    sizes = ' '.join(map(str, model.ngram_counts))
    print(f'MKN order {order}: fit {fit_s:.2f} s, valid perplexity '
          f'{model.perplexity(valid_ids):.2f}, test perplexity {test_ppl:.2f}, '
          f'test scoring {score_s * 1e3:.0f} ms; n-grams per order: {sizes}')
    if order == max(args.orders):
      try:
        compare_kenlm(model, vocab, test)
      except ImportError:
        print('  kenlm is not installed: no KenLM comparison')
  try:
    compare_nltk(vocab, train, train_ids, test, 3, args.nltk_sentences)
  except ImportError:
    print('nltk is not installed: no NLTK comparison')


if __name__ == '__main__':
  main()
