"""Hugging Face BERT checkpoints in and out of lm_jax, without PyTorch.

A Hugging Face BERT folder holds `config.json` (the architecture),
`model.safetensors` (the weights, read with `safetensors.numpy`), `vocab.txt`
and the tokenizer's settings (`tokenizer.json`, `tokenizer_config.json`).
`import_hf` turns one into an lm_jax workdir that `encode` and `init_from`
read like any trained run: `config.json` (task 'mlm', model 'bert', the
architecture in the run-config keys), `tokenizer.json` (WordPiece) and a
checkpoint at step 0 of `BertPretraining`'s parameters.

Weights map one to one: PyTorch's `Linear` stores `[out, in]`, Flax's
`Dense` `[in, out]`; the query, key and value projections become the fused
`qkv` kernel `[in, 3, heads, head_dim]`, the attention output `[heads,
head_dim, out]`. A checkpoint without a masked-LM head (`BertModel`, as
sentence-transformers ships) gets a freshly initialised one.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax import atomic_files
from lm_jax.data.wordpiece import WordPieceTokenizer
from lm_jax.models.bert import BertConfig, BertPretraining, bert_config
from lm_jax.train import checkpoint, optim
from lm_jax.train.steps import TrainState

log = logging.getLogger('lm_jax')

_ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh',
                'gelu_pytorch_tanh': 'gelu_tanh', 'relu': 'relu'}
WEIGHTS = 'model.safetensors'


def architecture(hf_config: dict) -> dict:
  """Run-config keys of a Hugging Face `BertConfig` dict."""
  if hf_config.get('model_type', 'bert') != 'bert':
    raise ValueError(f"not a BERT checkpoint: model_type "
                     f"{hf_config['model_type']!r}")
  if hf_config.get('is_decoder') or hf_config.get('add_cross_attention'):
    raise ValueError('a BERT decoder (is_decoder / add_cross_attention: '
                     'causal or cross-attention) is not supported; only '
                     'encoders are')
  if not hf_config.get('tie_word_embeddings', True):
    raise ValueError('tie_word_embeddings is false: the masked-LM decoder '
                     'has its own weights, and ours is the word embeddings')
  if hf_config.get('position_embedding_type', 'absolute') != 'absolute':
    raise ValueError('only absolute position embeddings are supported, not '
                     f"{hf_config['position_embedding_type']!r}")
  missing = [k for k in ('num_hidden_layers', 'num_attention_heads',
                         'hidden_size', 'intermediate_size')
             if k not in hf_config]
  if missing:
    raise ValueError(f'config.json lacks {", ".join(missing)}: not a BERT '
                     'config')
  act = hf_config.get('hidden_act', 'gelu')
  if act not in _ACTIVATIONS:
    raise ValueError(f'unsupported hidden_act {act!r}; known: '
                     f'{sorted(_ACTIVATIONS)}')
  return {
      'num_layers': hf_config['num_hidden_layers'],
      'num_heads': hf_config['num_attention_heads'],
      'embed_dim': hf_config['hidden_size'],
      'mlp_hidden_dim': hf_config['intermediate_size'],
      'max_positions': hf_config.get('max_position_embeddings', 512),
      'type_vocab_size': hf_config.get('type_vocab_size', 2),
      'layer_norm_epsilon': hf_config.get('layer_norm_eps', 1e-12),
      'activation': _ACTIVATIONS[act],
      'dropout_rate': hf_config.get('hidden_dropout_prob', 0.1),
      'attention_dropout_rate': hf_config.get('attention_probs_dropout_prob',
                                              0.1),
      'pre_norm': False,
  }


def _read_json(path: str) -> dict:
  """The JSON object in `path`; a file that is unreadable, not UTF-8, not
  JSON or not an object is a ValueError naming it."""
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except OSError as e:
    raise ValueError(f'{path} cannot be read ({e})') from e
  except ValueError as e:  # UnicodeDecodeError is one too
    raise ValueError(f'{path} is not JSON ({e}); restore it from the '
                     'model\'s original files') from e
  if not isinstance(value, dict):
    raise ValueError(f'{path} holds a JSON {type(value).__name__}, not an '
                     'object; restore it from the model\'s original files')
  return value


def read_tokenizer(hf_dir: str) -> WordPieceTokenizer:
  """The folder's WordPiece tokenizer: `vocab.txt` with the normaliser
  settings `AutoTokenizer` gives it.

  Those are `BertTokenizerFast`'s arguments, from `tokenizer_config.json`:
  `do_lower_case` (default True), `strip_accents` (default None: as
  lower-casing) and `tokenize_chinese_chars` (default True), the defaults
  also where the file is missing. Where `tokenizer.json`'s BertNormalizer
  disagrees, `BertTokenizerFast` rebuilds it from those arguments, so its
  settings never count; a damaged one is still an error, as there.
  """
  fast = os.path.join(hf_dir, 'tokenizer.json')
  if os.path.exists(fast):
    _read_json(fast)
  slow = os.path.join(hf_dir, 'tokenizer_config.json')
  cfg = _read_json(slow) if os.path.exists(slow) else {}
  settings = {'lower_case': cfg.get('do_lower_case', True),
              'strip_accents': cfg.get('strip_accents'),
              'chinese_chars': cfg.get('tokenize_chinese_chars', True)}
  vocab = os.path.join(hf_dir, 'vocab.txt')
  try:
    return WordPieceTokenizer.from_vocab_file(vocab, **settings)
  except UnicodeDecodeError as e:
    raise ValueError(f'{vocab} is not UTF-8 ({e}); restore it from the '
                     'model\'s original files') from e


def _strip_prefix(tensors: dict) -> dict:
  """Names without the 'bert.' of `BertFor...` checkpoints; old TF-ported
  LayerNorm names (gamma, beta) as today's (weight, bias)."""
  out = {}
  for name, value in tensors.items():
    if name.startswith('bert.'):
      name = name[len('bert.'):]
    name = name.replace('LayerNorm.gamma', 'LayerNorm.weight').replace(
        'LayerNorm.beta', 'LayerNorm.bias')
    out[name] = value
  return out


class _Tensors(dict):
  """A checkpoint's tensors by name; a missing one is bad input."""

  def __missing__(self, name: str):
    raise ValueError(f'the checkpoint has no tensor {name!r}: it is not a '
                     'BertModel of the architecture its config.json gives')


def params_from_hf(tensors: dict[str, np.ndarray], cfg: BertConfig,
                   fresh: Any) -> dict:
  """`BertPretraining` parameters from Hugging Face tensors.

  Args:
    tensors: name -> array, as `safetensors.numpy.load_file` returns.
    cfg: the architecture.
    fresh: initialised parameters, whose `mlm_head` is used where the
      checkpoint has none (and whose shapes every tensor must match).
  """
  t = _Tensors({k: np.asarray(v, np.float32)
                for k, v in _strip_prefix(tensors).items()})
  h, d = cfg.num_heads, cfg.embed_dim
  hd = d // h

  def dense(name):  # PyTorch's Linear is [out, in]; Flax's Dense [in, out]
    return {'kernel': t[f'{name}.weight'].T, 'bias': t[f'{name}.bias']}

  def norm(name):
    return {'scale': t[f'{name}.weight'], 'bias': t[f'{name}.bias']}

  encoder = {
      'token_embedding': {'embedding': t['embeddings.word_embeddings.weight']},
      'position_embedding': {
          'embedding': t['embeddings.position_embeddings.weight']},
      'token_type_embedding': {
          'embedding': t['embeddings.token_type_embeddings.weight']},
      'embedding_norm': norm('embeddings.LayerNorm'),
  }
  for i in range(cfg.num_layers):
    p = f'encoder.layer.{i}.'
    qkv = [f'{p}attention.self.{n}' for n in ('query', 'key', 'value')]
    encoder[f'layer_{i}'] = {
        'self_attention': {
            'qkv': {
                'kernel': np.stack([t[f'{n}.weight'].T for n in qkv],
                                   axis=1).reshape(d, 3, h, hd),
                'bias': np.stack([t[f'{n}.bias'] for n in qkv]).reshape(
                    3, h, hd)},
            'out': {
                'kernel': t[f'{p}attention.output.dense.weight'].T.reshape(
                    h, hd, d),
                'bias': t[f'{p}attention.output.dense.bias']}},
        'self_attention_norm': norm(f'{p}attention.output.LayerNorm'),
        'mlp': {'fc': dense(f'{p}intermediate.dense'),
                'proj': dense(f'{p}output.dense')},
        'mlp_norm': norm(f'{p}output.LayerNorm'),
    }
  params = {'encoder': encoder}
  if 'pooler.dense.weight' in t:
    params['pooler'] = dense('pooler.dense')
  else:  # BertForMaskedLM's checkpoints have none
    log.info('the checkpoint has no pooler: it starts fresh')
    params['pooler'] = fresh['pooler']
  decoder = t.get('cls.predictions.decoder.weight')
  if decoder is not None and not np.array_equal(
      decoder, t['embeddings.word_embeddings.weight']):
    raise ValueError('cls.predictions.decoder.weight differs from the word '
                     'embeddings: an untied masked-LM decoder is not '
                     'supported (ours is tied)')
  if 'cls.predictions.bias' in t:
    params['mlm_head'] = {'dense': dense('cls.predictions.transform.dense'),
                          'norm': norm('cls.predictions.transform.LayerNorm'),
                          'bias': t['cls.predictions.bias']}
  else:
    log.info('the checkpoint has no masked-LM head: it starts fresh')
    params['mlm_head'] = fresh['mlm_head']
  _check_shapes(params, fresh)
  return jax.tree.map(np.asarray, params)


def params_to_hf(params: dict, cfg: BertConfig) -> dict[str, np.ndarray]:
  """The inverse of `params_from_hf`: `BertModel`'s tensors (the encoder
  and the pooler; the MLM head as `BertForMaskedLM`'s `cls.predictions`)."""
  p = jax.tree.map(np.asarray, params)
  e, d = p['encoder'], cfg.embed_dim
  out = {
      'embeddings.word_embeddings.weight': e['token_embedding']['embedding'],
      'embeddings.position_embeddings.weight':
          e['position_embedding']['embedding'],
      'embeddings.token_type_embeddings.weight':
          e['token_type_embedding']['embedding'],
  }

  def dense(name, x, kernel=None):
    out[f'{name}.weight'] = np.ascontiguousarray(
        (x['kernel'] if kernel is None else kernel).T)
    out[f'{name}.bias'] = x['bias'].reshape(-1)

  def norm(name, x):
    out[f'{name}.weight'], out[f'{name}.bias'] = x['scale'], x['bias']

  norm('embeddings.LayerNorm', e['embedding_norm'])
  for i in range(cfg.num_layers):
    layer, pre = e[f'layer_{i}'], f'encoder.layer.{i}.'
    qkv = layer['self_attention']['qkv']
    for j, n in enumerate(('query', 'key', 'value')):
      dense(f'{pre}attention.self.{n}',
            {'bias': qkv['bias'][j]}, qkv['kernel'][:, j].reshape(d, d))
    attn_out = layer['self_attention']['out']
    dense(f'{pre}attention.output.dense', attn_out,
          attn_out['kernel'].reshape(d, d))
    norm(f'{pre}attention.output.LayerNorm', layer['self_attention_norm'])
    dense(f'{pre}intermediate.dense', layer['mlp']['fc'])
    dense(f'{pre}output.dense', layer['mlp']['proj'])
    norm(f'{pre}output.LayerNorm', layer['mlp_norm'])
  dense('pooler.dense', p['pooler'])
  if 'mlm_head' in p:
    head = p['mlm_head']
    dense('cls.predictions.transform.dense', head['dense'])
    norm('cls.predictions.transform.LayerNorm', head['norm'])
    out['cls.predictions.bias'] = head['bias']
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def _check_shapes(params: Any, expected: Any) -> None:
  got = jax.tree_util.tree_flatten_with_path(params)[0]
  want = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
  if len(got) != len(want):
    raise ValueError(f'{len(got)} imported tensors, the model has '
                     f'{len(want)}')
  for path, value in got:
    if path not in want or np.shape(value) != np.shape(want[path]):
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      raise ValueError(f'imported {name} has shape {np.shape(value)}, the '
                       f'model expects {np.shape(want.get(path))}')


def load_hf_folder(hf_dir: str, config: ml_collections.ConfigDict
                   ) -> tuple[ml_collections.ConfigDict, WordPieceTokenizer,
                              dict]:
  """Reads a Hugging Face BERT folder.

  Args:
    hf_dir: holds config.json, model.safetensors, vocab.txt.
    config: a run config with the BERT keys (the bert_mlm_small preset's);
      a copy gets the folder's architecture, task 'mlm' and model 'bert'.

  Returns:
    (run config, tokenizer, `BertPretraining` parameters as numpy).
  """
  from safetensors.numpy import load_file  # only the importer needs it
  for name in ('config.json', WEIGHTS, 'vocab.txt'):
    if not os.path.exists(os.path.join(hf_dir, name)):
      raise FileNotFoundError(f'{hf_dir} has no {name}; a Hugging Face BERT '
                              'folder holds config.json, model.safetensors '
                              'and vocab.txt')
  hf_config = _read_json(os.path.join(hf_dir, 'config.json'))
  tokenizer = read_tokenizer(hf_dir)
  if hf_config.get('vocab_size', tokenizer.vocab_size) != tokenizer.vocab_size:
    raise ValueError(f"config.json's vocab_size {hf_config['vocab_size']} "
                     f'differs from vocab.txt\'s {tokenizer.vocab_size} lines')
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(architecture(hf_config))
  config.task, config.model = 'mlm', 'bert'
  cfg = bert_config(config, tokenizer.vocab_size, tokenizer.pad_id)
  model = BertPretraining(cfg)
  fresh = jax.jit(model.init)(jax.random.key(config.seed),
                              jnp.zeros((1, 8), jnp.int32))['params']
  try:
    tensors = load_file(os.path.join(hf_dir, WEIGHTS))
  except Exception as e:  # noqa: BLE001 - safetensors' own error type
    raise ValueError(f'{hf_dir}/{WEIGHTS} is unreadable '
                     f'({type(e).__name__}: {e})') from e
  params = params_from_hf(tensors, cfg, fresh)
  return config, tokenizer, params


def import_hf(hf_dir: str, workdir: str, config: ml_collections.ConfigDict
              ) -> ml_collections.ConfigDict:
  """Writes the workdir of a Hugging Face BERT folder (module docstring).

  The checkpoint is at step 0 and its optimizer state is SGD's (none), so
  it stays the size of the weights; the workdir is a starting point for
  `init_from` and `encode`, not a run to resume.

  Returns:
    The run config written to `workdir/config.json`.
  """
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f'{workdir} is a file; import into a new workdir')
  if (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir)) or os.path.exists(
      os.path.join(workdir, 'config.json')):
    raise ValueError(f'{workdir} already holds a run; import into a new '
                     'workdir')
  config, tokenizer, params = load_hf_folder(hf_dir, config)
  config.optimizer, config.num_train_steps = 'sgd', 0
  config.init_from = ''
  os.makedirs(workdir, exist_ok=True)
  atomic_files.write_text(os.path.join(workdir, 'config.json'),
                          config.to_json_best_effort(indent=2, sort_keys=True))
  tokenizer.save(os.path.join(workdir, 'tokenizer.json'))
  tx = optim.make_optimizer(config, steps_per_epoch=1)
  params = jax.tree.map(jnp.asarray, params)
  state = TrainState(jnp.array(0, jnp.int32), params, tx.init(params), ())
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  try:
    ckpt.save(0, state, {}, json.loads(config.to_json_best_effort()))
  finally:
    ckpt.close()
  return config
