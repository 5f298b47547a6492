"""Causal language modelling: predict each next token of a corpus."""

from __future__ import annotations

import math
import os
from typing import Any

import flax.linen as nn
import numpy as np

from lm_jax import losses
from lm_jax.data import pipelines
from lm_jax.data import tokenizers
from lm_jax.data.builders.text_corpus import load_text
from lm_jax.models import build_model
from lm_jax.tasks.base import Metrics, Task


class LanguageModelingTask(Task):
  """Next-token prediction on a text corpus (GPT and recurrent LMs).

  Config keys read here: corpus, tokenizer, data_dir, cache_dir, block_size,
  batch_size, seed, eval_steps, model and the model's own keys.
  """

  def prepare(self) -> None:
    cfg = self.config
    train_text = load_text(cfg.corpus, 'train', cfg.data_dir, cfg.cache_dir)
    valid_text = load_text(cfg.corpus, 'validation', cfg.data_dir,
                           cfg.cache_dir)
    if cfg.tokenizer != 'char':
      raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}: use 'char'")
    # nanoGPT's vocabulary: every character of the corpus.
    self.tokenizer = tokenizers.CharTokenizer.from_text(train_text + valid_text)
    self.train_tokens = self.tokenizer.encode(train_text)
    self.valid_tokens = self.tokenizer.encode(valid_text)
    self._model = build_model(cfg, self.tokenizer.vocab_size)

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  @property
  def model(self) -> nn.Module:
    return self._model

  def dummy_batch(self) -> dict:
    shape = (1, self.config.block_size)
    return {'inputs': np.zeros(shape, np.int32),
            'targets': np.zeros(shape, np.int32),
            'weights': np.ones(shape, np.float32)}

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    logits = self.model.apply({'params': params}, batch['inputs'], train=train,
                              rngs={'dropout': rng})
    return {
        'loss': losses.cross_entropy(logits, batch['targets'],
                                     batch['weights']),
        'accuracy': losses.accuracy(logits, batch['targets'],
                                    batch['weights']),
    }

  def train_stream(self, rows: slice):
    cfg = self.config
    return pipelines.lm_train_stream(self.train_tokens, cfg.block_size,
                                     cfg.batch_size, cfg.seed, rows)

  def eval_batches(self, rows: slice, full: bool):
    cfg = self.config
    if full:
      return pipelines.lm_full_pass(self.valid_tokens, cfg.block_size,
                                    cfg.batch_size, rows)
    # A fixed sample, the same at every evaluation, so curves are comparable.
    return pipelines.lm_sample_batches(self.valid_tokens, cfg.block_size,
                                       cfg.batch_size, cfg.seed + 1,
                                       cfg.eval_steps, rows)

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    out = dict(averages)
    if 'loss' in out:
      out['perplexity'] = math.exp(min(out['loss'], 50.0))
      out['bits_per_token'] = out['loss'] / math.log(2)
    return out
