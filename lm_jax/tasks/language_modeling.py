"""Causal language modelling: predict each next token of a corpus."""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lm_jax import decode, losses
from lm_jax.data import pipelines
from lm_jax.data import tokenizers
from lm_jax.data.builders import glue_tsv
from lm_jax.data.corpus_texts import split_texts
from lm_jax.models import build_model
from lm_jax.tasks import pretrained
from lm_jax.tasks.base import Metrics, Task
from lm_jax.train import parallel


class LanguageModelingTask(Task):
  """Next-token prediction on a text corpus (GPT and recurrent LMs).

  Batches are random windows (`lm_batching='random_windows'`, nanoGPT) or
  `batch_size` contiguous streams read in order (`'contiguous'`, truncated
  BPTT), across which a recurrent model carries its state. A corpus with a
  test split is scored on it once training ends (`test_loss`,
  `test_perplexity`).

  The corpus is a plain-text one of `text_corpus.CORPORA` or the sentences
  of a GLUE dataset, one a line, without their labels: the unlabelled
  in-domain text that ULMFiT's and ELMo's LMs are trained on.

  Config keys read here: corpus, tokenizer ('char' or 'word'), min_count
  (GLUE sentences only), data_dir, cache_dir, block_size, batch_size,
  lm_batching, seed, eval_steps, pretrained_lm (a recurrent word LM only),
  model and the model's own keys.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.lm_batching not in ('random_windows', 'contiguous'):
      raise ValueError(f"unknown lm_batching {cfg.lm_batching!r}: use "
                       "'random_windows' or 'contiguous'")
    if cfg.get('pretrained_lm'):
      if (cfg.model, cfg.tokenizer) != ('rnn_lm', 'word'):
        raise ValueError(
            "pretrained_lm starts a recurrent word LM (model 'rnn_lm', "
            "tokenizer 'word') from another; leave it empty for model "
            f"{cfg.model!r} with tokenizer {cfg.tokenizer!r}")
      # Fails before training, not after.
      pretrained.check_lstm_settings(
          pretrained.lm_run_config(cfg.pretrained_lm), cfg, cfg.pretrained_lm)
    texts = split_texts(cfg)
    if cfg.tokenizer == 'char':
      # nanoGPT's vocabulary: every character of the corpus, test split
      # included where there is one (a character only it holds would
      # otherwise make encoding it fail).
      self.tokenizer = tokenizers.CharTokenizer.from_text(
          ''.join(texts.values()))
    elif cfg.tokenizer == 'word' and cfg.corpus in glue_tsv.DATASETS:
      # Padding first, as a classifier fine-tuned from this LM needs it.
      self.tokenizer = tokenizers.WordTokenizer.from_text(
          texts['train'], min_count=cfg.min_count,
          specials=('<pad>', '<unk>', '<eos>'))
    elif cfg.tokenizer == 'word':
      # The training split's words (PTB: its 10k, `<unk>` included).
      self.tokenizer = tokenizers.WordTokenizer.from_text(texts['train'])
    else:
      raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}: use 'char' or "
                       "'word'")
    self.tokens = {split: self.tokenizer.encode(text)
                   for split, text in texts.items()}
    self._model = build_model(cfg, self.tokenizer.vocab_size)
    if cfg.lm_batching == 'contiguous':
      self._streams = pipelines.ContiguousStreams(
          self.tokens['train'], cfg.block_size, cfg.batch_size)

  def pretrained_params(self, params: Any) -> Any:
    """With `pretrained_lm`, a recurrent LM starts from that LM run's
    weights, its vocabulary matched word by word (`pretrained.lm_from_lm`):
    ULMFiT's LM of general text, fine-tuned on the task's own."""
    if not self.config.get('pretrained_lm'):
      return params
    return pretrained.lm_from_lm(params, self.config.pretrained_lm,
                                 self.tokenizer)

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  @property
  def model(self) -> nn.Module:
    return self._model

  @property
  def _carries(self) -> bool:
    """Whether batches hand the model's state on: a recurrent model read
    in contiguous streams."""
    return (self.config.lm_batching == 'contiguous'
            and getattr(self.model, 'recurrent', False))

  @property
  def steps_per_epoch(self) -> int:
    if self.config.lm_batching == 'contiguous':
      return self._streams.steps_per_epoch
    return 0

  def dummy_batch(self) -> dict:
    shape = (1, self.config.block_size)
    return {'inputs': np.zeros(shape, np.int32),
            'targets': np.zeros(shape, np.int32),
            'weights': np.ones(shape, np.float32)}

  def init_carry(self, batch_size: int) -> Any:
    if not self._carries:
      return ()
    return decode.empty_cache(self.model, batch_size, 1)

  def _metrics(self, logits, batch) -> Metrics:
    # absent from runs saved before the fused kernel
    fused = self.config.get('fused_cross_entropy', False)
    return losses.token_metrics(logits, batch['targets'], batch['weights'],
                                fused=fused)

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    if self._carries:
      rows = batch['inputs'].shape[0]
      return self.loss_and_carry(params, batch, rng, train,
                                 self.init_carry(rows))[0]
    logits = self.model.apply({'params': params}, batch['inputs'], train=train,
                              rngs={'dropout': rng})
    return self._metrics(logits, batch)

  def loss_and_carry(self, params: Any, batch: dict, rng, train: bool,
                     carry: Any) -> tuple[Metrics, Any]:
    if not self._carries:
      return self.loss(params, batch, rng, train), carry
    # A stream that starts over forgets the state of the epoch before.
    keep = 1.0 - batch['reset']
    carry = jax.tree.map(
        lambda c: c * keep.reshape((-1,) + (1,) * (c.ndim - 1)), carry)
    logits, updated = self.model.apply(
        {'params': params, 'cache': carry}, batch['inputs'], train=train,
        decode=True, mutable=['cache'], rngs={'dropout': rng})
    return self._metrics(logits, batch), updated['cache']

  def train_stream(self, rows: slice):
    cfg = self.config
    if cfg.lm_batching == 'contiguous':
      return pipelines.lm_contiguous_stream(
          self.tokens['train'], cfg.block_size, cfg.batch_size, rows)
    return pipelines.lm_train_stream(self.tokens['train'], cfg.block_size,
                                     cfg.batch_size, cfg.seed, rows)

  def _pass(self, split: str, rows: slice, max_batches: int = 0):
    cfg = self.config
    streams = cfg.get('eval_streams', 0)
    if self._carries and streams and not max_batches:
      # The whole split read by that many streams (1: as one text, as
      # Zaremba et al. score PTB), with empty rows to fill every device.
      devices = parallel.mesh_size(cfg.num_devices)
      total = -(-streams // devices) * devices
      return pipelines.lm_contiguous_pass(
          self.tokens[split], cfg.block_size, streams,
          parallel.process_rows(total), num_rows=total)
    if cfg.lm_batching == 'contiguous':
      return pipelines.lm_contiguous_pass(self.tokens[split], cfg.block_size,
                                          cfg.batch_size, rows, max_batches)
    batches = pipelines.lm_full_pass(self.tokens[split], cfg.block_size,
                                     cfg.batch_size, rows)
    return itertools.islice(batches, max_batches or None)

  def eval_batches(self, rows: slice, full: bool):
    cfg = self.config
    if full or cfg.lm_batching == 'contiguous':
      # Streams must be read in order: a partial evaluation is their start.
      return self._pass('validation', rows, 0 if full else cfg.eval_steps)
    # A fixed sample, the same at every evaluation, so curves are comparable.
    return pipelines.lm_sample_batches(self.tokens['validation'],
                                       cfg.block_size, cfg.batch_size,
                                       cfg.seed + 1, cfg.eval_steps, rows)

  def final_evaluation(self, params, rows, evaluate) -> dict[str, float]:
    if 'test' not in self.tokens:
      return {}
    full = self.config.final_eval_full
    results = evaluate(self._pass('test', rows,
                                  0 if full else self.config.eval_steps))
    return {f'test_{k}': v for k, v in results.items()}

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    out = dict(averages)
    if 'loss' in out:
      out['perplexity'] = math.exp(min(out['loss'], 50.0))
      out['bits_per_token'] = out['loss'] / math.log(2)
    return out
