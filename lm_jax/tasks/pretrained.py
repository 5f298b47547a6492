"""Parts of a new model taken from another run's checkpoint.

Transfer learning in the recurrent era (Dai & Le 2015, ULMFiT, ELMo) starts
a task model from a language model trained on unlabelled text: the new
model's parameters are initialised as usual, then the subtrees it shares
with the pre-trained model are overwritten by the trained ones. The loop
does this once, through `Task.pretrained_params`, never on a resumed run.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lm_jax.data import tokenizers
from lm_jax.models.elmo import ElmoEmbedder
from lm_jax.tasks.bilm import bilm_config
from lm_jax.train import optim
from lm_jax.train.checkpoint import load_params
from lm_jax.train.logging import CONFIG_FILE, read_run_config

# Where ELMo's BiLM sits in a `models.elmo.WithElmo` model's parameters.
ELMO_BILM = 'elmo/bilm'


def _run_file(workdir: str, name: str) -> str:
  path = os.path.join(workdir, name)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} is missing: {workdir!r} is not the workdir of a finished '
        'pre-training run; train that preset first or fix the path')
  return path


def load_tokenizer(workdir: str) -> tokenizers.Tokenizer:
  """The tokenizer a pre-training run saved in its workdir."""
  return tokenizers.load(_run_file(workdir, 'tokenizer.json'))


def load_run_config(workdir: str) -> dict:
  """The config.json of a pre-training run."""
  _run_file(workdir, CONFIG_FILE)  # its message says which run to train
  return read_run_config(workdir)


def elmo_for(config) -> tuple[tokenizers.Tokenizer, ElmoEmbedder]:
  """The vocabulary and an `ElmoEmbedder` of the bi-LM trained in the
  workdir `config.elmo_bilm` (experiments/configs/*_bilm.py), for a
  downstream task whose config keeps that bi-LM frozen; its weights go in
  by `elmo_weights`."""
  if not optim.freezes(config.frozen_params, ELMO_BILM):
    raise ValueError('ELMo keeps its bi-LM frozen: add '
                     f'--config.frozen_params={ELMO_BILM}')
  workdir = config.elmo_bilm
  run_config = load_run_config(workdir)
  if run_config.get('task') != 'bilm':
    raise ValueError(f'{workdir} is a {run_config.get("task")!r} run, not a '
                     "bi-LM ('bilm') run")
  tokenizer = load_tokenizer(workdir)
  return tokenizer, ElmoEmbedder(
      bilm_config(run_config, tokenizer.vocab_size),
      bos_id=tokenizer.words.index('<s>'), eos_id=tokenizer.words.index('</s>'))


def transplant(params: Any, source: Any, mapping: Mapping[str, str],
               source_name: str = 'the pre-trained model') -> Any:
  """`params` with subtrees replaced by `source`'s.

  Args:
    params: the new model's freshly initialised parameters.
    source: the pre-trained model's parameters.
    mapping: '/'-joined path in `params` -> path in `source`; each pair
      must hold the same tree of the same shapes.
    source_name: names the source in error messages.

  Returns:
    A copy of `params`; the subtrees not in `mapping` are untouched.

  Raises:
    ValueError: a path is missing or the shapes differ (a pre-training run
      whose sizes do not match this model's config).
  """
  def subtree(tree, path, what):
    for key in filter(None, path.split('/')):
      if not isinstance(tree, Mapping) or key not in tree:
        raise ValueError(f'{what} has no parameters at {path!r}')
      tree = tree[key]
    return tree

  def replaced(tree, keys, value):
    if not keys:
      return value
    tree = dict(tree)
    tree[keys[0]] = replaced(tree[keys[0]], keys[1:], value)
    return tree

  out = params
  for target, origin in mapping.items():
    mine = subtree(params, target, 'the new model')
    theirs = subtree(source, origin, source_name)
    shapes = jax.tree.map(jnp.shape, mine)
    if jax.tree.structure(mine) != jax.tree.structure(theirs) or (
        shapes != jax.tree.map(jnp.shape, theirs)):
      raise ValueError(
          f'{source_name} at {origin!r} does not fit the new model at '
          f'{target!r}: {jax.tree.map(jnp.shape, theirs)} vs {shapes}; '
          'give this model the sizes the pre-training run used')
    out = replaced(out, target.split('/'), jax.tree.map(
        lambda new, old: jnp.asarray(old, new.dtype), mine, theirs))
  return out


def pretrained_lm(params: Any, workdir: str,
                  mapping: Mapping[str, str]) -> Any:
  """`transplant` from the newest checkpoint of the run in `workdir`."""
  _run_file(workdir, 'config.json')
  return transplant(params, load_params(workdir), mapping,
                    f'the language model in {workdir}')


def elmo_weights(params: Any, workdir: str) -> Any:
  """A `models.elmo.WithElmo` model's `params` with its bi-LM's weights
  from the bi-LM run in `workdir`."""
  return pretrained_lm(params, workdir, {ELMO_BILM: ''})


# Where a recurrent LM's parameters have one entry per word: path -> axis.
_VOCAB_AXES = {('token_embedding', 'embedding'): 0, ('output_bias',): 0,
               ('output', 'kernel'): 1, ('output', 'bias'): 0}


def rows_by_word(source_words: list[str], words: list[str]) -> np.ndarray:
  """int `[len(words)]`: each word's id in `source_words`, -1 where absent."""
  index = {w: i for i, w in enumerate(source_words)}
  return np.array([index.get(w, -1) for w in words], np.int64)


def lm_run_config(workdir: str) -> dict:
  """The config.json of the recurrent LM run in `workdir`.

  Raises:
    FileNotFoundError: `workdir` is not a finished run's workdir.
    ValueError: it is another kind of run.
  """
  run_config = load_run_config(workdir)
  if (run_config.get('task', 'lm'), run_config.get('model')) != (
      'lm', 'rnn_lm'):
    raise ValueError(f'{workdir} is not a recurrent LM run (task '
                     f'{run_config.get("task")!r}, model '
                     f'{run_config.get("model")!r}); point pretrained_lm '
                     "at the workdir of a model 'rnn_lm' run")
  return run_config


# Settings that change what a copied LSTM computes without changing its
# weights' shapes: the forget bias is a constant, no weight, so no shape
# check sees it; a missing second bias would be blamed on the sizes.
_SAME_AS_THE_LM = (('forget_bias', 0.0), ('lstm_second_bias', False))


def check_lstm_settings(run_config: dict, config: Any, workdir: str) -> None:
  """Raises ValueError where `config` reads an LSTM copied from the LM run
  in `workdir` (whose config.json is `run_config`) differently from how it
  was trained."""
  for key, default in _SAME_AS_THE_LM:
    trained = run_config.get(key, default)
    if trained != config[key]:
      raise ValueError(f'the LM in {workdir} was trained with {key} '
                       f'{trained}: set --config.{key}={trained}')


def lm_from_lm(params: Any, workdir: str,
               tokenizer: tokenizers.Tokenizer) -> Any:
  """A recurrent LM's fresh `params`, all taken from the LM run in `workdir`
  whose vocabulary may differ: ULMFiT's second stage, an LM of general text
  fine-tuned on the task's own.

  The layers are copied as they are. The embedding rows, and a softmax's
  columns and biases, are matched by word; a word the source never saw
  starts at the mean of the source's rows, as in ULMFiT.

  Raises:
    ValueError: `workdir` is not a recurrent word LM's run, or its sizes
      differ from this model's.
  """
  lm_run_config(workdir)
  source_tokenizer = load_tokenizer(workdir)
  if not (isinstance(source_tokenizer, tokenizers.WordTokenizer)
          and isinstance(tokenizer, tokenizers.WordTokenizer)):
    raise ValueError('an LM starts from another only between word '
                     "vocabularies (tokenizer 'word')")
  rows = rows_by_word(source_tokenizer.words, tokenizer.words)
  source = traverse_util.flatten_dict(load_params(workdir))
  mine = traverse_util.flatten_dict(params)
  if set(source) != set(mine):
    raise ValueError(f'the LM in {workdir} has other layers than this one: '
                     'give this model the settings that run used')
  out = {}
  for path, new in mine.items():
    old = np.asarray(source[path])
    axis = _VOCAB_AXES.get(path)
    if axis is not None:
      known = np.expand_dims(rows >= 0, 1 - axis) if old.ndim == 2 else (
          rows >= 0)
      old = np.where(known, np.take(old, np.maximum(rows, 0), axis),
                     old.mean(axis, keepdims=True))
    if old.shape != new.shape:
      raise ValueError(f'the LM in {workdir} does not fit this model at '
                       f'{"/".join(path)}: {old.shape} vs {new.shape}; give '
                       'this model the sizes that run used')
    out[path] = jnp.asarray(old, new.dtype)
  return traverse_util.unflatten_dict(out)

