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

With `nltk` importable, `nltk.lm.KneserNeyInterpolated(3)` (discount 0.1) is
fitted on PTB train through `padded_everygram_pipeline`, as NLTK documents,
and compared with our 'kn_nltk' smoothing, which defines the same estimator
(`lm_jax.models.ngram_nltk`). Both score the same n-grams: each test
sentence padded with two `<s>`, every word and one `</s>` (the tokens KenLM
scores). NLTK takes about a second per sentence, so it scores only the first
`--nltk_sentences` test sentences and its time for the whole test split is
extrapolated from them, per token; lm_jax scores the whole split. Timed end
to end: NLTK's fit builds its vocabulary and counts, ours includes the
vocabulary and the encoding of the words to ids.
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

from lm_jax.models.ngram import NGramLM  # noqa: E402
from lm_jax.models.ngram_vocabulary import Vocabulary  # noqa: E402


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


def compare_nltk(train, test, num_sentences: int, repeats: int) -> None:
  # pylint: disable=import-outside-toplevel
  from nltk.lm import KneserNeyInterpolated
  from nltk.lm.preprocessing import padded_everygram_pipeline
  order, discount = 3, 0.1  # NLTK's default discount
  sample = test if num_sentences < 0 else test[:num_sentences]

  def fit_nltk():
    lm = KneserNeyInterpolated(order, discount=discount)
    lm.fit(*padded_everygram_pipeline(order, train))
    return lm

  # The tokens NGramLM.perplexity scores: every word and one `</s>`, each
  # after the order - 1 words before it, padded with `<s>` as NLTK pads.
  padded = [['<s>'] * (order - 1) + s + ['</s>'] for s in sample]
  ngrams = [tuple(p[i - order + 1:i + 1])
            for p in padded for i in range(order - 1, len(p))]
  nltk_lm, nltk_fit_s = timed(fit_nltk, 1)
  nltk_ppl, nltk_score_s = timed(lambda: nltk_lm.perplexity(ngrams), 1)

  def fit_ours():
    # NLTK's unknown-word symbol, so that PTB's `<unk>` is a word in both.
    vocab = Vocabulary.from_sentences(train, unk='<UNK>')
    return NGramLM(vocab, order, 'kn_nltk', discount=discount).fit(
        [vocab.encode(s) for s in train])

  def perplexity(model, sentences):
    return model.perplexity([model.vocab.encode(s) for s in sentences])

  model, fit_s = timed(fit_ours, repeats)
  test_ppl, score_s = timed(lambda: perplexity(model, test), repeats)
  sample_ppl = perplexity(model, sample)
  sample_tokens, test_tokens = len(ngrams), sum(len(s) + 1 for s in test)
  nltk_test_s = nltk_score_s * test_tokens / sample_tokens
  relative = abs(sample_ppl - nltk_ppl) / nltk_ppl
  nltk_total_s, ours_total_s = nltk_fit_s + nltk_test_s, fit_s + score_s
  speedup = nltk_total_s / ours_total_s

  def verdict(ok):
    return 'meets' if ok else 'MISSES'

  print(f'NLTK KneserNeyInterpolated({order}, discount={discount}) against '
        f"lm_jax 'kn_nltk':")
  print(f'  NLTK   fit {nltk_fit_s:7.2f} s; scores {len(sample)} test '
        f'sentences ({sample_tokens} tokens) in {nltk_score_s:.2f} s '
        f'({nltk_score_s / len(sample):.2f} s a sentence), so the whole test '
        f'split in {nltk_test_s:,.0f} s (extrapolated per token)')
  print(f'  lm_jax fit {fit_s:7.3f} s; scores the whole test split '
        f'({test_tokens} tokens) in {score_s:.3f} s')
  print(f'  end to end, fit + whole test split: NLTK {nltk_total_s:,.0f} s '
        f'(extrapolated), lm_jax {ours_total_s:.3f} s: x{speedup:,.0f} '
        f'({verdict(speedup >= 100)} the x100 target)')
  print(f'  perplexity on the {len(sample)} sentences: NLTK {nltk_ppl:.6f}, '
        f'lm_jax {sample_ppl:.6f}, relative difference {relative:.1e} '
        f'({verdict(relative <= 1e-6)} the 1e-6 target)')
  print(f'  lm_jax perplexity on the whole test split: {test_ppl:.4f}')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', default=os.path.join(
      os.environ.get('LM_JAX_DATA')
      or os.path.join(ROOT, '..', 'shared', 'data'), 'ptb'))
  parser.add_argument('--orders', type=int, nargs='+', default=[3, 5])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--nltk_sentences', type=int, default=50,
                      help='test sentences NLTK scores; -1: all (hours)')
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
    compare_nltk(train, test, args.nltk_sentences, args.repeats)
  except ImportError:
    print('nltk is not installed: no NLTK comparison')


if __name__ == '__main__':
  main()
