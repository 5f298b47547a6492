"""Checks on a run's settings before anything is written or JAX is
imported: values no run can use, and settings the run would silently
ignore or replace (a run length given twice, an architecture `init_from`
sets). Each failure is one error line."""

import math
import re
from typing import Sequence

import ml_collections

from experiments.cli import config_overrides, fail
from lm_jax.train.logging import ARCHITECTURE_KEYS

# Values a run's settings may take, where a wrong one would otherwise
# surface as a traceback deep in the model, or after a relaunch had
# rewritten the workdir's config.json. Copies of the library's lists, as
# this runs before jax may be imported; a test keeps them equal.
CHOICES = {
    'compute_dtype': ('float32', 'bfloat16', 'float16'),
    'activation': ('gelu', 'gelu_tanh', 'relu'),  # lm_jax.nn.transformer's
    'normalize_loss_by': ('token', 'sequence'),
}
# lm_jax.data.builders.glue_tsv.DATASETS, whose module imports tfds.
GLUE_CORPORA = ('sst2',)


def _recurrent_classifier(c: ml_collections.ConfigDict) -> bool:
  return (c.get('task'), c.get('model')) == ('classify', 'classifier')


_RECURRENT_CLASSIFIER = ("the recurrent classifier (task 'classify' with "
                         "model 'classifier')")

# Settings only some runs read: key -> (those runs, in words; the settings
# that tell; whether `config` is one). Set anywhere else they would be
# silently ignored.
READ_ONLY_BY = {
    'eval_streams': (
        "a recurrent LM read in contiguous streams (model 'rnn_lm', "
        "lm_batching 'contiguous')", ('model', 'lm_batching'),
        lambda c: (c.get('model') == 'rnn_lm'
                   and c.get('lm_batching') == 'contiguous')),
    'lstm_second_bias': (
        "the LSTMs of models 'rnn_lm' and 'classifier'", ('model',),
        lambda c: c.get('model') in ('rnn_lm', 'classifier')),
    'pretrained_lm': (
        "a recurrent classifier or LM (task 'classify' with model "
        "'classifier', or 'lm' with 'rnn_lm')", ('task', 'model'),
        lambda c: (_recurrent_classifier(c)
                   or (c.get('task'), c.get('model')) == ('lm', 'rnn_lm'))),
    # Only a classifier's labelled examples are sampled or filtered.
    'whole_sentences': ("the 'classify' task's training examples",
                        ('task',), lambda c: c.get('task') == 'classify'),
    'max_train_examples': ("the 'classify' task's training examples",
                           ('task',), lambda c: c.get('task') == 'classify'),
    **{key: (_RECURRENT_CLASSIFIER, ('task', 'model'), _recurrent_classifier)
       for key in ('sentence_markers', 'sentence_norm', 'pooling_dropout',
                   'mlp_dim')},
    'elmo_bilm': (
        "the tagger and the recurrent classifier (tasks 'tag', and "
        "'classify' with model 'classifier')", ('task', 'model'),
        lambda c: c.get('task') == 'tag' or _recurrent_classifier(c)),
    'text_file': ("the word-vector task ('embeddings'); the others read "
                  'corpus', ('task',), lambda c: c.get('task') == 'embeddings'),
    'word2vec_cbow': (
        "model 'word2vec' (fastText reads a word's n-grams, GloVe its "
        'co-occurrences)', ('model',), lambda c: c.get('model') == 'word2vec'),
    'word_dropout_rate': (
        "the recurrent classifier, the tagger and the bi-LM (tasks "
        "'classify' with model 'classifier', 'tag' and 'bilm')",
        ('task', 'model'),
        lambda c: c.get('task') in ('tag', 'bilm') or _recurrent_classifier(c)),
}


def _models(*models: str):
  """Whether a run trains one of `models` (an n-gram run has none)."""
  return lambda c: c.get('task') != 'ngram' and c.get('model') in models


# Like READ_ONLY_BY, for settings whose defaults are on and which presets
# set for their own corpus or model (sst2_lm's min_count stays as it is
# when the LM is pointed at PTB): refused only where the command line gives
# them.
READ_ONLY_WHERE_GIVEN = {
    'hidden_size': (
        "the recurrent models ('rnn_lm', 'classifier', 'tagger', 'bilm', "
        "'seq2seq_rnn'); a Transformer's width is embed_dim",
        ('task', 'model'),
        _models('rnn_lm', 'classifier', 'tagger', 'bilm', 'seq2seq_rnn')),
    'cell': (
        "the recurrent models but the bi-LM, whose are LSTMs ('rnn_lm', "
        "'classifier', 'tagger', 'seq2seq_rnn')", ('task', 'model'),
        _models('rnn_lm', 'classifier', 'tagger', 'seq2seq_rnn')),
    'bidirectional': ("the recurrent classifier (the tagger's and the "
                      "bi-LM's always are)", ('task', 'model'),
                      _models('classifier')),
    'num_heads': ("the Transformers ('gpt', 'bert', 'transformer_seq2seq')",
                  ('task', 'model'),
                  _models('gpt', 'bert', 'transformer_seq2seq')),
    'positional': ("model 'gpt' (BERT's positions are learned, the "
                   "translation Transformer's sinusoidal)", ('task', 'model'),
                   _models('gpt')),
    'min_count': (
        "a word vocabulary built from the run's own training text (tasks "
        "'bilm', 'embeddings', 'tag' and 'classify' with model 'classifier' "
        "without elmo_bilm or pretrained_lm, and 'lm' with tokenizer 'word' "
        f"on the GLUE corpora {', '.join(GLUE_CORPORA)}; PTB's vocabulary "
        'is its own)', ('task', 'model', 'tokenizer', 'corpus'),
        lambda c: (
            c.get('task') in ('bilm', 'embeddings')
            or (c.get('task') == 'tag' and not c.get('elmo_bilm'))
            or (_recurrent_classifier(c)
                and not (c.get('elmo_bilm') or c.get('pretrained_lm')))
            or ((c.get('task'), c.get('tokenizer')) == ('lm', 'word')
                and c.get('corpus') in GLUE_CORPORA))),
}


def _refuse_unread(key: str, readers: str, telling: Sequence[str],
                   config: ml_collections.ConfigDict) -> None:
  this_run = ' with '.join(f'{k} {config.get(k)!r}' for k in telling)
  fail(f'{key} applies to {readers}, not {this_run}; leave it at its '
       'default')


def check_values(config: ml_collections.ConfigDict) -> None:
  """Fails, before anything is written, on settings no run can use: sizes
  below 1 (a batch of 0 divides by 0), negative counts, rates outside
  [0, 1), unknown names and a malformed profile window."""
  # (steps_per_call is the loop's to check.)
  # keep_checkpoints 0 would have Orbax delete every checkpoint, old ones
  # included.
  # mlm_max_predictions 0 would mask nothing: a run without a gradient.
  for key in ('batch_size', 'grad_accum_steps', 'block_size', 'num_layers',
              'num_heads', 'embed_dim', 'mlp_ratio', 'hidden_size',
              'keep_checkpoints', 'length_multiple', 'max_positions',
              'type_vocab_size', 'mlm_max_predictions'):
    if key in config and config[key] < 1:
      fail(f'{key} must be at least 1, not {config[key]}')
  for key, value in config.items():
    if isinstance(value, float) and not math.isfinite(value):
      fail(f'{key} must be a finite number, not {value}')
  for key in ('num_train_steps', 'num_epochs', 'eval_every', 'eval_steps',
              'log_every', 'checkpoint_every', 'num_devices', 'cpu_devices',
              'warmup_steps', 'decay_steps', 'eval_streams', 'learning_rate',
              'min_learning_rate', 'length_penalty', 'mlp_hidden_dim'):
    if key in config and config[key] < 0:
      fail(f'{key} must be 0 or more, not {config[key]}')
  for key in ('dropout_rate', 'attention_dropout_rate', 'word_dropout_rate'):
    if config.get(key) is not None and not 0 <= config[key] < 1:
      fail(f'{key} must be in [0, 1), not {config[key]}')
  if 'mlm_rate' in config:
    if not 0 < config.mlm_rate <= 1:
      fail(f'mlm_rate must be in (0, 1], not {config.mlm_rate}')
    # Of the chosen tokens, these shares become [MASK] and a random word.
    shares = (config.mlm_mask_prob, config.mlm_random_prob)
    if min(shares) < 0 or sum(shares) > 1:
      fail(f'mlm_mask_prob and mlm_random_prob must be 0 or more and sum to '
           f'at most 1, not {shares[0]} and {shares[1]}')
  for key, choices in CHOICES.items():
    if key in config and config[key] not in choices:
      fail(f'{key} is one of {", ".join(choices)}, not {config[key]!r}')
  if config.get('normalize_loss_by') == 'sequence' and config.task != 'lm':
    # It divides by tokens / length: the sequences only where no row is
    # padded, and a classifier's targets have no length at all.
    fail("normalize_loss_by 'sequence' is for the 'lm' task, whose rows "
         "are whole windows; use 'token'")
  for key, (readers, telling, reads) in READ_ONLY_BY.items():
    if config.get(key) and not reads(config):
      _refuse_unread(key, readers, telling, config)
  window = config.get('profile_steps') or ''
  steps = re.fullmatch(r'(\d+):(\d+)', window)
  if window and not (steps and 1 <= int(steps[1]) < int(steps[2])):
    fail(f'profile_steps is START:STOP with 1 <= START < STOP (steps to '
         f'trace, counted from 1), not {window!r}')


def check_given(config: ml_collections.ConfigDict,
                args: Sequence[str]) -> None:
  """Fails on settings `args` give that the run would silently replace or
  ignore: num_train_steps where num_epochs > 0 sets it, the
  `READ_ONLY_WHERE_GIVEN` settings where the run does not read them, and
  the architecture and vocabulary of a run that continues another
  (`init_from`)."""
  given = config_overrides(args)
  if config.get('num_epochs') and 'num_train_steps' in given:
    fail(f'this run counts epochs (num_epochs={config.num_epochs}), which '
         'set num_train_steps; set --config.num_epochs instead, or add '
         '--config.num_epochs=0 to count steps')
  for key, (readers, telling, reads) in READ_ONLY_WHERE_GIVEN.items():
    if key in given and not reads(config):
      _refuse_unread(key, readers, telling, config)
  if config.get('init_from'):
    # The run continues that one: its architecture and vocabulary replace
    # the preset's (lm_jax.tasks.masked_lm.adopt_pretrained).
    for key in (*ARCHITECTURE_KEYS, 'wordpiece_vocab_size', 'lower_case'):
      if key in given:
        fail(f'{key} comes from the run init_from names '
             f'({config.init_from}), which this run continues; leave it '
             'out, or train without init_from')
