"""Sentence classification by fine-tuning BERT (Devlin et al. 2019, 4.1).

Each sentence is WordPiece-tokenised into [CLS] pieces [SEP] (cut to
`block_size` ids, or the model's positions if fewer); the sentence vector is
the pooled [CLS] state or the mean of the tokens' states (`pooling`: 'cls' or
'mean'), then dropout and a linear layer give the class logits. Batches,
loss and `eval_accuracy` are those of every sentence task
(`lm_jax.tasks.sentences`).

With `init_from` (a BERT workdir: a masked-LM run or a Hugging Face import),
the run takes that run's tokenizer and architecture, and its first step
starts from its encoder and pooler (a masked-LM run's pooler is its
random start shrunk by weight decay: without next-sentence prediction no
gradient reaches it); the classifier layer starts fresh.
Without it, BERT trains from scratch on a WordPiece vocabulary of the
training sentences.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from lm_jax.data.wordpiece import cached_wordpiece
from lm_jax.tasks import masked_lm
from lm_jax.tasks.classification import ClassificationTask, labelled_splits


class BertClassificationTask(ClassificationTask):
  """BERT fine-tuned on a GLUE single-sentence dataset.

  Config keys read here: corpus, data_dir, cache_dir, model ('bert'),
  init_from, pooling ('cls' or 'mean'), block_size, wordpiece_vocab_size
  and lower_case (without init_from), the BERT model keys
  (`lm_jax.models.bert.bert_config`), whole_sentences,
  max_train_examples, data_seed, batch_size, seed, eval_steps,
  length_multiple, length_bucketing.
  """

  def prepare(self) -> None:
    cfg = self.config
    splits = labelled_splits(cfg)
    self.tokenizer = masked_lm.adopt_pretrained(cfg) or cached_wordpiece(
        splits['train'][0], cfg.cache_dir, cfg.corpus,
        cfg.wordpiece_vocab_size, cfg.lower_case)
    # Cut to the model's positions too (a small imported model may have
    # fewer than block_size), and to a multiple of length_multiple: batches
    # are padded up to one, which must not pass the last position.
    fitting = cfg.max_positions - cfg.max_positions % cfg.length_multiple
    if not fitting:
      raise ValueError(
          f'length_multiple {cfg.length_multiple} exceeds the model\'s '
          f'{cfg.max_positions} positions; pass a smaller '
          '--config.length_multiple')
    max_length = min(cfg.block_size, fitting)
    self.examples = {
        split: {'inputs': [self.tokenizer.encode_sentence(s, max_length)
                           for s in sentences],
                'targets': labels}
        for split, (sentences, labels) in splits.items()}
    self._model = masked_lm.bert_model(cfg, self.tokenizer)

  def logits(self, params: Any, batch: dict, rng, train: bool):
    inputs = batch['inputs']
    valid = jnp.arange(inputs.shape[1])[None, :] < batch['lengths'][:, None]
    return self.model.apply({'params': params}, inputs, valid=valid,
                            train=train, rngs={'dropout': rng})

  def pretrained_params(self, params: Any) -> Any:
    return masked_lm.pretrained_from(self.config, params,
                                     ('encoder', 'pooler'))


def classification_task(config) -> ClassificationTask:
  """Task 'classify': a recurrent classifier, or BERT (model 'bert')."""
  if config.model == 'bert':
    return BertClassificationTask(config)
  return ClassificationTask(config)
