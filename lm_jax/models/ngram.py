"""N-gram Markov language models estimated from counts, with ARPA I/O.

`NGramLM` counts every n-gram of a corpus with vectorised numpy and smooths
the counts with maximum likelihood, add-k, interpolated Kneser-Ney with one
discount per order, interpolated modified Kneser-Ney (Chen & Goodman 1998,
as KenLM's lmplz estimates it), or as NLTK's `KneserNeyInterpolated` does
('kn_nltk', see `ngram_nltk`).

Sentences follow the KenLM/SRILM convention: one `<s>` on the left, never
predicted, and a `</s>` on the right that is scored; n-grams at the start of
a sentence are shorter than the model's order (`<s> w1 w2` rather than
`<s> <s> w1 w2`), so an ARPA file written here scores the same in KenLM.
'kn_nltk' pads as NLTK does instead: N-1 `<s>` before a sentence, and N-1
`</s>` after it in training.

Whatever the smoothing, a fitted model is stored in backoff form, as in an
ARPA file: for each order k, the sorted keys of its k-grams, their log10
probabilities and their log10 backoff weights. A k-gram's key is
`index_of_its_(k-1)-gram_prefix * vocab_size + last_word` (a 1-gram's index
is its word id), which fits in int64 for any order, unlike `vocab_size**k`.
Lookups of a whole split are then k `np.searchsorted` calls.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from lm_jax.models import arpa, ngram_nltk
from lm_jax.models.ngram_vocabulary import BOS, NLTK_UNK, UNK, Vocabulary

# KenLM's log10 probability of the never-predicted `<s>` and of log10(0).
_LOG_ZERO = -99.0
_SMOOTHINGS = ('mle', 'add_k', 'kn', 'mkn', 'kn_nltk')


class NGramLM:
  """An n-gram language model over the ids of a `Vocabulary`.

  Args:
    vocab: the words; ids outside it are an error, unknown words must be
      mapped to `<unk>` by `vocab.encode`.
    order: N, the length of the longest n-gram.
    smoothing: 'mle' (relative frequencies; an unseen context falls back to
      the next shorter one), 'add_k' (Laplace on the order-N counts),
      'kn' (interpolated Kneser-Ney, one discount per order), 'mkn'
      (interpolated modified Kneser-Ney, discounts D1, D2, D3+ per order)
      or 'kn_nltk' (NLTK's `KneserNeyInterpolated(order, discount)`, order
      >= 2, with NLTK's padding: N-1 `<s>` and N-1 `</s>` in training, and
      N-1 `<s>` before a test sentence, see `ngram_nltk`).
    k: the pseudo-count of 'add_k'.
    discount: the fixed discount of 'kn' and 'kn_nltk'; None estimates
      n1 / (n1 + 2 n2) per order from the count-of-counts for 'kn', and is
      NLTK's default, 0.1, for 'kn_nltk'.

  Attributes:
    discounts: after `fit` with 'kn' or 'mkn', order -> [D1, D2, D3+].
  """

  def __init__(self, vocab: Vocabulary, order: int, smoothing: str = 'mkn',
               k: float = 1.0, discount: Optional[float] = None):
    if smoothing not in _SMOOTHINGS:
      raise ValueError(f'unknown smoothing {smoothing!r}; known: '
                       f'{list(_SMOOTHINGS)}')
    if order < 1:
      raise ValueError(f'order must be >= 1, got {order}')
    if smoothing == 'add_k' and not k > 0:
      raise ValueError(f'add-k needs k > 0, got {k}')
    if discount is not None and not (smoothing in ('kn', 'kn_nltk')
                                     and 0 < discount <= 1):
      raise ValueError(f"a fixed discount, in (0, 1], is for 'kn' or "
                       f"'kn_nltk' only; got {discount} for {smoothing!r}")
    if smoothing == 'kn_nltk':
      if order < 2:
        # NLTK's unigram divides by the number of bigram types.
        raise ValueError("'kn_nltk' needs order >= 2, as NLTK does")
      discount = 0.1 if discount is None else discount
    self.vocab, self.order, self.smoothing = vocab, order, smoothing
    self.k, self.discount = k, discount
    self.nltk_padding = smoothing == 'kn_nltk'
    # Per order k (index 0 unused): sorted keys (None for 1-grams, whose
    # index is the word id), log10 probabilities and log10 backoffs.
    self._keys: list = []
    self._logp: list = []
    self._bow: list = []
    self.discounts: dict = {}

  @property
  def ngram_counts(self) -> list[int]:
    """How many n-grams of each order 1..N the model stores."""
    return [len(logp) for logp in self._logp[1:]]

  @property
  def _num_bos(self) -> int:
    """How many `<s>` precede a sentence: N - 1 the NLTK way, else one."""
    return self.order - 1 if self.nltk_padding else 1

  # --- Estimation. ----------------------------------------------------------

  def _flatten(self, sentences, num_eos: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
    """`<s>... ids </s>...` of every sentence, concatenated, and `span`:
    how many tokens of its padded sentence end at each position (so the
    first `<s>` has span 1)."""
    num_bos = self._num_bos
    lengths = np.array([len(s) + num_bos + num_eos for s in sentences],
                       np.int64)
    ends = np.cumsum(lengths)
    tokens = np.full(ends[-1] if len(ends) else 0, self.vocab.bos_id, np.int64)
    span = np.arange(len(tokens)) - np.repeat(ends - lengths, lengths) + 1
    after = np.repeat(lengths, lengths) - span  # tokens after this one
    tokens[after < num_eos] = self.vocab.eos_id
    inside = (span > num_bos) & (after >= num_eos)
    if inside.any():
      tokens[inside] = np.concatenate([np.asarray(s) for s in sentences])
      # Within a sentence `<s>` would be read as a sentence start, and the
      # model would predict it (KenLM refuses it too); NLTK's padding is the
      # word '<s>' itself.
      if not self.nltk_padding and (tokens[inside] == self.vocab.bos_id).any():
        raise ValueError(f'{BOS} inside a sentence: it marks sentence '
                         'starts only; rename that word in the corpus')
    return tokens, span

  def fit(self, sentences: Sequence[np.ndarray]) -> 'NGramLM':
    """Counts and smooths the n-grams of `sentences`.

    Args:
      sentences: int `[length_i]` id arrays, without `<s>` or `</s>`.

    Returns:
      self.
    """
    if self.smoothing not in _SMOOTHINGS:
      raise ValueError('a model read from an ARPA file cannot be refitted')
    vocab_size, n = len(self.vocab), self.order
    self.discounts = {}
    # As many `</s>` as `<s>`: N - 1 of each is NLTK's training padding.
    tokens, span = self._flatten(sentences, self._num_bos)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
      raise ValueError('token ids outside the vocabulary')
    idx = [None, tokens]
    raw = [None, np.bincount(tokens[span >= 2], minlength=vocab_size)]
    prefix, suffix = [None, None], [None, None]
    starts_bos = [None, np.arange(vocab_size) == self.vocab.bos_id]
    self._keys = [None, None]
    for order in range(2, n + 1):
      at = np.flatnonzero(span >= order)
      keys = idx[order - 1][at - 1] * vocab_size + tokens[at]
      uniq, first, inverse, counts = np.unique(
          keys, return_index=True, return_inverse=True, return_counts=True)
      idx.append(np.full(len(tokens), -1, np.int64))
      idx[order][at] = inverse.reshape(-1)
      at_first = at[first]
      self._keys.append(uniq)
      raw.append(counts)
      prefix.append(uniq // vocab_size)
      suffix.append(idx[order - 1][at_first])
      starts_bos.append(tokens[at_first - order + 1] == self.vocab.bos_id)

    if self.smoothing == 'kn_nltk':
      probs, gammas = ngram_nltk.estimate(raw, prefix, suffix, vocab_size,
                                          self.discount)
      self._logp = [None] + [_log10(p) for p in probs[1:]]
      self._bow = [None] + [_log10(g) for g in gammas[1:]] + [None]
      return self

    counts = raw
    if self.smoothing in ('kn', 'mkn'):
      # Kneser-Ney's adjusted counts: a lower-order n-gram counts the words
      # seen before it, except at the start of a sentence, where nothing can
      # precede `<s>` and the raw count stands in.
      counts = list(raw)
      for order in range(1, n):
        left = np.bincount(suffix[order + 1], minlength=len(raw[order]))
        counts[order] = np.where(starts_bos[order], raw[order], left)
    counts[1] = np.where(starts_bos[1], 0, counts[1])

    predicted = np.arange(vocab_size) != self.vocab.bos_id
    self._logp, self._bow = [None], [None]
    prob = self._unigram(counts[1], predicted)
    self._logp.append(_log10(np.where(predicted, prob, 0.0)))
    for order in range(2, n + 1):
      alpha, gamma = self._alpha_gamma(order, counts[order], prefix[order],
                                       starts_bos[order - 1])
      # Backoff form of the interpolation: a seen n-gram stores the whole
      # interpolated probability, its context stores gamma, so that an
      # unseen one gets gamma * p(lower order) as in the interpolated model.
      prob = alpha + gamma[prefix[order]] * prob[suffix[order]]
      self._logp.append(_log10(prob))
      self._bow.append(_log10(gamma))
    self._bow.append(None)
    self._logp[1][self.vocab.bos_id] = _LOG_ZERO
    return self

  def _discount_table(self, order: int, counts: np.ndarray) -> np.ndarray:
    """`[4]` discounts of counts 0, 1, 2, 3+ at `order`."""
    if self.smoothing == 'kn' and self.discount is not None:
      table = np.full(4, float(self.discount))
    else:
      nk = np.array([np.sum(counts == c) for c in (1, 2, 3, 4)], np.float64)
      with np.errstate(divide='ignore', invalid='ignore'):
        y = nk[0] / (nk[0] + 2 * nk[1])
        table = np.full(4, y)
        if self.smoothing == 'mkn':
          c = np.arange(1, 4)
          table[1:] = c - (c + 1) * y * nk[1:] / nk[:3]
      # Tiny corpora lack some count-of-counts; keep every discount in
      # (0, c] so that probabilities stay positive and normalised.
      fallback = y if 0 < y <= 1 else 0.5
      table = np.where(np.isfinite(table) & (table > 0), table, fallback)
      table = np.minimum(table, [1, 1, 2, 3])
    table[0] = 0.0
    self.discounts[order] = table[1:].tolist()
    return table

  def _unigram(self, counts: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """`[vocab]` unigram probabilities (`<s>` excluded)."""
    outcomes = predicted.sum()
    if self.smoothing == 'mle':
      return counts / counts.sum()
    if self.smoothing == 'add_k':
      # Lower orders of add-k pass the uniform distribution through, which
      # is what add-k gives an unseen order-N context.
      if self.order > 1:
        return np.full(len(counts), 1.0 / outcomes)
      return (counts + self.k) / (counts.sum() + self.k * outcomes)
    table = self._discount_table(1, counts[predicted])
    kept = counts - table[np.minimum(counts, 3)]
    # As KenLM: the leftover mass goes to the uniform distribution, so
    # words never seen (`<unk>` of a corpus without it) keep some mass.
    return (kept + table[np.minimum(counts, 3)].sum() / outcomes) / counts.sum()

  def _alpha_gamma(self, order: int, counts: np.ndarray, prefix: np.ndarray,
                   context_bos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation weights: p(w | h) = alpha[hw] + gamma[h] p(w | h').

    Args:
      order: the n-grams' order.
      counts: `[num n-grams of order]` (adjusted) counts.
      prefix: `[num n-grams of order]` row of each one's context h.
      context_bos: bool `[num_contexts]`, whether a context starts with
        `<s>` (then it is a whole history, cut short by the sentence start).

    Returns:
      alpha: float64 `[num n-grams of order]`.
      gamma: float64 `[num_contexts]`; 1 where a context was never seen, so
        that it falls back to the next shorter one.
    """
    num_contexts = len(context_bos)
    total = np.bincount(prefix, counts, minlength=num_contexts)
    seen = total > 0
    safe = np.where(seen, total, 1.0)
    if self.smoothing == 'add_k':
      # Add-k applies to whole histories: order N's, and shorter ones that
      # start with `<s>` (a sentence's first words). Other shorter
      # contexts pass the uniform distribution through.
      whole = context_bos if order < self.order else np.ones_like(seen)
      outcomes = len(self.vocab) - 1
      denominator = safe + self.k * outcomes
      gamma = np.where(seen & whole, self.k * outcomes / denominator, 1.0)
      alpha = np.where(whole[prefix], counts / denominator[prefix], 0.0)
      return alpha, gamma
    if self.smoothing == 'mle':
      return counts / safe[prefix], np.where(seen, 0.0, 1.0)
    table = self._discount_table(order, counts)
    discount = table[np.minimum(counts, 3)]
    alpha = (counts - discount) / safe[prefix]
    gamma = np.bincount(prefix, discount, minlength=num_contexts) / safe
    return alpha, np.where(seen, gamma, 1.0)

  # --- Scoring. -------------------------------------------------------------

  def _index(self, tokens: np.ndarray, span: np.ndarray) -> list:
    """idx[k][p]: row of the k-gram ending at position p in order k's
    table, or -1 where it is absent or longer than `span[p]`."""
    vocab_size = len(self.vocab)
    idx = [None, tokens]
    for order in range(2, len(self._logp)):
      prev = np.full(len(tokens), -1, np.int64)
      prev[1:] = idx[order - 1][:-1]
      keys = prev * vocab_size + tokens
      table = self._keys[order]
      if not len(table):
        idx.append(np.full(len(tokens), -1, np.int64))
        continue
      pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
      found = (span >= order) & (prev >= 0) & (table[pos] == keys)
      idx.append(np.where(found, pos, -1))
    return idx

  def _score(self, tokens: np.ndarray, span: np.ndarray,
             targets: np.ndarray) -> np.ndarray:
    """log10 p of `tokens[targets]` given what precedes them (vectorised
    ARPA backoff: the longest known n-gram plus the backoffs of the longer
    contexts)."""
    idx = self._index(tokens, span)
    longest = np.minimum(len(self._logp) - 1, span[targets])
    matched = np.ones_like(longest)
    logp = self._logp[1][tokens[targets]]
    # An order without n-grams (training sentences all too short for it)
    # matches nothing, and its rows could not be indexed.
    for order in range(2, len(self._logp)):
      row = idx[order][targets]
      if not len(self._logp[order]):
        continue
      logp = np.where(row >= 0, self._logp[order][np.maximum(row, 0)], logp)
      matched = np.where(row >= 0, order, matched)
    for length in range(1, len(self._logp) - 1):
      row = idx[length][targets - 1]
      if not len(self._bow[length]):
        continue
      use = (length >= matched) & (length < longest) & (row >= 0)
      logp = logp + np.where(use, self._bow[length][np.maximum(row, 0)], 0.0)
    return logp

  def token_log10_probs(self, sentences: Sequence[np.ndarray]) -> np.ndarray:
    """float64 `[sum(len_i + 1)]`: log10 p of every token and `</s>`."""
    tokens, span = self._flatten(sentences)
    return self._score(tokens, span, np.flatnonzero(span > self._num_bos))

  def ngram_log10_probs(self, ngrams) -> np.ndarray:
    """float64 `[num]`: log10 p(last id | the ids before it) of each row of
    int `[num, length]` n-grams, as NLTK's `score(word, context)`: only a
    row's last N ids count, and nothing precedes its first (a row that
    starts with `<s>` is the start of a sentence)."""
    ngrams = np.asarray(ngrams, np.int64)
    ngrams = ngrams[:, max(0, ngrams.shape[1] - self.order):]
    num, length = ngrams.shape
    span = np.tile(np.arange(1, length + 1), num)
    return self._score(ngrams.reshape(-1), span,
                       np.arange(length - 1, num * length, length))

  def _tail(self, context_ids: Sequence[int]) -> list:
    """The last N - 1 ids of a context: all an n-gram model looks at."""
    context = list(context_ids)
    return context[max(0, len(context) - self.order + 1):]

  def log10_prob(self, context_ids: Sequence[int], token_id: int) -> float:
    """log10 p(token | context); a context that starts with `<s>` is the
    start of a sentence (padded with N - 1 of them for 'kn_nltk'), any
    other one is mid-sentence."""
    return float(self.ngram_log10_probs([[*self._tail(context_ids),
                                          token_id]])[0])

  def next_log10_probs(self, context_ids: Sequence[int]) -> np.ndarray:
    """float64 `[vocab]`: log10 p(w | context) for every id w."""
    vocab_size = len(self.vocab)
    ngrams = np.tile(np.array([*self._tail(context_ids), 0], np.int64),
                     (vocab_size, 1))
    ngrams[:, -1] = np.arange(vocab_size)
    return self.ngram_log10_probs(ngrams)

  def sentence_log10_prob(self, ids: np.ndarray) -> float:
    """log10 p(ids </s> | <s>)."""
    return float(self.token_log10_probs([ids]).sum())

  def perplexity(self, sentences: Sequence[np.ndarray]) -> float:
    """10 ** (-mean log10 p) over every token and `</s>` (as KenLM and
    SRILM report it)."""
    return float(10.0 ** -self.token_log10_probs(sentences).mean())

  def sample(self, rng: np.random.Generator, max_length: int) -> np.ndarray:
    """One sentence drawn from the model: int64 `[<= max_length]` ids,
    without `<s>` or `</s>`."""
    context = [self.vocab.bos_id] * self._num_bos
    for _ in range(max_length):
      prob = 10.0 ** self.next_log10_probs(context)
      prob[self.vocab.bos_id] = 0.0
      token = int(rng.choice(len(prob), p=prob / prob.sum()))
      if token == self.vocab.eos_id:
        break
      context.append(token)
    return np.array(context[self._num_bos:], np.int64)

  def _ngram_names(self) -> list[list[str]]:
    """For each order 1..N, its n-grams as space-joined words, in table
    order.

    An n-gram's key is its context's index in the table of the order
    below, times the vocabulary size, plus its last word: so each order's
    names extend the order below's, a vectorised step per order.
    """
    vocab_size = len(self.vocab)
    words = np.array(self.vocab.words, dtype=object)
    names = [words]
    for order in range(2, len(self._logp)):
      keys = self._keys[order]
      names.append(names[-1][keys // vocab_size] + ' '
                   + words[keys % vocab_size])
    return [order_names.tolist() for order_names in names]

  def to_arpa(self, path: str) -> None:
    """Writes the model in ARPA format (log10 probabilities and backoffs).

    ARPA has no log10(0), so an 'mle' model's unseen events read back as
    1e-99 (-99 is written), not 0; smoothed models read back exactly.
    """
    n = len(self._logp) - 1
    names = self._ngram_names()
    logp = [np.maximum(self._logp[order], _LOG_ZERO).tolist()
            for order in range(1, n + 1)]
    bow = [np.maximum(self._bow[order], _LOG_ZERO).tolist()
           if order < n else None for order in range(1, n + 1)]
    arpa.write(path, names, logp, bow)

  @classmethod
  def from_arpa(cls, path: str, nltk_padding: bool = False) -> 'NGramLM':
    """Reads an ARPA file; the 1-grams, in file order, form the vocabulary.

    Args:
      path: the file.
      nltk_padding: the model was 'kn_nltk': its sentences start with N - 1
        `<s>` and unknown words are NLTK's `<UNK>` (ARPA records neither).
    """
    sections = arpa.read(path)
    n = max(sections)
    vocab = Vocabulary([gram[0] for gram in sections[1].grams],
                       unk=NLTK_UNK if nltk_padding else UNK)
    model = cls(vocab, n)
    model.nltk_padding = nltk_padding
    # Only the probabilities survive in ARPA, not how they were smoothed.
    model.smoothing = 'arpa'
    model._keys, model._logp, model._bow = [None], [None], [None]
    for order in range(1, n + 1):
      grams, logp, bow = sections[order]
      ids = vocab.encode([w for gram in grams for w in gram])
      ids = ids.reshape(len(grams), order)
      if order == 1:
        # Words map to ids in file order, so 1-grams are already in id order;
        # the specials Vocabulary added have no entry (log10 p = -99).
        model._keys.append(None)
        model._logp.append(np.full(len(vocab), _LOG_ZERO))
        model._bow.append(np.zeros(len(vocab)))
        model._logp[1][ids[:, 0]], model._bow[1][ids[:, 0]] = logp, bow
        continue
      prefix = model._index(ids[:, :-1].reshape(-1),
                            np.tile(np.arange(1, order), len(ids)))
      prefix = prefix[order - 1][order - 2::order - 1]
      if (prefix < 0).any():
        raise ValueError(f'{path}: {order}-grams whose prefix is missing')
      keys = prefix * len(vocab) + ids[:, -1]
      sort = np.argsort(keys)
      model._keys.append(keys[sort])
      model._logp.append(logp[sort])
      model._bow.append(bow[sort])
    model._bow[n] = None
    return model


def _log10(x: np.ndarray) -> np.ndarray:
  with np.errstate(divide='ignore'):
    return np.log10(x)
