"""Tests of lm_jax.models.ngram: the lecture's bigram example, normalisation,
an independent slow reference of modified Kneser-Ney, ARPA round trips (and
KenLM, where installed), and the PTB perplexity of Mikolov et al. (2011).
"""

import collections
import gzip
import math
import os

import numpy as np
import pytest

from lm_jax.models.ngram import NGramLM
from lm_jax.models.ngram_vocabulary import Vocabulary

LECTURE = ['I like rabbits', 'I like turtles', "I don't like snails"]


def _corpus(seed=0, num_sentences=400, num_words=30):
  """Zipf-ish random sentences: every count-of-count up to 4 is present."""
  rng = np.random.default_rng(seed)
  words = [f'w{i}' for i in range(num_words)]
  prob = 1.0 / np.arange(1, num_words + 1)
  return [list(rng.choice(words, rng.integers(1, 12), p=prob / prob.sum()))
          for _ in range(num_sentences)]


def _fit(sentences, order, smoothing, **kwargs):
  vocab = Vocabulary.from_sentences(sentences)
  model = NGramLM(vocab, order, smoothing, **kwargs)
  return model.fit([vocab.encode(s) for s in sentences]), vocab


def test_lecture_bigram_mle():
  model, vocab = _fit([s.split() for s in LECTURE], 2, 'mle')

  def prob(*words):
    ids = vocab.encode(words)
    # The lecture's sentence probability: no <s> or </s> terms.
    return 10 ** sum(model.log10_prob(ids[i - 1:i], ids[i])
                     for i in range(1, len(ids)))

  assert prob('I', 'like') == pytest.approx(2 / 3)
  assert prob('I', 'like', 'rabbits') == pytest.approx(2 / 3 * 1 / 3)
  assert round(prob('I', 'like', 'rabbits'), 2) == 0.22
  assert prob('I', "don't", 'like', 'snails') == pytest.approx(1 / 3 * 1 / 3)
  assert round(prob('I', "don't", 'like', 'snails'), 2) == 0.11


def test_vocabulary_keeps_a_corpus_unk_and_maps_unknown_words_to_it():
  vocab = Vocabulary.from_sentences([['a', '<unk>', 'b']])
  assert vocab.words.count('<unk>') == 1
  assert list(vocab.encode(['b', 'zzz', '<unk>'])) == [
      vocab.words.index('b'), vocab.unk_id, vocab.unk_id]


@pytest.mark.parametrize('smoothing', ['mkn', 'kn', 'add_k', 'mle'])
@pytest.mark.parametrize('order', [1, 2, 3])
def test_every_context_sums_to_one(smoothing, order):
  sentences = _corpus(num_sentences=60)
  model, vocab = _fit(sentences, order, smoothing, k=0.5)
  w = vocab.encode(['w0', 'w1', 'w2', 'w29'])
  contexts = [[], [vocab.bos_id], [vocab.bos_id, w[0]], [w[0], w[1]],
              [w[2], w[3]], [vocab.unk_id, vocab.unk_id]]
  for context in contexts:
    prob = 10 ** model.next_log10_probs(context)
    assert prob[vocab.bos_id] < 1e-90
    np.testing.assert_allclose(prob.sum(), 1.0, rtol=1e-12)


@pytest.mark.parametrize('smoothing', ['mkn', 'kn', 'add_k', 'mle'])
def test_a_sentence_holding_the_start_symbol_is_refused(smoothing):
  """Read as a sentence start, a literal `<s>` would make the model
  predict it and its contexts sum to more than 1 (1.09 for 'mkn')."""
  sentences = [['a', '<s>', 'b'], ['a', 'b']] * 5
  with pytest.raises(ValueError, match='<s> inside a sentence'):
    _fit(sentences, 3, smoothing, k=0.5)
  model, vocab = _fit([['a', 'b']], 3, smoothing, k=0.5)
  with pytest.raises(ValueError, match='<s> inside a sentence'):
    model.token_log10_probs([vocab.encode(['a', '<s>', 'b'])])


@pytest.mark.parametrize('smoothing', ['mkn', 'kn', 'add_k', 'mle'])
def test_an_order_without_ngrams_matches_nothing(smoothing):
  """One-word sentences hold no 4-gram ('<s> a </s>'): a 4-gram model
  still scores, sums to one and samples."""
  sentences = [['a'], ['b'], ['a']]
  model, vocab = _fit(sentences, 4, smoothing, k=0.5)
  assert model.ngram_counts[-1] == 0
  for context in ([vocab.bos_id], vocab.encode(['a', 'b', 'a'])):
    prob = 10 ** model.next_log10_probs(context)
    np.testing.assert_allclose(prob.sum(), 1.0, rtol=1e-12)
  assert np.isfinite(model.perplexity([vocab.encode(['b'])]))
  assert len(model.sample(np.random.default_rng(0), max_length=5)) <= 5


@pytest.mark.parametrize('order', [2, 3, 4])
def test_add_k_counts_a_sentences_first_word_at_every_order(order):
  """p(w | <s>) is add-k over the sentences' first words, (c + k) / (n +
  k V), whatever the order: the history <s> is whole, not a shortened
  one that falls back to the uniform distribution."""
  sentences = [['a', 'b']] * 30 + [['c', 'b']] * 20 + [['b', 'd']]
  model, vocab = _fit(sentences, order, 'add_k', k=0.5)
  outcomes = len(vocab) - 1  # every word but <s>
  for word, count in (('a', 30), ('c', 20), ('d', 0)):
    expected = (count + 0.5) / (51 + 0.5 * outcomes)
    got = 10 ** model.log10_prob([vocab.bos_id], vocab.encode([word])[0])
    assert got == pytest.approx(expected, rel=1e-12), word
  # And the trigram of a sentence's first two words, for order 3 and up.
  if order >= 3:
    a, b = vocab.encode(['a', 'b'])
    got = 10 ** model.log10_prob([vocab.bos_id, a], b)
    assert got == pytest.approx((30 + 0.5) / (30 + 0.5 * outcomes))


def _reference_mkn(sentences, order):
  """Interpolated modified Kneser-Ney, one dict lookup at a time."""
  raw = collections.Counter()
  padded = [['<s>', *s, '</s>'] for s in sentences]
  for s in padded:
    for i in range(1, len(s)):
      for n in range(1, min(order, i + 1) + 1):
        raw[tuple(s[i - n + 1:i + 1])] += 1
  left = collections.Counter(g[1:] for g in raw if len(g) > 1)
  adjusted = {g: c if len(g) == order or g[0] == '<s>' else left[g]
              for g, c in raw.items()}
  discounts = {}
  for n in range(1, order + 1):
    t = collections.Counter(c for g, c in adjusted.items() if len(g) == n)
    y = t[1] / (t[1] + 2 * t[2])
    discounts[n] = [0] + [c - (c + 1) * y * t[c + 1] / t[c] for c in (1, 2, 3)]
  followers = collections.defaultdict(list)
  for g, c in adjusted.items():
    followers[g[:-1]].append(c)
  outcomes = len({w for s in padded for w in s} | {'<unk>'}) - 1

  def prob(word, context):
    counts = followers.get(context, [])
    if not counts:
      return prob(word, context[1:])
    d = discounts[len(context) + 1]
    total = sum(counts)
    gamma = sum(d[min(c, 3)] for c in counts) / total
    c = adjusted.get(context + (word,), 0)
    lower = 1 / outcomes if not context else prob(word, context[1:])
    return (c - d[min(c, 3)]) / total + gamma * lower

  scores = []
  for s in padded:
    for i in range(1, len(s)):
      scores.append(math.log10(prob(s[i], tuple(s[max(0, i - order + 1):i]))))
  return np.array(scores), discounts


@pytest.mark.parametrize('order', [1, 2, 3, 4])
def test_vectorised_scores_equal_a_slow_reference(order):
  # 300 Zipf words: even the unigram level has counts 1 to 4.
  train = _corpus(num_words=300)
  model, vocab = _fit(train, order, 'mkn')
  reference, discounts = _reference_mkn(train, order)
  for n in range(1, order + 1):
    np.testing.assert_allclose(model.discounts[n], discounts[n][1:])
  ours = model.token_log10_probs([vocab.encode(s) for s in train])
  np.testing.assert_allclose(ours, reference, atol=1e-12)
  # And one token at a time through the public single-context API.
  s = vocab.encode(train[0])
  context = [vocab.bos_id]
  singles = []
  for token in [*s, vocab.eos_id]:
    singles.append(model.log10_prob(context, token))
    context.append(token)
  np.testing.assert_allclose(singles, ours[:len(s) + 1], atol=1e-12)


@pytest.mark.parametrize('smoothing', ['mkn', 'kn', 'add_k', 'kn_nltk'])
def test_arpa_round_trip_scores_identically(tmp_path, smoothing):
  """'kn_nltk' reloads with NLTK's padding (N - 1 `<s>`, `<UNK>`)."""
  nltk = smoothing == 'kn_nltk'
  train, test = _corpus(seed=0), _corpus(seed=1, num_sentences=50)
  vocab = Vocabulary.from_sentences(train, unk='<UNK>' if nltk else '<unk>')
  model = NGramLM(vocab, 3, smoothing).fit([vocab.encode(s) for s in train])
  path = str(tmp_path / 'model.arpa')
  model.to_arpa(path)
  loaded = NGramLM.from_arpa(path, nltk_padding=nltk)
  assert loaded.vocab.words == vocab.words

  def assert_same(theirs, ours):
    # ARPA writes log10(0) (NLTK's unknown word's) as -99.
    np.testing.assert_array_equal(theirs > -90, ours > -90)
    np.testing.assert_array_equal(theirs[ours > -90], ours[ours > -90])

  for sentences in (train, test + [['never', 'seen', 'words']]):
    assert_same(
        loaded.token_log10_probs([loaded.vocab.encode(s) for s in sentences]),
        model.token_log10_probs([vocab.encode(s) for s in sentences]))
  context = [vocab.bos_id] * 2
  assert_same(loaded.next_log10_probs(context),
              model.next_log10_probs(context))


def test_a_word_ending_like_a_section_header_reads_back(tmp_path):
  """A highest-order line has no backoff after its last word."""
  train = [['we', 'count', 'n-grams:'], ['count', 'the', '3-grams:', 'here']]
  vocab = Vocabulary.from_sentences(train)
  model = NGramLM(vocab, 3, 'mkn').fit([vocab.encode(s) for s in train])
  path = str(tmp_path / 'model.arpa')
  model.to_arpa(path)
  loaded = NGramLM.from_arpa(path)
  np.testing.assert_array_equal(
      loaded.token_log10_probs([loaded.vocab.encode(s) for s in train]),
      model.token_log10_probs([vocab.encode(s) for s in train]))


def test_a_truncated_arpa_file_or_a_bad_k_is_a_value_error(tmp_path):
  model, _ = _fit(_corpus(), 3, 'mkn')
  path = tmp_path / 'model.arpa'
  model.to_arpa(str(path))
  text = path.read_text()
  path.write_text(text[:len(text) // 2])
  with pytest.raises(ValueError, match='not a whole ARPA file'):
    NGramLM.from_arpa(str(path))
  path.write_text('garbage\n')
  with pytest.raises(ValueError, match='not a whole ARPA file'):
    NGramLM.from_arpa(str(path))
  with pytest.raises(ValueError, match='k > 0'):
    _fit(_corpus(), 2, 'add_k', k=-1.0)


@pytest.mark.parametrize('order', [2, 3, 5])
def test_kenlm_scores_our_arpa_like_we_do(tmp_path, order):
  kenlm = pytest.importorskip('kenlm')
  train, test = _corpus(seed=0), _corpus(seed=1, num_sentences=50)
  model, vocab = _fit(train, order, 'mkn')
  path = str(tmp_path / 'model.arpa')
  model.to_arpa(path)
  reference = kenlm.Model(path)
  for s in test + [['w1', 'unseen', 'w2']]:
    assert reference.score(' '.join(s)) == pytest.approx(
        model.sentence_log10_prob(vocab.encode(s)), abs=1e-4)


def _fit_nltk(train, order, discount=0.1, unk_cutoff=1):
  """NLTK's `KneserNeyInterpolated` fitted as NLTK documents it, and ours
  in 'kn_nltk' mode on the same sentences."""
  pytest.importorskip('nltk')
  # pylint: disable=import-outside-toplevel
  from nltk import lm as nltk_lm
  from nltk.lm.preprocessing import padded_everygram_pipeline
  theirs = nltk_lm.KneserNeyInterpolated(
      order, discount=discount,
      vocabulary=nltk_lm.Vocabulary(unk_cutoff=unk_cutoff))
  theirs.fit(*padded_everygram_pipeline(order, train))
  vocab = Vocabulary.from_sentences(train, min_count=unk_cutoff, unk='<UNK>')
  ours = NGramLM(vocab, order, 'kn_nltk', discount=discount)
  return ours.fit([vocab.encode(s) for s in train]), vocab, theirs


def _probs(model, vocab, ngrams):
  """p(last word | the others) of word tuples, one vectorised call per
  n-gram length."""
  probs = np.empty(len(ngrams))
  for length in {len(g) for g in ngrams}:
    rows = [i for i, g in enumerate(ngrams) if len(g) == length]
    ids = vocab.encode([w for i in rows for w in ngrams[i]])
    probs[rows] = 10 ** model.ngram_log10_probs(ids.reshape(len(rows), -1))
  return probs


def _padded_ngrams(sentences, order, every=False):
  """The n-grams of sentences padded by NLTK's pad_both_ends: every
  length up to `order` (everygrams, as NLTK trains), or only `order`."""
  # pylint: disable=import-outside-toplevel
  from nltk.lm.preprocessing import pad_both_ends
  from nltk.util import everygrams, ngrams
  grams = []
  for s in sentences:
    padded = list(pad_both_ends(s, n=order))
    grams += (everygrams(padded, max_len=order) if every
              else ngrams(padded, order))
  return grams


class _NltkKneserNeyByHand:
  """NLTK 3's `KneserNeyInterpolated.score`, written out over plain
  dictionaries (its recursion, continuation counts and padding), so the
  'kn_nltk' mode is checked where NLTK is not installed."""

  def __init__(self, train, order, discount=0.1):
    self.order, self.discount = order, discount
    self.follow = collections.defaultdict(collections.Counter)
    self.words = set()
    for s in train:
      padded = ['<s>'] * (order - 1) + s + ['</s>'] * (order - 1)
      self.words.update(padded)
      for n in range(1, order + 1):
        for i in range(len(padded) - n + 1):
          gram = tuple(padded[i:i + n])
          self.follow[gram[:-1]][gram[-1]] += 1

  def _continuation(self, word, context=()):
    """(contexts one longer than `context`, ending in it, followed by
    `word`; the word types following all such contexts)."""
    hits = total = 0
    for prefix, counts in self.follow.items():
      if len(prefix) == len(context) + 1 and prefix[1:] == context:
        hits += counts[word] > 0
        total += sum(1 for c in counts.values() if c > 0)
    return hits, total

  def score(self, word, context):
    known = lambda w: w if w in self.words else '<UNK>'  # noqa: E731
    return self._score(known(word), tuple(map(known, context)))

  def _score(self, word, context):
    if not context:
      hits, total = self._continuation(word)
      return hits / total
    counts = self.follow.get(context)
    if not counts:
      return self._score(word, context[1:])
    if len(context) + 1 == self.order:
      hits, total = counts[word], sum(counts.values())
    else:
      hits, total = self._continuation(word, context)
    alpha = max(hits - self.discount, 0.0) / total
    gamma = self.discount * sum(1 for c in counts.values() if c > 0) / total
    return alpha + gamma * self._score(word, context[1:])


@pytest.mark.parametrize('order', [2, 3, 4])
def test_kn_nltk_equals_nltk_kneser_ney_written_out(order):
  train = [s.split() for s in LECTURE] + [[], ['I', 'like', 'I'],
                                          ['snails', 'like', 'snails']]
  vocab = Vocabulary.from_sentences(train, unk='<UNK>')
  model = NGramLM(vocab, order, 'kn_nltk').fit([vocab.encode(s)
                                                for s in train])
  reference = _NltkKneserNeyByHand(train, order)
  test = [s.split() for s in LECTURE] + [
      [], ['like', 'I', 'like'], ['snails', 'I', "don't", 'turtles'],
      ['I', 'like', 'cats']]  # an unknown word: no unigram mass
  grams = []
  for s in test:
    padded = ['<s>'] * (order - 1) + s + ['</s>'] * (order - 1)
    grams += [tuple(padded[i:i + n]) for n in range(1, order + 1)
              for i in range(len(padded) - n + 1)]
  want = np.array([reference.score(g[-1], g[:-1]) for g in grams])
  assert (want == 0).any() and (want > 0).sum() > 40
  np.testing.assert_allclose(_probs(model, vocab, grams), want, rtol=1e-9,
                             atol=0)


@pytest.mark.parametrize('order', [2, 3, 4])
def test_kn_nltk_equals_nltk_kneser_ney_on_a_few_sentences(order):
  train = [s.split() for s in LECTURE] + [[], ['I', 'like', 'I'],
                                          ['snails', 'like', 'snails']]
  model, vocab, nltk_model = _fit_nltk(train, order)
  # Unknown words and contexts never seen, an empty sentence, `<s>` and
  # `</s>` in every position the padding puts them.
  test = [s.split() for s in LECTURE] + [
      [], ['like', 'I', 'like'], ['snails', 'I', "don't", 'turtles'],
      ['I', 'like', 'cats'], ['dogs', 'like', 'rabbits', 'I']]
  ngrams = _padded_ngrams(test, order, every=True)
  theirs = np.array([nltk_model.score(g[-1], g[:-1]) for g in ngrams])
  assert (theirs == 0).any()  # unknown words have no unigram mass
  np.testing.assert_allclose(_probs(model, vocab, ngrams), theirs,
                             rtol=1e-9, atol=0)
  # The single-context API agrees with the vectorised one.
  for g in ngrams[:20]:
    ids = vocab.encode(g)
    assert 10 ** model.log10_prob(ids[:-1], ids[-1]) == pytest.approx(
        nltk_model.score(g[-1], g[:-1]), rel=1e-9, abs=0)

  known = [s for s in test if not {'cats', 'dogs'} & set(s)]
  ngrams = _padded_ngrams(known, order)
  ours = 2 ** -np.mean(np.log2(_probs(model, vocab, ngrams)))
  assert ours == pytest.approx(nltk_model.perplexity(ngrams), rel=1e-6)


def test_kn_nltk_equals_nltk_kneser_ney_with_unk_cutoff_and_discount():
  # A corpus `<unk>` word stays a word; NLTK's unknown symbol is `<UNK>`.
  train = [['<unk>' if w == 'w5' else w for w in s]
           for s in _corpus(num_sentences=300, num_words=300)]
  test = _corpus(seed=1, num_sentences=40, num_words=400)
  model, vocab, nltk_model = _fit_nltk(train, 3, discount=0.75, unk_cutoff=2)
  assert '<unk>' in vocab.words and vocab.words[vocab.unk_id] == '<UNK>'
  assert len(vocab) == len(nltk_model.vocab)
  ngrams = _padded_ngrams(test, 3)
  np.testing.assert_allclose(
      _probs(model, vocab, ngrams),
      [nltk_model.score(g[-1], g[:-1]) for g in ngrams], rtol=1e-9, atol=0)
  # `perplexity` scores every word and one `</s>` of each sentence.
  padded = [['<s>', '<s>', *s, '</s>'] for s in test]
  ngrams = [tuple(p[i - 2:i + 1]) for p in padded for i in range(2, len(p))]
  assert model.perplexity([vocab.encode(s) for s in test]) == pytest.approx(
      nltk_model.perplexity(ngrams), rel=1e-6)


def test_kn_nltk_needs_a_context_as_nltk_does():
  with pytest.raises(ValueError, match='order >= 2'):
    NGramLM(Vocabulary(['a']), 1, 'kn_nltk')


@pytest.mark.parametrize('smoothing, discount', [
    ('mkn', 0.7), ('mle', 0.5), ('add_k', 0.5), ('kn', 0.0), ('kn', 1.5)])
def test_a_fixed_discount_the_smoothing_would_ignore_is_refused(smoothing,
                                                                 discount):
  with pytest.raises(ValueError, match='discount'):
    NGramLM(Vocabulary(['a']), 2, smoothing, discount=discount)


@pytest.mark.parametrize('smoothing', ['mkn', 'kn_nltk'])
def test_sample_draws_vocabulary_words_without_boundaries(smoothing):
  model, vocab = _fit(_corpus(), 3, smoothing)
  rng = np.random.default_rng(0)
  for _ in range(5):
    ids = model.sample(rng, max_length=20)
    assert len(ids) <= 20
    assert not {vocab.bos_id, vocab.eos_id} & set(ids.tolist())


def _read_ptb(data_dir, split):
  path = os.path.join(data_dir, f'ptb.{split}.txt')
  if not os.path.exists(path):
    path += '.gz'
  if not os.path.exists(path):
    pytest.skip(f'no PTB {split} split under {data_dir}')
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    return [line.split() for line in f]


def test_ptb_modified_kneser_ney_matches_mikolov_et_al():
  # The same data directory as conftest's `shared_data_dir`, which skips
  # without Tiny Shakespeare; this test needs PTB only.
  root = os.environ.get('LM_JAX_DATA') or os.path.join(
      os.path.dirname(__file__), '..', '..', '..', 'shared', 'data')
  data_dir = os.path.join(root, 'ptb')
  train, test = _read_ptb(data_dir, 'train'), _read_ptb(data_dir, 'test')
  vocab = Vocabulary.from_sentences(train)
  assert len(vocab) == 10001  # PTB's 10k words (<unk> among them) + <s>, </s>
  train_ids = [vocab.encode(s) for s in train]
  test_ids = [vocab.encode(s) for s in test]
  kn5 = NGramLM(vocab, 5, 'mkn').fit(train_ids).perplexity(test_ids)
  kn3 = NGramLM(vocab, 3, 'mkn').fit(train_ids).perplexity(test_ids)
  print(f'PTB test perplexity: KN5 {kn5:.2f}, KN3 {kn3:.2f}')
  # Mikolov et al. (2011) report 141.2 for KN5; KenLM's lmplz gives 141.19.
  assert kn5 <= 141.2
  assert 141.2 < kn3 < 150.0  # KenLM lmplz -o 3: about 148
