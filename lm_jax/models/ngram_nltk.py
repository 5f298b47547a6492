"""NLTK's interpolated Kneser-Ney (`nltk.lm.KneserNeyInterpolated`), vectorised.

`NGramLM(vocab, order, 'kn_nltk', discount=D)` defines the estimator that
NLTK 3.10 computes for

  lm = nltk.lm.KneserNeyInterpolated(order, discount=D)
  lm.fit(*nltk.lm.preprocessing.padded_everygram_pipeline(order, sentences))

so that its probabilities equal `lm.score(word, context)` and its
perplexities `lm.perplexity(ngrams)` to rounding. It is not Chen & Goodman's
interpolated Kneser-Ney (the 'kn' smoothing, as KenLM estimates it); what
NLTK does differently, all reproduced here:

- Padding: each training sentence gets N-1 `<s>` on the left and N-1 `</s>`
  on the right, and every k-gram (k <= N) of the padded sentence is counted,
  `<s> <s>`, `</s> </s>` and the 1-gram `<s>` included. `<s>` is an ordinary
  word: it has a probability, and so must a sentence's context be padded
  with N-1 `<s>` at test time.
- The highest order discounts raw counts: alpha(w | h) = max(c(hw) - D, 0)
  / c(h.).
- A lower order k < N discounts continuation counts, the distinct words seen
  before the n-gram: alpha(w | h) = max(N1+(. h w) - D, 0) / N1+(. h .). Its
  gamma(h) = D N1+(h .) / N1+(. h .) though counts the distinct *raw*
  followers of h, so a lower order is not exactly normalised where the two
  disagree (after `<s>`, whose `<s> <s>` is never preceded).
- gamma(h) = D N1+(h .) / c(h.) at the highest order, and a context never
  seen before a word (NLTK's `not counts[h]`) passes the lower order through:
  alpha = 0, gamma = 1.
- The unigram is N1+(. w) / N1+(. .), with no uniform floor: a word never
  preceded by another (any word unknown to training) has probability 0.
- One discount D, 0.1 by default, at every order.
- Words are looked up in NLTK's `Vocabulary`: with `unk_cutoff` c, a word
  seen fewer than c times is its `unk_label` in training and testing;
  `Vocabulary.from_sentences(sentences, min_count=c, unk=label)` does the
  same.

A probability depends only on the n-gram (NLTK's `score` cuts the context
to its last N-1 words and knows no sentence boundary), so the model fits the
backoff tables `NGramLM` scores with: a seen n-gram stores its whole
interpolated probability, a context its gamma. Rounding aside, a backoff
lookup reproduces NLTK's recursion, because an n-gram that is not stored has
alpha = 0 (its raw count, hence its continuation count, is 0) and every
suffix of a stored n-gram is stored.
"""

from __future__ import annotations

import numpy as np


def estimate(raw: list, prefix: list, suffix: list, vocab_size: int,
             discount: float) -> tuple[list, list]:
  """NLTK's interpolated Kneser-Ney probabilities in backoff form.

  Args:
    raw: per order k = 2..N (index 0 and 1 unused): int `[num k-grams]`
      counts of the k-grams of the padded training text.
    prefix: per order k = 2..N: each k-gram's first k-1 words, as a row of
      order k-1 (a word id for k = 2).
    suffix: the same for each k-gram's last k-1 words.
    vocab_size: the number of word ids.
    discount: NLTK's D.

  Returns:
    (probs, gammas): per order k (index 0 unused), float64 probabilities of
    its n-grams (`[vocab_size]` for k = 1, as a word id is its 1-gram's row)
    and, for k < N, gammas of its n-grams as contexts of order k + 1.
  """
  n = len(raw) - 1
  sizes = [None, vocab_size] + [len(r) for r in raw[2:]]
  # continuation[k][g]: N1+(. g), the distinct words seen before k-gram g.
  continuation = [None] + [np.bincount(suffix[k + 1], minlength=sizes[k])
                           for k in range(1, n)]
  probs, gammas = [None, continuation[1] / len(raw[2])], [None]
  for k in range(2, n + 1):
    counts = raw[k] if k == n else continuation[k]
    total = np.bincount(prefix[k], counts, minlength=sizes[k - 1])
    followers = np.bincount(prefix[k], minlength=sizes[k - 1])
    # A lower-order context whose followers are all unpreceded would make
    # NLTK divide by zero; NLTK's padding never produces one, and here it
    # just passes the lower order through like an unseen context.
    seen = total > 0
    safe = np.where(seen, total, 1.0)
    # Same operations, in the same order, as NLTK's `alpha_gamma`.
    alpha = np.maximum(counts - discount, 0.0) / safe[prefix[k]]
    gamma = np.where(seen, discount * followers / safe, 1.0)
    probs.append(alpha + gamma[prefix[k]] * probs[k - 1][suffix[k]])
    gammas.append(gamma)
  return probs, gammas
