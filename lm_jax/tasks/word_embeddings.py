"""Static word embeddings: word2vec, fastText and GloVe on a text corpus.

Each line of the corpus is a sentence of white-space separated words (PTB's
`<unk>` is an ordinary word). Words seen fewer than `min_count` times are
dropped from the text. All three models train by gradient steps through the
one training loop; GloVe's counting of co-occurrences happens in `prepare`.

Learning rates follow the loop's convention, the mean gradient over the
batch: word2vec.c's per-example rate alpha is `learning_rate = alpha x
batch_size` with 'sgd' (the presets write it that way).

At the end, `final_evaluation` scores the vectors on WordSim-353, SimLex-999
and the word2vec analogies (`eval_ws353_spearman`, `eval_analogy_accuracy`,
... with their coverage) and writes them to `vectors.txt` in the workdir in
word2vec's text format.

Config keys read here: task, model, corpus, text_file, data_dir, cache_dir,
similarity_dir, min_count, max_vocab_size, embed_dim, window, negatives,
noise_power, subsample, share_negatives, max_row_uses, word2vec_cbow,
fasttext_min_n, fasttext_max_n, fasttext_buckets, glove_x_max, glove_alpha,
batch_size, seed, eval_steps.
"""

from __future__ import annotations

import abc
import gzip
import logging
import os
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.data import word_pairs
from lm_jax.data.builders.text_corpus import load_text
from lm_jax.evaluation import word_similarity
from lm_jax.models import fasttext, glove, word2vec
from lm_jax.tasks.base import Metrics, Task
from lm_jax.train import parallel

log = logging.getLogger('lm_jax')
VECTORS_FILE = 'vectors.txt'


def _read_text_file(path: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f'text_file {path} does not exist')
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    return f.read()


class EmbeddingTask(Task):
  """What the three embedding tasks share: vocabulary, evaluation, export.

  Subclasses build the model and the data in `_prepare_model`.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.text_file:
      train_text, valid_text = _read_text_file(cfg.text_file), None
    else:
      train_text = load_text(cfg.corpus, 'train', cfg.data_dir, cfg.cache_dir)
      valid_text = load_text(cfg.corpus, 'validation', cfg.data_dir,
                             cfg.cache_dir)
    sentences = word_pairs.split_sentences(train_text)
    self.vocab = word_pairs.WordVocabulary.from_sentences(
        sentences, cfg.min_count, cfg.max_vocab_size)
    self.train_corpus = self.vocab.encode(sentences)
    # A text file has no validation split: its loss is then measured on
    # the training text, with other random draws.
    self.valid_corpus = (self.vocab.encode(word_pairs.split_sentences(
        valid_text)) if valid_text is not None else self.train_corpus)
    self.similarity_dir = cfg.similarity_dir or os.path.join(
        cfg.data_dir, 'word_similarity')
    if cfg.similarity_dir and not os.path.isdir(cfg.similarity_dir):
      raise FileNotFoundError(f'similarity_dir {cfg.similarity_dir} does '
                              'not exist')
    self._prepare_model()
    log.info('%d words in the vocabulary, %d training tokens',
             len(self.vocab), len(self.train_corpus.ids))

  @abc.abstractmethod
  def _prepare_model(self) -> None:
    """Builds the model and what its data needs."""

  @property
  def model(self) -> nn.Module:
    return self._model

  @property
  def steps_per_epoch(self) -> int:
    return self._train_batches().steps_per_epoch

  def train_stream(self, rows: slice):
    return word_pairs.stream(self._train_batches(), rows)

  @abc.abstractmethod
  def _train_batches(self):
    """The global training batches, by batch number."""

  def embeddings(self, params: Any) -> np.ndarray:
    """The vocabulary's vectors `[vocab, dim]`."""
    return np.asarray(jax.device_get(self.model.apply(
        {'params': params}, method='embeddings')))

  def word_vector(self, params: Any, word: str) -> Optional[np.ndarray]:
    """A word's vector `[dim]`, or None if the model has none for it."""
    i = self.vocab.index.get(word)
    return None if i is None else self.embeddings(params)[i]

  def final_evaluation(self, params, rows, evaluate) -> dict[str, float]:
    del rows, evaluate
    vectors = word_similarity.WordVectors(self.vocab.words,
                                          self.embeddings(params))
    if self.output_dir:  # the first host's workdir
      vectors.save_word2vec_text(os.path.join(self.output_dir, VECTORS_FILE))
    if not os.path.isdir(self.similarity_dir):
      log.warning('no word-similarity sets in %s; skipping them',
                  self.similarity_dir)
      return {}
    results = word_similarity.evaluate_all(vectors, self.similarity_dir)
    return {f'eval_{k}': v for k, v in results.items()}


class Word2VecTask(EmbeddingTask):
  """word2vec skip-gram (or CBOW, `word2vec_cbow`) with negative sampling."""

  centre_is_input = False

  def _prepare_model(self) -> None:
    cfg = self.config
    # The negatives are one row per group of `share_negatives` examples,
    # split over the devices like the batch: the groups must split evenly.
    devices = parallel.mesh_size(cfg.num_devices)
    if cfg.grad_accum_steps > 1:
      # Micro-batches take every A-th row of each array, which would pair
      # an example with another group's negatives.
      raise ValueError('word vectors train without grad_accum_steps; set it '
                       'to 1 and choose the batch_size itself')
    if (cfg.share_negatives < 1 or cfg.batch_size % cfg.share_negatives
        or (cfg.batch_size // cfg.share_negatives) % devices):
      raise ValueError(
          f'batch_size {cfg.batch_size} in groups of share_negatives '
          f'{cfg.share_negatives} must give a whole number of groups that '
          f'splits over the {devices} devices; choose a share_negatives '
          'that divides batch_size / devices')
    self._keep = word_pairs.keep_probabilities(self.vocab.counts,
                                               cfg.subsample)
    self._noise = word_pairs.NoiseSampler(self.vocab.counts, cfg.noise_power)
    self._batches = {}
    self._model = self._build_model()

  def _build_model(self) -> nn.Module:
    cfg = self.config
    return word2vec.Word2Vec(len(self.vocab), cfg.embed_dim,
                             cbow=cfg.word2vec_cbow,
                             max_row_uses=cfg.max_row_uses)

  @property
  def _cbow(self) -> bool:
    return bool(self.config.get('word2vec_cbow')) and not self.centre_is_input

  def _pair_batches(self, split: str, seed: int):
    cfg = self.config
    if split not in self._batches:  # epoch 0 is built to count its pairs
      corpus = self.train_corpus if split == 'train' else self.valid_corpus
      self._batches[split] = word_pairs.Word2VecBatches(
          corpus, self._keep, self._noise, cfg.window, cfg.negatives,
          cfg.batch_size, seed, cbow=self._cbow,
          centre_is_input=self.centre_is_input,
          share_negatives=cfg.share_negatives, cycle=split == 'train')
    return self._batches[split]

  def _train_batches(self):
    return self._pair_batches('train', self.config.seed)

  def eval_batches(self, rows: slice, full: bool):
    batches = word_pairs.HostRows(
        self._pair_batches('validation', self.config.seed + 1), rows)
    count = batches.batches.steps_per_epoch
    if not full:
      count = min(count, self.config.eval_steps)
    return (batches(i) for i in range(count))

  def dummy_batch(self) -> dict:
    cfg = self.config
    batch = {'inputs': np.zeros((1,), np.int32),
             'targets': np.zeros((1,), np.int32),
             'weights': np.ones((1,), np.float32),
             'negatives': np.zeros((1, cfg.negatives), np.int32)}
    if self._cbow:
      batch['inputs'] = np.zeros((1, 2 * cfg.window), np.int32)
      batch['input_mask'] = np.ones((1, 2 * cfg.window), np.float32)
    return batch

  def _scores(self, params, batch):
    return self.model.apply({'params': params}, batch['inputs'],
                            batch['targets'], batch['negatives'],
                            batch.get('input_mask'))

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    del rng, train
    true, noise = self._scores(params, batch)
    share = batch['targets'].shape[0] // batch['negatives'].shape[0]
    # word2vec.c skips a noise word that drew the true word.
    noise_mask = (jnp.repeat(batch['negatives'], share, axis=0)
                  != batch['targets'][:, None])
    losses = word2vec.negative_sampling_loss(true, noise, noise_mask)
    weights = batch['weights']
    # How often the true word outscores every noise word.
    beaten = jnp.all((true[:, None] > noise) | ~noise_mask, axis=1)
    return {'loss': ((losses * weights).sum(), weights.sum()),
            'accuracy': ((beaten * weights).sum(), weights.sum())}


class FastTextTask(Word2VecTask):
  """fastText skip-gram: the centre word's n-gram vectors predict its
  context words."""

  centre_is_input = True

  def _build_model(self) -> nn.Module:
    cfg = self.config
    rows, owners = fasttext.subword_table(
        self.vocab.words, cfg.fasttext_buckets, cfg.fasttext_min_n,
        cfg.fasttext_max_n)
    return fasttext.FastText(len(self.vocab), cfg.fasttext_buckets,
                             cfg.embed_dim, rows, owners,
                             max_row_uses=cfg.max_row_uses)

  def _scores(self, params, batch):
    return self.model.apply({'params': params}, batch['inputs'],
                            batch['targets'], batch['negatives'])

  def word_vector(self, params: Any, word: str) -> Optional[np.ndarray]:
    """Any word's vector: unseen words are composed of their n-grams
    (None for one too short to have any)."""
    cfg = self.config
    rows = fasttext.subword_rows(
        word, len(self.vocab), cfg.fasttext_buckets, cfg.fasttext_min_n,
        cfg.fasttext_max_n, word_id=self.vocab.index.get(word))
    if not len(rows):  # unseen, and shorter than any n-gram: nothing known
      return None
    return np.asarray(jax.device_get(self.model.apply(
        {'params': params}, rows, method='compose')))


class GloVeTask(EmbeddingTask):
  """GloVe on the training text's co-occurrence matrix (`window` words
  either side, weighted 1/distance)."""

  def _prepare_model(self) -> None:
    cfg = self.config
    self._matrix = word_pairs.cooccurrence(self.train_corpus, len(self.vocab),
                                           cfg.window)
    self._batches = {}
    self._model = glove.GloVe(len(self.vocab), cfg.embed_dim)
    log.info('%d non-zero co-occurrence entries', len(self._matrix[0]))

  def _entry_batches(self, seed: Optional[int]):
    if seed not in self._batches:
      self._batches[seed] = word_pairs.CooccurrenceBatches(
          *self._matrix, self.config.batch_size, seed)
    return self._batches[seed]

  def _train_batches(self):
    return self._entry_batches(self.config.seed)

  def eval_batches(self, rows: slice, full: bool):
    # There is no held-out matrix: the loss reported is the training
    # objective, over every entry (full) or a fixed random sample of them.
    batches = self._entry_batches(None if full else self.config.seed + 1)
    count = batches.steps_per_epoch
    if not full:
      count = min(count, self.config.eval_steps)
    return (word_pairs.HostRows(batches, rows)(i) for i in range(count))

  def dummy_batch(self) -> dict:
    return {'inputs': np.zeros((1,), np.int32),
            'contexts': np.zeros((1,), np.int32),
            'counts': np.ones((1,), np.float32),
            'weights': np.ones((1,), np.float32)}

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    """GloVe's objective J, summed over every non-zero entry of the matrix,
    estimated from the batch: entries x the batch's mean per entry.

    The loop divides the summed 'loss' by its count, the batch's entries,
    so 'loss' averages to J itself (exactly, over a whole pass) and the
    update follows the gradient of J. AdaGrad then sees gradients of the
    reference's per-entry scale or larger, not those of the mean over the
    batch, which its epsilon (1e-7) would swamp. 'entry_loss' is the mean
    per entry.
    """
    del rng, train
    cfg = self.config
    predictions = self.model.apply({'params': params}, batch['inputs'],
                                   batch['contexts'])
    losses = glove.glove_loss(predictions, batch['counts'], cfg.glove_x_max,
                              cfg.glove_alpha) * batch['weights']
    count = batch['weights'].sum()
    return {'loss': (losses.sum() * len(self._matrix[0]), count),
            'entry_loss': (losses.sum(), count)}


_MODELS = {'word2vec': Word2VecTask, 'fasttext': FastTextTask,
           'glove': GloVeTask}


def embedding_task(config) -> EmbeddingTask:
  """The embedding task of `config.model`: 'word2vec', 'fasttext' or
  'glove'."""
  if config.model not in _MODELS:
    raise ValueError(f'unknown embedding model {config.model!r}; known: '
                     f'{sorted(_MODELS)}')
  return _MODELS[config.model](config)
