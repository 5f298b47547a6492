"""Sentence classification (SST-2 sentiment): one label per sentence.

Reported figures: `eval_accuracy`, the sentence accuracy over the whole
validation split. GLUE's test splits are unlabelled, so there is no test
figure.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lm_jax.data.builders.glue_tsv import DATASETS, load_examples
from lm_jax.data.tokenizers import WordTokenizer
from lm_jax.models.classifier import RecurrentClassifier
from lm_jax.models.elmo import with_elmo
from lm_jax.tasks import pretrained
from lm_jax.tasks.sentences import SENTENCE_MARKERS, SPECIALS, SentenceTask

# What a classifier takes from a recurrent LM (`models.rnn_lm.RNNLM`): its
# word embeddings and its recurrent layers; the softmax is left behind.
_FROM_LM = {'embed': 'token_embedding', 'rnn': 'rnn'}


def whole_sentence_rows(sentences: list[str]) -> np.ndarray:
  """The indices of the rows that are no run of words inside another row.

  GLUE's SST-2 training split labels every phrase of the treebank's parse
  trees. Of its 67,349 rows (9 words on average), the 6,886 that no other
  row contains are the whole sentences, or nearly (the binary SST has 6,920
  training sentences), and read like the validation split's (19 words on
  average).
  """
  rows = [' '.join(sentence.split()) for sentence in sentences]
  distinct = set(rows)
  # Only the runs that are rows themselves are kept: a few thousand, not
  # every run of every row.
  inside = set()
  for row in distinct:
    words = row.split()
    for length in range(1, len(words)):
      inside.update(run for i in range(len(words) - length + 1)
                    if (run := ' '.join(words[i:i + length])) in distinct)
  return np.array([i for i, row in enumerate(rows) if row not in inside],
                  np.int64)


def labelled_splits(cfg) -> dict:
  """The corpus's 'train' and 'validation' (sentences, labels); with
  `whole_sentences`, training keeps only the rows no other row contains;
  with `max_train_examples`, it keeps that many, a fixed random sample
  (`data_seed`) in file order."""
  splits = {split: load_examples(cfg.corpus, split, cfg.data_dir,
                                 cfg.cache_dir)
            for split in ('train', 'validation')}
  if cfg.get('whole_sentences'):
    sentences, labels = splits['train']
    keep = whole_sentence_rows(sentences)
    splits['train'] = [sentences[i] for i in keep], labels[keep]
  if cfg.max_train_examples:
    sentences, labels = splits['train']
    keep = np.sort(np.random.default_rng(cfg.data_seed).permutation(
        len(labels))[:cfg.max_train_examples])
    splits['train'] = [sentences[i] for i in keep], labels[keep]
  return splits


class ClassificationTask(SentenceTask):
  """A recurrent classifier trained on a GLUE single-sentence dataset.

  Sentences are white-space tokenised (GLUE's are already tokenised); the
  vocabulary is the training split's words seen `min_count` times.

  With `pretrained_lm`, the workdir of a recurrent LM trained on the
  dataset's unlabelled sentences (Dai & Le 2015; ULMFiT), the classifier
  takes that LM's vocabulary, embeddings and recurrent layers, so its
  embed_dim, hidden_size, num_layers, cell, forget_bias and
  lstm_second_bias must be the LM's
  and it must be one-directional; each sentence starts with the LM's
  end-of-line word, as it did in the LM's stream. `max_train_examples`
  keeps a fixed random sample of the training split (drawn with
  `data_seed`, the same for every run): how pre-training pays when labels
  are few.

  With `elmo_bilm`, the workdir of a bi-LM (task 'bilm'), the words also
  get ELMo vectors, the learned mix of that bi-LM's frozen layers, beside
  their embeddings (Peters et al. 2018); the vocabulary is the bi-LM's.

  Config keys read here: corpus (a dataset of `glue_tsv.DATASETS`),
  data_dir, cache_dir, model ('classifier'), min_count, pretrained_lm,
  elmo_bilm, frozen_params, whole_sentences, max_train_examples,
  data_seed, embed_dim, hidden_size, num_layers, bidirectional, cell,
  pooling, sentence_norm, mlp_dim, dropout_rate, word_dropout_rate,
  sentence_markers, pooling_dropout, forget_bias, lstm_second_bias,
  compute_dtype, batch_size, seed, eval_steps, length_multiple,
  length_bucketing.
  """

  def prepare(self) -> None:
    cfg = self.config
    if cfg.model != 'classifier':
      raise ValueError(f"task 'classify' trains model 'classifier' or "
                       f"'bert', not {cfg.model!r}")
    splits = labelled_splits(cfg)
    elmo = None
    if cfg.pretrained_lm and cfg.elmo_bilm:
      raise ValueError('pretrained_lm and elmo_bilm each bring their own '
                       'vocabulary: set one of them')
    if cfg.sentence_markers and (cfg.pretrained_lm or cfg.elmo_bilm):
      # An LM's sentences began with its end-of-line word, and the ELMo
      # embedder frames them with <s> and </s> itself.
      raise ValueError('sentence_markers is for a classifier with its own '
                       'vocabulary; a pre-trained LM or bi-LM frames '
                       'sentences its own way: set '
                       '--config.sentence_markers=False')
    if cfg.elmo_bilm:
      self.tokenizer, elmo = pretrained.elmo_for(cfg)
    elif cfg.pretrained_lm:
      if cfg.bidirectional:
        raise ValueError('a classifier fine-tuned from a one-directional LM '
                         'must be one-directional: set '
                         '--config.bidirectional=False')
      lm_config = pretrained.load_run_config(cfg.pretrained_lm)
      if (lm_config.get('task'), lm_config.get('model')) != ('lm', 'rnn_lm'):
        raise ValueError(f'{cfg.pretrained_lm} is a {lm_config.get("task")!r} '
                         f'run of model {lm_config.get("model")!r}, not a '
                         "recurrent LM ('rnn_lm'): train "
                         'experiments/configs/sst2_lm.py')
      pretrained.check_lstm_settings(lm_config, cfg, cfg.pretrained_lm)
      self.tokenizer = pretrained.load_tokenizer(cfg.pretrained_lm)
      if getattr(self.tokenizer, 'words', [None])[0] != SPECIALS[0]:
        raise ValueError(f'the LM in {cfg.pretrained_lm} has no padding word '
                         f'{SPECIALS[0]!r} at id 0; train it on a GLUE '
                         'corpus (experiments/configs/sst2_lm.py)')
    else:
      self.tokenizer = WordTokenizer.from_text(
          '\n'.join(splits['train'][0]), min_count=cfg.min_count,
          specials=SPECIALS + (SENTENCE_MARKERS if cfg.sentence_markers
                               else ()),
          eos='')
    # The LM read each sentence right after the previous one's end of
    # line; starting the classifier's sentences with that token brings the
    # transplanted LSTM near the states it learnt to begin sentences from
    # (1-2 points of SST-2 dev accuracy at seed 0, README).
    start = '\n' if cfg.pretrained_lm and self.tokenizer.eos else ''
    end = ''
    if cfg.sentence_markers:
      # A bi-LSTM's states at the markers have read the whole sentence and
      # no word of it yet, something the attention pooling can pick.
      start, end = SENTENCE_MARKERS[0] + ' ', ' ' + SENTENCE_MARKERS[1]
    # The framing tokens are no words for word dropout to replace.
    kept_ids = tuple(int(i) for i in self.tokenizer.encode(start + end))
    self.examples = {
        split: {'inputs': [self.tokenizer.encode(start + s + end)
                           for s in sentences],
                'targets': labels}
        for split, (sentences, labels) in splits.items()}
    self._model = RecurrentClassifier(
        vocab_size=self.tokenizer.vocab_size,
        num_classes=DATASETS[cfg.corpus].num_classes,
        embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_size,
        num_layers=cfg.num_layers, bidirectional=cfg.bidirectional,
        cell_type=cfg.cell, pooling=cfg.pooling, mlp_dim=cfg.mlp_dim,
        dropout_rate=cfg.dropout_rate,
        word_dropout_rate=cfg.word_dropout_rate,
        pooling_dropout=cfg.pooling_dropout, unk_id=self.tokenizer.unk_id,
        kept_ids=kept_ids, forget_bias=cfg.forget_bias,
        second_bias=cfg.lstm_second_bias, sentence_norm=cfg.sentence_norm,
        extra_features_dim=2 * elmo.config.hidden_size if elmo else 0,
        fused_lstm=cfg.fused_lstm, dtype=cfg.compute_dtype)
    if elmo:
      self._model = with_elmo(self._model, elmo)

  def pretrained_params(self, params: Any) -> Any:
    if self.config.elmo_bilm:
      return pretrained.elmo_weights(params, self.config.elmo_bilm)
    if self.config.pretrained_lm:
      return pretrained.pretrained_lm(params, self.config.pretrained_lm,
                                      _FROM_LM)
    return params

  def save_assets(self, workdir: str) -> None:
    self.tokenizer.save(os.path.join(workdir, 'tokenizer.json'))

  def dummy_batch(self) -> dict:
    shape = (1, self.config.length_multiple)
    return {'inputs': np.zeros(shape, np.int32),
            'lengths': np.zeros(shape[:1], np.int32),
            'targets': np.zeros(shape[:1], np.int32),
            'weights': np.zeros(shape[:1], np.float32)}

  def logits(self, params: Any, batch: dict, rng, train: bool):
    return self.model.apply({'params': params}, batch['inputs'],
                            batch['lengths'], train=train,
                            rngs={'dropout': rng})
