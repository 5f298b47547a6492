"""Tests of lm_jax.models.elmo: the bi-directional LM's two directions see
only their own side, padding changes nothing, the scalar mix is ELMo's."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.models import elmo
from lm_jax.models.classifier import RecurrentClassifier

CFG = elmo.BiLMConfig(vocab_size=13, hidden_size=6, num_layers=2,
                      dropout_rate=0.0)


def _params(model, tokens, lengths):
  return model.init(jax.random.key(0), tokens, lengths)['params']


def test_framing_adds_bos_and_eos_within_each_length():
  tokens = jnp.array([[5, 6, 7], [8, 0, 0]])
  framed = elmo.frame(tokens, jnp.array([3, 1]), bos_id=1, eos_id=2)
  np.testing.assert_array_equal(framed, [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])


def test_targets_point_forward_and_backward():
  tokens = jnp.array([[1, 5, 6, 2, 0]])
  ft, fw, bt, bw = elmo.bilm_targets(tokens, jnp.array([4]))
  np.testing.assert_array_equal(ft[0, :3], [5, 6, 2])
  np.testing.assert_array_equal(fw[0], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(bt[0, 1:4], [1, 5, 6])
  np.testing.assert_array_equal(bw[0], [0, 1, 1, 1, 0])


def test_each_direction_sees_only_its_side():
  """Changing token 3 changes forward logits at positions >= 3 only and
  backward logits at positions <= 3 only: no direction cheats."""
  model = elmo.BiLM(CFG)
  a = jnp.array([[1, 4, 5, 6, 7, 8, 2]])
  b = a.at[0, 3].set(9)
  lengths = jnp.array([7])
  params = _params(model, a, lengths)
  fa, ba = model.apply({'params': params}, a, lengths)
  fb, bb = model.apply({'params': params}, b, lengths)
  same = lambda x, y: np.allclose(x, y, atol=1e-6)
  assert all(same(fa[0, t], fb[0, t]) for t in range(3))
  assert not any(same(fa[0, t], fb[0, t]) for t in range(3, 7))
  assert all(same(ba[0, t], bb[0, t]) for t in range(4, 7))
  assert not any(same(ba[0, t], bb[0, t]) for t in range(0, 4))


def test_the_directions_draw_their_own_embedding_dropout_masks():
  """bilm-tf drops each direction's embeddings independently."""
  model = elmo.BiLM(dataclasses.replace(CFG, dropout_rate=0.5))
  tokens = jnp.array([[1, 4, 5, 6, 7, 8, 2]] * 4)
  lengths = jnp.array([7] * 4)
  params = _params(model, tokens, lengths)
  embedded = model.apply({'params': params}, tokens,
                         method=lambda m, t: m.embed(t))
  _, state = model.apply(
      {'params': params}, tokens, lengths, train=True,
      rngs={'dropout': jax.random.key(1)},
      capture_intermediates=lambda m, _: m.name == 'dropout')
  fwd_input, bwd_input = state['intermediates']['dropout']['__call__'][:2]
  for dropped in (fwd_input, bwd_input):  # each is the embeddings, dropped
    np.testing.assert_allclose(np.where(dropped == 0, 0, embedded * 2),
                               dropped, rtol=1e-6)
  assert not np.array_equal(fwd_input == 0, bwd_input == 0)


def test_embedder_is_padding_invariant_and_mixes_layers():
  embedder = elmo.ElmoEmbedder(CFG, bos_id=1, eos_id=2)
  tokens = jnp.array([[4, 5, 6, 7], [8, 9, 0, 0]])
  lengths = jnp.array([4, 2])
  params = embedder.init(jax.random.key(0), tokens, lengths)['params']
  assert set(params) == {'bilm', 'mix'}
  out = embedder.apply({'params': params}, tokens, lengths)
  assert out.shape == (2, 4, 12)
  np.testing.assert_array_equal(out[1, 2:], 0.0)
  alone = embedder.apply({'params': params}, tokens[1:, :2], lengths[1:])
  np.testing.assert_allclose(out[1, :2], alone[0], atol=1e-5)

  # With all mixing weight on layer 0 and gamma 2, ELMo is 2 [x; x].
  mix = {'weights': jnp.array([50.0, 0.0, 0.0]), 'gamma': jnp.float32(2.0)}
  out = embedder.apply({'params': dict(params, mix=mix)}, tokens, lengths)
  x = params['bilm']['embed']['embedding'][tokens[0]]
  np.testing.assert_allclose(out[0], 2 * jnp.concatenate([x, x], -1),
                             atol=1e-5)


def test_embedder_passes_no_gradient_into_the_bilm():
  embedder = elmo.ElmoEmbedder(CFG, bos_id=1, eos_id=2)
  tokens, lengths = jnp.array([[4, 5, 6]]), jnp.array([3])
  params = embedder.init(jax.random.key(0), tokens, lengths)['params']
  grads = jax.grad(lambda p: embedder.apply({'params': p}, tokens,
                                            lengths).sum())(params)
  assert all(float(jnp.abs(g).max()) == 0.0
             for g in jax.tree.leaves(grads['bilm']))
  assert float(jnp.abs(grads['mix']['gamma'])) > 0


def test_word_dropout_hides_a_dropped_word_from_elmo_as_well():
  """A dropped word is `<unk>` (3 here) to the model and to the BiLM: with
  every word dropped, the output is that of a sentence of `<unk>`s."""
  model = RecurrentClassifier(vocab_size=13, num_classes=2, embed_dim=4,
                              hidden_dim=3, dropout_rate=0.0,
                              extra_features_dim=2 * CFG.hidden_size)
  embedder = elmo.ElmoEmbedder(CFG, bos_id=1, eos_id=2)
  tokens = jnp.array([[4, 5, 6, 7], [8, 9, 0, 0]])
  unknown = jnp.array([[4, 3, 3, 3], [3, 3, 0, 0]])  # 4 is a kept id
  dropping = elmo.WithElmo(model, embedder, word_dropout_rate=1.0, unk_id=3,
                           kept_ids=(4,))
  params = dropping.init(jax.random.key(0), tokens)['params']
  rngs = {'dropout': jax.random.key(1)}
  dropped = dropping.apply({'params': params}, tokens, train=True, rngs=rngs)
  plain = elmo.WithElmo(model, embedder)
  np.testing.assert_allclose(
      dropped, plain.apply({'params': params}, unknown, train=True), atol=1e-6)
  assert not np.allclose(
      dropped, plain.apply({'params': params}, tokens, train=True), atol=1e-3)
  np.testing.assert_allclose(  # no word dropout outside training
      dropping.apply({'params': params}, tokens),
      plain.apply({'params': params}, tokens), atol=1e-6)
