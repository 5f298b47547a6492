"""ELMo's pre-training: a bi-directional LSTM LM on unlabelled sentences.

Each sentence, framed as `<s> w_1 ... w_n </s>`, is read forwards (each
position predicts the next token) and backwards (each predicts the previous
one) by `models.elmo.BiLM`. The loss is the mean of both directions'
per-token cross-entropies; `eval_perplexity` is its exponential, the
geometric mean of the two directions' perplexities, which are reported too
(ELMo's paper quotes their arithmetic mean, a little higher: 607.23
against 607.13 for `udpos_bilm`).

The workdir's tokenizer and parameters are what a downstream classifier or
tagger reads through `--config.elmo_bilm=WORKDIR`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np

from lm_jax import losses
from lm_jax.data.corpus_texts import split_texts
from lm_jax.data.tokenizers import WordTokenizer
from lm_jax.models.elmo import BiLM, BiLMConfig, bilm_targets, frame
from lm_jax.nn.dropout import drop_words
from lm_jax.tasks.base import Metrics
from lm_jax.tasks.sentences import SENTENCE_MARKERS, SPECIALS, SentenceTask

# '<pad>' must be id 0 (padding); '<s>' and '</s>' frame every sentence.
BILM_SPECIALS = SPECIALS + SENTENCE_MARKERS


def bilm_config(config, vocab_size: int) -> BiLMConfig:
  """The `BiLMConfig` of a run config (or of a saved run's config.json)."""
  return BiLMConfig(vocab_size=vocab_size,
                    hidden_size=config['hidden_size'],
                    num_layers=config['num_layers'],
                    dropout_rate=config['dropout_rate'],
                    init_scale=config['init_scale'],
                    # absent from runs saved before the fused kernel
                    fused_lstm=config.get('fused_lstm', True))


class BiLMTask(SentenceTask):
  """Trains a `BiLM` on the sentences of a corpus, one a line (a GLUE
  dataset's, labels ignored, or a plain-text corpus's lines).

  Metrics: `loss` is the cross-entropy per token over both directions'
  tokens, the mean of the two as each predicts as many (`perplexity` is
  its exponential), `forward_loss` / `backward_loss` each one's, and
  `accuracy` the forward LM's next-word accuracy only.

  Config keys read here: corpus, data_dir, cache_dir, min_count,
  forget_bias (1.0: the model's), hidden_size, num_layers, dropout_rate,
  word_dropout_rate (input words replaced by `<unk>` in training: with
  `min_count` 1 no training word is `<unk>`, and a downstream task's unknown
  words would reach the LMs through an embedding they never trained),
  init_scale, batch_size, seed, eval_steps, length_multiple,
  length_bucketing.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.forget_bias != 1.0:
      # BiLM's LSTMs have it fixed; bi-LMs trained before the presets said
      # so recorded the base's 0.0, so the config cannot choose it.
      raise ValueError(f'the bi-LM\'s LSTMs have forget bias 1.0 '
                       f'(lm_jax/models/elmo.py), not {cfg.forget_bias}: '
                       'leave --config.forget_bias at 1.0')
    texts = split_texts(cfg)
    self.tokenizer = WordTokenizer.from_text(
        texts['train'], min_count=cfg.min_count, specials=BILM_SPECIALS,
        eos='')
    self.examples = {
        split: {'inputs': [self.tokenizer.encode(line)
                           for line in text.split('\n') if line.split()]}
        for split, text in texts.items()}
    self._model = BiLM(bilm_config(cfg, self.tokenizer.vocab_size))

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    return {'inputs': np.zeros(shape, np.int32),
            'lengths': np.zeros(shape[:1], np.int32)}

  def logits(self, params: Any, batch: dict, rng, train: bool):
    raise NotImplementedError('a bi-LM has two sets of logits; see loss')

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    bos = self.tokenizer.words.index('<s>')
    eos = self.tokenizer.words.index('</s>')
    words = batch['lengths']
    tokens = frame(batch['inputs'], words, bos, eos)
    lengths = words + 2
    inputs = tokens
    if train and self.config.word_dropout_rate > 0:
      # On the inputs only: the LMs still predict the words they hide.
      word_rng, rng = jax.random.split(rng)
      inputs = drop_words(tokens, self.config.word_dropout_rate,
                          self.tokenizer.unk_id, word_rng, (bos, eos))
    forward, backward = self.model.apply(
        {'params': params}, inputs, lengths, train=train,
        rngs={'dropout': rng})
    fwd_targets, fwd_weights, bwd_targets, bwd_weights = bilm_targets(
        tokens, lengths)
    real = (words > 0)[:, None]  # the empty rows that fill an eval batch
    fwd_weights, bwd_weights = fwd_weights * real, bwd_weights * real
    fwd = losses.cross_entropy(forward, fwd_targets, fwd_weights)
    bwd = losses.cross_entropy(backward, bwd_targets, bwd_weights)
    return {
        'loss': (fwd[0] + bwd[0], fwd[1] + bwd[1]),
        'forward_loss': fwd,
        'backward_loss': bwd,
        'accuracy': losses.accuracy(forward, fwd_targets, fwd_weights),
    }

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    out = dict(averages)
    for key in ('loss', 'forward_loss', 'backward_loss'):
      if key in out:
        out[key.replace('loss', 'perplexity')] = math.exp(min(out[key], 50.))
    return out
