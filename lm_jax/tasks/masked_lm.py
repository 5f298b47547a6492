"""Masked language modelling: BERT's pre-training objective.

Sentences of one or more corpora (`corpus`, comma-separated: plain-text
corpora such as 'ptb', one sentence a line, and GLUE datasets such as
'sst2', whose labels are ignored) are WordPiece-tokenised, packed into
[CLS] ... [SEP] sequences of `block_size` ids and corrupted as BERT does
(`lm_jax.data.masking`: 15% of the tokens, 80% [MASK] / 10% random / 10%
kept, optionally whole words), afresh at every epoch.

Reported figures, over the chosen (corrupted) positions only: `loss`
(cross-entropy of the original tokens), `accuracy` (masked-token accuracy)
and `perplexity`; `eval_*` on the corpora's validation splits, and after the
last step `test_*` on their test splits where they have them.

Also here, for every BERT task: `adopt_pretrained` (a run that starts from
another's weights takes its tokenizer and architecture), `graft` (puts those
weights in) and `load_bert_run` (a BERT workdir's config, tokenizer, model
and parameters, for `encode` and `init_from`).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax import losses
from lm_jax.data import masking, tokenizers
from lm_jax.data.builders import glue_tsv, text_corpus
from lm_jax.data.wordpiece import WordPieceTokenizer, cached_wordpiece
from lm_jax.models.bert import (BertClassifier, BertPretraining,
                                bert_config)
from lm_jax.tasks.base import Metrics, Task
from lm_jax.train.logging import architecture_of, read_run_config

log = logging.getLogger('lm_jax')


def adopt_pretrained(config: ml_collections.ConfigDict
                     ) -> Optional[WordPieceTokenizer]:
  """With `config.init_from` (a BERT workdir: a trained run or one made by
  `import_hf`), sets `config`'s architecture keys to that run's and returns
  its tokenizer; without it, None."""
  source = config.get('init_from')
  if not source:
    return None
  source_config = read_run_config(source)
  if source_config.get('model') != 'bert':
    raise ValueError(f'init_from {source} is a {source_config.get("model")!r}'
                     ' run, not a BERT one')
  changed = {k: v for k, v in architecture_of(source_config).items()
             if config.get(k) != v}
  if changed:
    log.info('architecture from %s: %s', source, changed)
  with config.unlocked():
    config.update(changed)
  tokenizer = tokenizers.load(os.path.join(source, 'tokenizer.json'))
  if not isinstance(tokenizer, WordPieceTokenizer):
    raise ValueError(f'init_from {source} has a {tokenizer.kind!r} tokenizer,'
                     ' not WordPiece')
  return tokenizer


def bert_model(config: ml_collections.ConfigDict,
               tokenizer: WordPieceTokenizer) -> nn.Module:
  """The model a BERT run of `config.task` trains."""
  cfg = bert_config(config, tokenizer.vocab_size, tokenizer.pad_id)
  if config.task == 'mlm':
    return BertPretraining(cfg)
  if config.task == 'classify':
    return BertClassifier(
        cfg, glue_tsv.DATASETS[config.corpus].num_classes,
        pooling=config.pooling)
  raise ValueError(f'no BERT model for task {config.task!r}')


def load_bert_run(workdir: str):
  """A BERT workdir's (config, tokenizer, model, step, parameters), from its
  newest checkpoint, on one device. The config is its config.json as
  written (`bert_config` defaults the keys added since BERT's first runs).
  """
  # Imported here: lm_jax.train.loop imports the tasks.
  from lm_jax.train.loop import restore_params
  config = ml_collections.ConfigDict(read_run_config(workdir))
  if config.get('model') != 'bert':
    raise ValueError(f'{workdir} is a {config.get("model")!r} run, not BERT')
  tokenizer = tokenizers.load(os.path.join(workdir, 'tokenizer.json'))
  model = bert_model(config, tokenizer)
  step, params = restore_params(workdir, config, model,
                                np.zeros((1, 8), np.int32))
  return config, tokenizer, model, step, params


def trained_positions(config: ml_collections.ConfigDict) -> int:
  """The position rows a BERT run's training has reached: those below its
  `block_size` (every sequence it trained on was cut to that), and those of
  the run it continued (`init_from`). An import of a published model
  (`num_train_steps` 0) has all of its `max_positions`; so does a run whose
  source can no longer be read, as no one can tell."""
  if not config.get('num_train_steps'):
    return config.max_positions
  positions = min(config.block_size, config.max_positions)
  source = config.get('init_from')
  if source:
    try:
      source_config = ml_collections.ConfigDict(read_run_config(source))
    except (OSError, ValueError):
      return config.max_positions
    positions = max(positions, trained_positions(source_config))
  return positions


def graft(params: Any, source: Any, parts: tuple[str, ...]) -> dict:
  """`params` with its top-level `parts` replaced by `source`'s (those
  both have); shapes must agree."""
  out = dict(params)
  for part in parts:
    if part not in params or part not in source:
      continue
    mine = jax.tree.map(np.shape, params[part])
    theirs = jax.tree.map(np.shape, source[part])
    if mine != theirs:
      raise ValueError(f'pre-trained {part!r} does not fit the model: '
                       f'{theirs} != {mine}')
    out[part] = source[part]
  return out


def pretrained_from(config: ml_collections.ConfigDict, params: Any,
                    parts: tuple[str, ...]) -> Any:
  """`params` with `parts` from the `init_from` run (if any)."""
  if not config.get('init_from'):
    return params
  *_, step, source = load_bert_run(config.init_from)
  log.info('%s from %s (step %d)',
           ', '.join(p for p in parts if p in source and p in params),
           config.init_from, step)
  return graft(params, source, parts)


def corpus_sentences(names: str, split: str, data_dir: str, cache_dir: str
                     ) -> list[list[str]]:
  """One list of sentences per corpus of comma-separated `names` that has
  `split` (PTB's `<unk>` written as BERT's [UNK])."""
  out = []
  for name in (n.strip() for n in names.split(',') if n.strip()):
    if name in text_corpus.CORPORA:
      corpus = text_corpus.CORPORA[name]
      if split not in (('train', 'validation') if corpus.train_fraction
                       else corpus.files):
        continue
      text = text_corpus.load_text(name, split, data_dir, cache_dir)
      # '\n' alone ends a line, as in every reader here (splitlines()
      # would also cut at '\x0c', '\x85', '\u2028'...).
      lines = text.replace('<unk>', '[UNK]').split('\n')
    elif name in glue_tsv.DATASETS:
      if split not in glue_tsv.DATASETS[name].files:
        continue
      lines = glue_tsv.load_examples(name, split, data_dir, cache_dir)[0]
    else:
      raise ValueError(f'unknown corpus {name!r} for masked-LM training; '
                       f'known: {sorted(text_corpus.CORPORA)} and '
                       f'{sorted(glue_tsv.DATASETS)}')
    out.append([line for line in lines if line.strip()])
  return out


class MaskedLMTask(Task):
  """BERT pre-training by masked-LM (no next-sentence prediction).

  Config keys read here: corpus, data_dir, cache_dir, model ('bert'),
  init_from, wordpiece_vocab_size, lower_case, block_size, mlm_rate,
  mlm_mask_prob, mlm_random_prob, mlm_max_predictions, whole_word_masking,
  batch_size, seed, eval_steps, final_eval_full and the BERT model keys
  (`lm_jax.models.bert.bert_config`).
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.model != 'bert':
      raise ValueError(f"task 'mlm' trains model 'bert', not {cfg.model!r}")
    splits = {split: corpus_sentences(cfg.corpus, split, cfg.data_dir,
                                      cfg.cache_dir)
              for split in ('train', 'validation', 'test')}
    if not splits['validation']:
      raise ValueError(f'no validation split in corpus {cfg.corpus!r}')
    self.tokenizer = adopt_pretrained(cfg) or cached_wordpiece(
        [s for corpus in splits['train'] for s in corpus], cfg.cache_dir,
        'mlm-' + cfg.corpus.replace(',', '+'), cfg.wordpiece_vocab_size,
        cfg.lower_case)
    if cfg.block_size > cfg.max_positions:
      raise ValueError(f'block_size {cfg.block_size} exceeds the model\'s '
                       f'{cfg.max_positions} positions')
    tok = self.tokenizer
    self.sequences = {
        split: masking.sentences_to_sequences(
            [[tok.encode(s) for s in corpus] for corpus in corpora],
            cfg.block_size, tok.cls_id, tok.sep_id, tok.pad_id)
        for split, corpora in splits.items() if corpora}
    self.masking = masking.Masking(
        mask_id=tok.mask_id, special=tok.special_mask(),
        continuation=tok.continuation_mask(),
        max_predictions=cfg.mlm_max_predictions, rate=cfg.mlm_rate,
        mask_prob=cfg.mlm_mask_prob, random_prob=cfg.mlm_random_prob,
        whole_word=cfg.whole_word_masking)
    self._model = BertPretraining(bert_config(cfg, tok.vocab_size,
                                              tok.pad_id))
    log.info('masked LM: %s sequences of %d ids for training, %s held out',
             f'{len(self.sequences["train"][0]):,}', cfg.block_size,
             f'{len(self.sequences["validation"][0]):,}')

  @property
  def model(self) -> nn.Module:
    return self._model

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  def dummy_batch(self) -> dict:
    return {'inputs': np.zeros((1, self.config.block_size), np.int32)}

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    inputs = batch['inputs']
    valid = jnp.arange(inputs.shape[1])[None, :] < batch['lengths'][:, None]
    logits, _ = self.model.apply(
        {'params': params}, inputs, valid=valid,
        mlm_positions=batch['mlm_positions'], train=train,
        rngs={'dropout': rng})
    return {
        'loss': losses.cross_entropy(logits, batch['mlm_targets'],
                                     batch['mlm_weights']),
        'accuracy': losses.accuracy(logits, batch['mlm_targets'],
                                    batch['mlm_weights']),
    }

  def pretrained_params(self, params: Any) -> Any:
    return pretrained_from(self.config, params,
                           ('encoder', 'pooler', 'mlm_head'))

  @property
  def steps_per_epoch(self) -> int:
    return len(self.sequences['train'][0]) // self.config.batch_size

  def train_stream(self, rows: slice):
    cfg = self.config
    return masking.train_stream(masking.MaskedBatches(
        *self.sequences['train'], self.masking, cfg.batch_size, cfg.seed,
        rows))

  def _batches(self, split: str, rows: slice, full: bool) -> list[dict]:
    cfg = self.config
    return masking.eval_batches(
        *self.sequences[split], self.masking, cfg.batch_size, cfg.seed + 1,
        rows, 0 if full else cfg.eval_steps)

  def eval_batches(self, rows: slice, full: bool):
    return self._batches('validation', rows, full)

  def final_evaluation(self, params, rows, evaluate) -> dict[str, float]:
    del params  # `evaluate` holds the trained parameters
    if 'test' not in self.sequences:
      return {}
    results = evaluate(self._batches('test', rows,
                                     self.config.final_eval_full))
    return {f'test_{k}': v for k, v in results.items()}

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    out = dict(averages)
    if 'loss' in out:
      out['perplexity'] = math.exp(min(out['loss'], 50.0))
    return out
