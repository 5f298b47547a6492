"""Machine translation: a sequence to sequence model learns p(target |
source) from sentence pairs, teacher-forced, and is judged by the BLEU of
its beam-searched translations of the test split.

The vocabulary is SentencePiece, trained on the training split by the task
itself (joint or one per language) and cached; the run keeps it as
`source_tokenizer.json` and `target_tokenizer.json`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np

from lm_jax import decode, losses
from lm_jax.data import seq2seq_batches, tokenizers
from lm_jax.data.builders.parallel_corpus import load_pairs
from lm_jax.evaluation.bleu import corpus_bleu
from lm_jax.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from lm_jax.models.transformer_seq2seq import (TransformerSeq2Seq,
                                               TransformerSeq2SeqConfig,
                                               cross_attention_weights)
from lm_jax.tasks.base import Metrics, Task
from lm_jax.train import parallel

SPLITS = ('train', 'validation', 'test')
SOURCE_TOKENIZER = 'source_tokenizer.json'
TARGET_TOKENIZER = 'target_tokenizer.json'
_SP = tokenizers.SentencePieceTokenizer


def build_model(config, source_vocab_size: int, target_vocab_size: int
                ) -> nn.Module:
  """The sequence to sequence model named by `config.model`."""
  if config.model == 'transformer_seq2seq':
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size, num_layers=config.num_layers,
        num_heads=config.num_heads, embed_dim=config.embed_dim,
        mlp_dim=config.mlp_ratio * config.embed_dim,
        dropout_rate=config.dropout_rate,
        share_embeddings=config.share_embeddings, pre_norm=config.pre_norm,
        activation=config.activation, use_bias=config.use_bias,
        bos_id=_SP.BOS_ID, dtype=config.compute_dtype))
  if config.model == 'seq2seq_rnn':
    return Seq2SeqRNN(Seq2SeqRNNConfig(
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size, cell=config.cell,
        attention=config.rnn_attention, embed_dim=config.embed_dim,
        encoder_dim=config.hidden_size, decoder_dim=config.decoder_size,
        attention_dim=config.attention_size,
        readout_dim=config.readout_size,
        encoder_layers=config.num_layers, dropout_rate=config.dropout_rate,
        forget_bias=config.forget_bias, fused=config.fused_lstm,
        bos_id=_SP.BOS_ID, dtype=config.compute_dtype))
  raise ValueError(f"task 'translate' has no model {config.model!r}; use "
                   "'seq2seq_rnn' or 'transformer_seq2seq'")


def dummy_inputs(config) -> np.ndarray:
  """Source ids of the shape parameters are created from."""
  return np.zeros((1, config.length_multiple), np.int32)


class Translator:
  """Translates sentences with a trained model, in fixed-shape batches.

  Every batch of a request has the same rows (`batch_size`, or fewer for a
  short request) and every source the same padded length, so a request
  compiles one search; batches go round-robin to `devices`, which decode
  them concurrently.

  Args:
    model: a sequence to sequence model.
    source_tokenizer, target_tokenizer: SentencePiece tokenizers.
    max_decode_length: the most tokens per translation, EOS included.
    batch_size: sentences per search.
    length_multiple: padded source lengths are multiples of it.
  """

  def __init__(self, model: nn.Module, source_tokenizer: _SP,
               target_tokenizer: _SP, max_decode_length: int,
               batch_size: int = 64, length_multiple: int = 8):
    self.model, self.source_tokenizer = model, source_tokenizer
    self.target_tokenizer = target_tokenizer
    self.max_decode_length, self.batch_size = max_decode_length, batch_size
    self.length_multiple = length_multiple

  def source_ids(self, sentence: str) -> np.ndarray:
    """int32 `[1, length]` ids of one sentence with EOS, for `model`."""
    return seq2seq_batches.pad_sources(
        [self.source_tokenizer.encode(sentence)], 1, self.length_multiple,
        _SP.EOS_ID)

  def translate_ids(self, params: Any, sentences: Sequence[str],
                    beam_size: int = 4, alpha: float = 0.6,
                    devices: Optional[Sequence[jax.Device]] = None
                    ) -> list[list[int]]:
    """Target ids of each sentence's translation (no EOS)."""
    if not sentences:
      return []
    sources = self.source_tokenizer.encode_batch(sentences)
    length = seq2seq_batches.padded_length(
        max(len(s) for s in sources) + 1, self.length_multiple)
    rows = min(self.batch_size, len(sources))
    devices = list(devices or jax.local_devices()[:1])
    devices = devices[:-(-len(sources) // rows)]  # no idle copies
    copies = [jax.device_put(params, d) for d in devices]
    # Similar lengths share a batch, whose search ends with its longest.
    order = np.argsort([len(s) for s in sources], kind='stable')
    pending = []
    for n, start in enumerate(range(0, len(sources), rows)):
      chunk = [sources[i] for i in order[start:start + rows]]
      inputs = seq2seq_batches.pad_pairs(
          chunk, [np.zeros(0, np.int32)] * len(chunk), length, rows,
          _SP.BOS_ID, _SP.EOS_ID)['inputs']
      device, copy = devices[n % len(devices)], copies[n % len(devices)]
      inputs = jax.device_put(inputs, device)
      # Dispatch is asynchronous: every device gets work before any wait.
      if beam_size <= 1:
        out = decode.greedy_search(self.model, copy, inputs,
                                   self.max_decode_length, _SP.BOS_ID,
                                   _SP.EOS_ID)
      else:
        out, _ = decode.beam_search(
            self.model, copy, inputs, beam_size, self.max_decode_length,
            float(alpha), _SP.BOS_ID, _SP.EOS_ID)
      pending.append((out, len(chunk)))
    found = []
    for out, count in pending:
      found.extend(decode.until_eos(row, _SP.EOS_ID)
                   for row in np.asarray(out)[:count])
    ids = [None] * len(sources)
    for i, row in zip(order, found):
      ids[i] = row
    return ids

  def translate(self, params: Any, sentences: Sequence[str],
                beam_size: int = 4, alpha: float = 0.6,
                devices: Optional[Sequence[jax.Device]] = None) -> list[str]:
    """Detokenised translations of `sentences` (greedy for beam_size 1)."""
    return [self.target_tokenizer.decode(ids) for ids in self.translate_ids(
        params, sentences, beam_size, alpha, devices)]

  def attention(self, params: Any, sentence: str, target_ids: Sequence[int]
                ) -> np.ndarray:
    """The decoder's attention over the source while it produces
    `target_ids` and EOS, teacher-forced.

    Returns:
      float32 `[maps, target_length + 1, source_length + 1]`: one map for
      an RNN, one per layer and head (layer-major) for the Transformer.
    """
    inputs = self.source_ids(sentence)
    valid = int((inputs != 0).sum())
    decoder_inputs = np.asarray([[_SP.BOS_ID, *target_ids]], np.int32)
    _, state = self.model.apply({'params': params}, inputs, decoder_inputs,
                                mutable=['intermediates'])
    found = state.get('intermediates', {})
    if isinstance(self.model, TransformerSeq2Seq):
      weights = np.asarray(cross_attention_weights(found))[:, 0]
      weights = weights.reshape(-1, *weights.shape[-2:])
    elif 'attention_weights' in found.get('decoder', {}):
      weights = np.asarray(found['decoder']['attention_weights'][0])
    else:
      raise ValueError('this model has no attention (a context-vector '
                       'encoder-decoder)')
    return weights[..., :valid].astype(np.float32)


class TranslationTask(Task):
  """Sentence-pair translation with a seq2seq model.

  Config keys read here: corpus, source_lang, target_lang, data_dir,
  cache_dir, tokenizer ('sentencepiece'), spm_vocab_size, spm_model_type,
  spm_joint, spm_character_coverage, model and its keys, batch_size,
  max_length, length_multiple, seed, eval_steps, label_smoothing,
  beam_size, length_penalty, max_decode_length.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.tokenizer != 'sentencepiece':
      raise ValueError(f"task 'translate' needs tokenizer 'sentencepiece', "
                       f'not {cfg.tokenizer!r}')
    if (cfg.model == 'transformer_seq2seq' and not cfg.spm_joint
        and cfg.share_embeddings == 'all'):
      # Two vocabularies of one size would pass the model's own check,
      # tying unrelated pieces of the two languages to one row.
      raise ValueError("share_embeddings='all' needs one joint vocabulary: "
                       'set --config.spm_joint=True or '
                       "--config.share_embeddings=decoder")
    self.raw = {split: load_pairs(cfg.corpus, split, cfg.source_lang,
                                  cfg.target_lang, cfg.data_dir,
                                  cfg.cache_dir) for split in SPLITS}
    sources, targets = self.raw['train']
    train = lambda texts, name: tokenizers.cached_sentencepiece(  # noqa: E731
        texts, cfg.cache_dir, f'{cfg.corpus}.{name}', cfg.spm_vocab_size,
        cfg.spm_model_type, cfg.spm_character_coverage)
    if cfg.spm_joint:
      self.source_tokenizer = self.target_tokenizer = train(
          sources + targets, f'{cfg.source_lang}+{cfg.target_lang}')
    else:
      self.source_tokenizer = train(sources, cfg.source_lang)
      self.target_tokenizer = train(targets, cfg.target_lang)
    self.ids = {split: (self.source_tokenizer.encode_batch(s),
                        self.target_tokenizer.encode_batch(t))
                for split, (s, t) in self.raw.items()}
    self._model = build_model(cfg, self.source_tokenizer.vocab_size,
                              self.target_tokenizer.vocab_size)
    self._pairs = self._bucketed(slice(None))
    self.translator = Translator(
        self._model, self.source_tokenizer, self.target_tokenizer,
        cfg.max_decode_length, cfg.batch_size, cfg.length_multiple)

  def _bucketed(self, rows: slice) -> seq2seq_batches.BucketedPairs:
    cfg = self.config
    return seq2seq_batches.BucketedPairs(
        *self.ids['train'], cfg.batch_size, cfg.length_multiple,
        cfg.max_length, cfg.seed, _SP.BOS_ID, _SP.EOS_ID, rows)

  def save_assets(self, workdir: str) -> None:
    self.source_tokenizer.save(os.path.join(workdir, SOURCE_TOKENIZER))
    self.target_tokenizer.save(os.path.join(workdir, TARGET_TOKENIZER))

  @property
  def model(self) -> nn.Module:
    return self._model

  @property
  def steps_per_epoch(self) -> int:
    return self._pairs.steps_per_epoch

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    return {'inputs': dummy_inputs(self.config),
            'decoder_inputs': np.zeros(shape, np.int32),
            'targets': np.zeros(shape, np.int32),
            'weights': np.zeros(shape, np.float32)}

  def loss(self, params: Any, batch: dict, rng, train: bool) -> Metrics:
    logits = self.model.apply({'params': params}, batch['inputs'],
                              batch['decoder_inputs'], train=train,
                              rngs={'dropout': rng})
    targets, weights = batch['targets'], batch['weights']
    smoothing = self.config.label_smoothing
    metrics = {
        'loss': losses.cross_entropy(logits, targets, weights, smoothing),
        'accuracy': losses.accuracy(logits, targets, weights),
    }
    # Perplexity is of the true targets, not of the smoothed ones.
    metrics['nll'] = (losses.cross_entropy(logits, targets, weights)
                      if smoothing else metrics['loss'])
    return metrics

  def train_stream(self, rows: slice):
    return seq2seq_batches.train_stream(self._bucketed(rows))

  def _batches(self, split: str, rows: slice, num_batches=None):
    cfg = self.config
    return seq2seq_batches.eval_batches(
        *self.ids[split], cfg.batch_size, cfg.length_multiple, _SP.BOS_ID,
        _SP.EOS_ID, rows, num_batches)

  def eval_batches(self, rows: slice, full: bool) -> Iterable[dict]:
    return self._batches('validation', rows,
                         None if full else self.config.eval_steps)

  def summarize(self, averages: dict[str, float]) -> dict[str, float]:
    out = dict(averages)
    if 'nll' in out:
      out['perplexity'] = math.exp(min(out['nll'], 50.0))
    return out

  def final_evaluation(self, params: Any, rows: slice,
                       evaluate: Callable[[Iterable[dict]], dict[str, float]]
                       ) -> dict[str, float]:
    """The test split's loss and perplexity (`test_*`), and `eval_bleu`:
    sacreBLEU (13a, detokenised) of the beam-searched translations of the
    test split (`beam_size`, `length_penalty`) against its references.

    With `final_eval_full` off (smoke runs), only the first `eval_steps`
    batches of the test split are scored and translated (0: all, as for
    every evaluation).
    """
    cfg = self.config
    limit = None if cfg.final_eval_full or not cfg.eval_steps else (
        cfg.eval_steps)
    out = {f'test_{k}': v
           for k, v in evaluate(self._batches('test', rows, limit)).items()}
    sources, references = self.raw['test']
    if limit is not None:
      sources = sources[:limit * cfg.batch_size]
      references = references[:limit * cfg.batch_size]
    # Every host translates the whole split from its own copy of the
    # (replicated) parameters; batches go round-robin to its devices.
    hypotheses = self.translator.translate(
        parallel.to_host(params), sources, cfg.beam_size, cfg.length_penalty,
        devices=jax.local_devices()[:max(cfg.num_devices, 0) or None])
    out['eval_bleu'] = corpus_bleu(hypotheses, references).score
    return out
