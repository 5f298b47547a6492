"""Small random Hugging Face BERT folders for tests, an independent numpy
forward pass over their tensors, and the `transformers` reference run in
the PyTorch benchmark venv where it exists.

`write_folder` writes what `save_pretrained` would (config.json,
model.safetensors with Hugging Face's tensor names, vocab.txt,
tokenizer_config.json); `numpy_bert` computes `BertModel`'s last hidden
states from those tensors, written from the Hugging Face layout, not from
lm_jax's, so an import that mapped a tensor wrongly disagrees with it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np

from tests.command_line import REPO_ROOT

BENCH_PYTHON = os.path.join(REPO_ROOT, '.venv-bench', 'bin', 'python')

WORDS = ['the', 'a', 'film', 'movie', 'is', 'was', 'good', 'bad', 'great',
         'dull', 'story', 'and', 'not', 'very', 'un', '##like', '##ly', '##s',
         '##ing', '##ed', 'fun', 'play', 'caf', '##e', 'ha', '##ppy', '.',
         ',', '!', "'", '?']
CHARS = list('abcdefghijklmnopqrstuvwxyz0123456789')
VOCAB = (['[PAD]'] + [f'[unused{i}]' for i in range(3)]
         + ['[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS + CHARS
         + ['##' + c for c in CHARS])


def tiny_config(**overrides) -> dict:
  config = {'architectures': ['BertModel'], 'model_type': 'bert',
            'vocab_size': len(VOCAB), 'hidden_size': 32,
            'num_hidden_layers': 2, 'num_attention_heads': 4,
            'intermediate_size': 48, 'hidden_act': 'gelu',
            'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1,
            'max_position_embeddings': 64, 'type_vocab_size': 2,
            'initializer_range': 0.02, 'layer_norm_eps': 1e-12,
            'pad_token_id': 0, 'position_embedding_type': 'absolute'}
  config.update(overrides)
  return config


def random_tensors(config: dict, seed: int = 0, mlm_head: bool = False,
                   prefix: str = '') -> dict[str, np.ndarray]:
  """`BertModel` tensors (+ `cls.predictions` with `mlm_head`), with
  weights of scale 0.2 and LayerNorms away from (1, 0), so a transposed or
  misplaced tensor shows."""
  rng = np.random.default_rng(seed)
  d, f = config['hidden_size'], config['intermediate_size']
  t = {}

  def w(name, *shape):
    t[prefix + name] = rng.normal(0, 0.2, shape).astype(np.float32)

  def norm(name):
    t[prefix + name + '.weight'] = rng.uniform(0.5, 1.5, d).astype(
        np.float32)
    t[prefix + name + '.bias'] = rng.normal(0, 0.1, d).astype(np.float32)

  def dense(name, out, inp):
    w(name + '.weight', out, inp)
    w(name + '.bias', out)

  w('embeddings.word_embeddings.weight', config['vocab_size'], d)
  w('embeddings.position_embeddings.weight',
    config['max_position_embeddings'], d)
  w('embeddings.token_type_embeddings.weight', config['type_vocab_size'], d)
  norm('embeddings.LayerNorm')
  for i in range(config['num_hidden_layers']):
    p = f'encoder.layer.{i}.'
    for n in ('query', 'key', 'value'):
      dense(f'{p}attention.self.{n}', d, d)
    dense(f'{p}attention.output.dense', d, d)
    norm(f'{p}attention.output.LayerNorm')
    dense(f'{p}intermediate.dense', f, d)
    dense(f'{p}output.dense', d, f)
    norm(f'{p}output.LayerNorm')
  dense('pooler.dense', d, d)
  if mlm_head:
    t['cls.predictions.transform.dense.weight'] = rng.normal(
        0, 0.2, (d, d)).astype(np.float32)
    t['cls.predictions.transform.dense.bias'] = rng.normal(
        0, 0.2, d).astype(np.float32)
    t['cls.predictions.transform.LayerNorm.weight'] = np.ones(d, np.float32)
    t['cls.predictions.transform.LayerNorm.bias'] = np.zeros(d, np.float32)
    t['cls.predictions.bias'] = rng.normal(
        0, 0.2, config['vocab_size']).astype(np.float32)
  return t


def write_folder(path: str, seed: int = 0, mlm_head: bool = False,
                 prefix: str = '', **config_overrides) -> dict:
  """Writes a random Hugging Face BERT folder; returns its tensors."""
  from safetensors.numpy import save_file
  os.makedirs(path, exist_ok=True)
  config = tiny_config(**config_overrides)
  tensors = random_tensors(config, seed, mlm_head, prefix)
  save_file(tensors, os.path.join(path, 'model.safetensors'))
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config, f)
  with open(os.path.join(path, 'vocab.txt'), 'w') as f:
    f.writelines(v + '\n' for v in VOCAB[:config['vocab_size']])
  with open(os.path.join(path, 'tokenizer_config.json'), 'w') as f:
    json.dump({'do_lower_case': True, 'tokenizer_class': 'BertTokenizer',
               'model_max_length': config['max_position_embeddings']}, f)
  return tensors


def _layer_norm(x, w, b, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x):
  from scipy.special import erf
  return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def numpy_bert(t: dict, config: dict, ids: np.ndarray,
               mask: np.ndarray) -> np.ndarray:
  """`BertModel`'s last hidden states `[batch, length, hidden]` (float64)
  of int `ids` with 0/1 attention `mask`, both `[batch, length]`."""
  t = {k: v.astype(np.float64) for k, v in t.items()}
  eps, heads = config['layer_norm_eps'], config['num_attention_heads']
  batch, length = ids.shape
  linear = lambda x, n: x @ t[n + '.weight'].T + t[n + '.bias']  # noqa: E731
  x = (t['embeddings.word_embeddings.weight'][ids]
       + t['embeddings.position_embeddings.weight'][np.arange(length)]
       + t['embeddings.token_type_embeddings.weight'][np.zeros_like(ids)])
  x = _layer_norm(x, t['embeddings.LayerNorm.weight'],
                  t['embeddings.LayerNorm.bias'], eps)
  bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
  for i in range(config['num_hidden_layers']):
    p = f'encoder.layer.{i}.'

    def split(h):
      return h.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

    q, k, v = (split(linear(x, f'{p}attention.self.{n}'))
               for n in ('query', 'key', 'value'))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    x = _layer_norm(x + linear(context, f'{p}attention.output.dense'),
                    t[f'{p}attention.output.LayerNorm.weight'],
                    t[f'{p}attention.output.LayerNorm.bias'], eps)
    h = _gelu(linear(x, f'{p}intermediate.dense'))
    x = _layer_norm(x + linear(h, f'{p}output.dense'),
                    t[f'{p}output.LayerNorm.weight'],
                    t[f'{p}output.LayerNorm.bias'], eps)
  return x


def has_transformers() -> bool:
  """Whether the PyTorch benchmark venv exists and imports transformers."""
  if not os.path.exists(BENCH_PYTHON):
    return False
  result = subprocess.run([BENCH_PYTHON, '-c', 'import transformers'],
                          capture_output=True, timeout=120)
  return result.returncode == 0


_REFERENCE = '''
import json, sys
import numpy as np, torch
from transformers import AutoModel, AutoTokenizer
folder, texts, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder).eval()
arrays = {}
with torch.no_grad():
  for i, text in enumerate(texts):
    enc = tok(text, return_tensors='pt', truncation=True)
    arrays[f'ids_{i}'] = enc['input_ids'][0].numpy()
    arrays[f'hidden_{i}'] = model(**enc).last_hidden_state[0].numpy()
np.savez(out, **arrays)
'''


def transformers_reference(folder: str, texts: list[str], tmp_dir: str
                           ) -> dict[str, np.ndarray]:
  """`ids_i` and `hidden_i` of each text from `transformers`' own tokenizer
  and `BertModel` (run by the benchmark venv's Python); texts are cut to
  the tokenizer's `model_max_length`."""
  texts_path = os.path.join(tmp_dir, 'reference_texts.json')
  out_path = os.path.join(tmp_dir, 'reference.npz')
  with open(texts_path, 'w') as f:
    json.dump(texts, f)
  result = subprocess.run([BENCH_PYTHON, '-c', _REFERENCE, folder,
                           texts_path, out_path], capture_output=True,
                          text=True, timeout=600)
  if result.returncode:
    raise RuntimeError(f'the transformers reference failed:\n'
                       f'{result.stderr[-2000:]}')
  with np.load(out_path) as data:
    return dict(data)
