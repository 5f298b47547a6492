"""Tests of lm_jax.nn.recurrent: cells against flax.linen's, scan against a
Python loop, variable lengths, bi-directional padding invariance, stacking."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.nn import recurrent

B, T, D, H = 3, 7, 5, 4


def _inputs(seed=0, shape=(B, T, D)):
  return jax.random.normal(jax.random.key(seed), shape)


def _init_cell(cell, seed=1):
  x = _inputs()[:, 0]
  return cell.init(jax.random.key(seed), cell.initial_carry(B), x)['params']


@pytest.mark.parametrize('kind', ['rnn', 'gru', 'lstm'])
def test_cell_step_shapes(kind):
  cell = recurrent.CELLS[kind](features=H)
  params = _init_cell(cell)
  carry, y = cell.apply({'params': params}, cell.initial_carry(B),
                        _inputs()[:, 0])
  assert y.shape == (B, H)
  jax.tree.map(lambda c: np.testing.assert_equal(c.shape, (B, H)), carry)
  gates = {'rnn': 1, 'gru': 3, 'lstm': 4}[kind]
  assert params['input']['kernel'].shape == (D, gates * H)
  assert params['recurrent']['kernel'].shape == (H, gates * H)


def test_lstm_equals_flax_lstm_cell_given_the_same_weights():
  ours = recurrent.LSTMCell(features=H)
  params = _init_cell(ours)
  theirs = nn.LSTMCell(features=H)
  split = lambda a: jnp.split(a, 4, axis=-1)
  ik, rk, b = (split(params['input']['kernel']),
               split(params['recurrent']['kernel']),
               split(params['input']['bias']))
  flax_params = {}
  for n, gate in enumerate('ifgo'):
    flax_params[f'i{gate}'] = {'kernel': ik[n]}
    flax_params[f'h{gate}'] = {'kernel': rk[n], 'bias': b[n]}
  carry = (_inputs(3, (B, H)), _inputs(4, (B, H)))
  for t in range(3):
    x = _inputs()[:, t]
    carry_ours, y_ours = ours.apply({'params': params}, carry, x)
    carry_theirs, y_theirs = theirs.apply({'params': flax_params}, carry, x)
    np.testing.assert_allclose(y_ours, y_theirs, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 carry_ours, carry_theirs)
    carry = carry_ours


def test_gru_equals_flax_gru_cell_given_the_same_weights():
  ours = recurrent.GRUCell(features=H)
  params = _init_cell(ours)
  # Random biases, so that a misplaced one shows; flax has no recurrent
  # bias on r and z.
  rbias = params['recurrent']['bias'].at[2 * H:].set(
      jax.random.normal(jax.random.key(7), (H,))).at[:2 * H].set(0.0)
  params = {'input': {'kernel': params['input']['kernel'],
                      'bias': jax.random.normal(jax.random.key(8), (3 * H,))},
            'recurrent': {'kernel': params['recurrent']['kernel'],
                          'bias': rbias}}
  split = lambda a: jnp.split(a, 3, axis=-1)
  ik, ib = split(params['input']['kernel']), split(params['input']['bias'])
  rk = split(params['recurrent']['kernel'])
  flax_params = {
      'ir': {'kernel': ik[0], 'bias': ib[0]},
      'iz': {'kernel': ik[1], 'bias': ib[1]},
      'in': {'kernel': ik[2], 'bias': ib[2]},
      'hr': {'kernel': rk[0]}, 'hz': {'kernel': rk[1]},
      'hn': {'kernel': rk[2], 'bias': rbias[2 * H:]}}
  h = _inputs(3, (B, H))
  for t in range(3):
    x = _inputs()[:, t]
    h_ours, _ = recurrent.GRUCell(features=H).apply({'params': params}, h, x)
    h_theirs, _ = nn.GRUCell(features=H).apply({'params': flax_params}, h, x)
    np.testing.assert_allclose(h_ours, h_theirs, atol=1e-6)
    h = h_ours


@pytest.mark.parametrize('kind', ['rnn', 'gru', 'lstm'])
@pytest.mark.parametrize('reverse', [False, True])
def test_scan_equals_a_python_loop_over_the_cell(kind, reverse):
  layer = recurrent.RNN(recurrent.CELLS[kind](features=H), reverse=reverse)
  x = _inputs()
  params = layer.init(jax.random.key(1), x)['params']
  carry, ys = layer.apply({'params': params}, x)

  cell = recurrent.CELLS[kind](features=H)
  c = cell.initial_carry(B)
  expected = [None] * T
  for t in (reversed(range(T)) if reverse else range(T)):
    c, expected[t] = cell.apply({'params': params['cell']}, c, x[:, t])
  np.testing.assert_allclose(ys, jnp.stack(expected, 1), atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               carry, c)


def test_unrolled_scan_gives_the_same_outputs():
  x = _inputs()
  rolled = recurrent.RNN(recurrent.LSTMCell(features=H), fused=False)
  params = rolled.init(jax.random.key(1), x)['params']
  unrolled = recurrent.RNN(recurrent.LSTMCell(features=H), unroll=4,
                           fused=False)
  np.testing.assert_allclose(
      rolled.apply({'params': params}, x)[1],
      unrolled.apply({'params': params}, x)[1], atol=1e-6)


def test_lengths_of_counts_the_ids_before_padding():
  ids = jnp.array([[5, 1, 2, 0, 0], [3, 3, 3, 3, 3], [0, 0, 0, 0, 0]])
  lengths = recurrent.lengths_of(ids)
  assert lengths.dtype == jnp.int32
  np.testing.assert_array_equal(lengths, [3, 5, 0])


def test_reverse_within_lengths_leaves_padding_in_place():
  x = jnp.arange(2 * 5).reshape(2, 5)
  out = recurrent.reverse_within_lengths(x, jnp.array([3, 5]))
  np.testing.assert_array_equal(out, [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])


@pytest.mark.parametrize('fused', [True, False])  # C++ kernel, scan
@pytest.mark.parametrize('reverse', [False, True])
def test_padding_changes_nothing_real(reverse, fused):
  """A sequence padded to a longer length gives the same outputs and final
  carry as the same sequence alone, in either direction."""
  layer = recurrent.RNN(recurrent.LSTMCell(features=H), reverse=reverse,
                        fused=fused)
  x = _inputs()
  lengths = jnp.array([T, 4, 2])
  garbage = jnp.where(jnp.arange(T)[None, :, None] < lengths[:, None, None],
                      x, 100.0)
  params = layer.init(jax.random.key(1), x)['params']
  carry, ys = layer.apply({'params': params}, garbage, lengths)
  for b in range(B):
    n = int(lengths[b])
    c_alone, y_alone = layer.apply({'params': params}, x[b:b + 1, :n])
    np.testing.assert_allclose(ys[b, :n], y_alone[0], atol=1e-5)
    np.testing.assert_array_equal(ys[b, n:], 0.0)
    jax.tree.map(lambda a, b_: np.testing.assert_allclose(a[b], b_[0],
                                                          atol=1e-5),
                 carry, c_alone)


def test_bidirectional_stack_is_padding_invariant_and_shaped():
  stack = recurrent.StackedRNN('gru', H, num_layers=2, bidirectional=True)
  x = _inputs()
  lengths = jnp.array([T, 5, 3])
  padded = jnp.where(jnp.arange(T)[None, :, None] < lengths[:, None, None],
                     x, -7.0)
  params = stack.init(jax.random.key(1), x)['params']
  assert set(params) == {'layer0_fwd', 'layer0_bwd', 'layer1_fwd',
                         'layer1_bwd'}
  carries, outs = stack.apply({'params': params}, padded, lengths)
  assert len(carries) == 4 and [o.shape for o in outs] == [(B, T, 2 * H)] * 2
  for b in range(B):
    n = int(lengths[b])
    _, alone = stack.apply({'params': params}, x[b:b + 1, :n])
    np.testing.assert_allclose(outs[-1][b, :n], alone[-1][0], atol=1e-5)
  # A length past the padded width is the whole row, not NaN.
  _, past = stack.apply({'params': params}, padded, lengths.at[0].add(2))
  np.testing.assert_array_equal(past[-1], outs[-1])


def test_each_initial_carry_starts_its_own_layer_and_direction():
  """The carries are layer-major: number 2 * layer + direction."""
  stack = recurrent.StackedRNN('gru', H, num_layers=2, bidirectional=True)
  x = _inputs()
  params = stack.init(jax.random.key(1), x)['params']
  apply = jax.jit(stack.apply)
  _, base = apply({'params': params}, x)
  for i in range(4):
    carry = stack.initial_carry(B)
    carry[i] = jnp.ones_like(carry[i])
    _, outs = apply({'params': params}, x, initial_carry=carry)
    layer, direction = divmod(i, 2)
    mine = slice(direction * H, (direction + 1) * H)
    other = slice((1 - direction) * H, (2 - direction) * H)
    assert np.abs(outs[layer][..., mine] - base[layer][..., mine]).max() > 1e-3
    np.testing.assert_array_equal(outs[layer][..., other],
                                  base[layer][..., other])


def test_carry_across_calls_equals_one_long_call():
  """Truncated BPTT: two halves with the carry handed over give the
  outputs of the whole sequence."""
  stack = recurrent.StackedRNN('lstm', H, num_layers=2)
  x = _inputs(shape=(B, 8, D))
  params = stack.init(jax.random.key(1), x)['params']
  _, whole = stack.apply({'params': params}, x)
  carry, first = stack.apply({'params': params}, x[:, :4])
  _, second = stack.apply({'params': params}, x[:, 4:], initial_carry=carry)
  np.testing.assert_allclose(
      whole[-1], jnp.concatenate([first[-1], second[-1]], 1), atol=1e-5)


def test_dropout_between_layers_only_in_training():
  stack = recurrent.StackedRNN('rnn', H, num_layers=2, dropout_rate=0.5)
  x = _inputs()
  params = stack.init(jax.random.key(1), x)['params']
  _, a = stack.apply({'params': params}, x)
  _, b = stack.apply({'params': params}, x)
  np.testing.assert_array_equal(a[-1], b[-1])
  _, c = stack.apply({'params': params}, x, train=True,
                     rngs={'dropout': jax.random.key(2)})
  np.testing.assert_array_equal(a[0], c[0])  # before the first dropout
  assert not np.allclose(a[-1], c[-1])


def test_forget_bias_shifts_the_forget_gate():
  cell = recurrent.LSTMCell(features=H, forget_bias=1.0)
  params = _init_cell(cell)
  c0 = jnp.ones((B, H))
  (c, _), _ = cell.apply({'params': jax.tree.map(jnp.zeros_like, params)},
                         (c0, jnp.zeros((B, H))), jnp.zeros((B, D)))
  # All pre-activations 0: c' = sigmoid(1) * c + sigmoid(0) * tanh(0).
  np.testing.assert_allclose(c, jax.nn.sigmoid(1.0) * c0, rtol=1e-6)


@pytest.mark.parametrize('fused', [False, True])
def test_a_second_lstm_bias_is_the_same_function_with_twice_the_bias_update(
    fused):
  """b_ih + b_hh acts as one bias b; each takes b's gradient, so a plain
  SGD step moves their sum twice as far (Torch's and PyTorch's LSTMs)."""
  x = _inputs(shape=(B, T, D))
  one = recurrent.StackedRNN('lstm', H, num_layers=2, fused=fused)
  two = recurrent.StackedRNN('lstm', H, num_layers=2, fused=fused,
                             second_bias=True)
  params = two.init(jax.random.key(1), x)['params']
  keys = iter(jax.random.split(jax.random.key(2), 4))
  for layer in params.values():  # non-zero biases, to be summed
    layer['input']['bias'] = jax.random.normal(next(keys), (4 * H,))
    layer['hidden_bias'] = jax.random.normal(next(keys), (4 * H,))
  summed = {name: {'input': {'kernel': layer['input']['kernel'],
                             'bias': layer['input']['bias']
                                     + layer['hidden_bias']},
                   'recurrent': layer['recurrent']}
            for name, layer in params.items()}
  assert jax.tree.structure(summed) == jax.tree.structure(
      one.init(jax.random.key(1), x)['params'])

  def loss(model, p):
    _, outputs = model.apply({'params': p}, x)
    return jnp.sum(jnp.sin(outputs[-1]))

  np.testing.assert_allclose(loss(two, params), loss(one, summed), rtol=1e-6)
  g_two = jax.grad(lambda p: loss(two, p))(params)
  g_one = jax.grad(lambda p: loss(one, p))(summed)
  for name in params:
    expected = g_one[name]['input']['bias']
    np.testing.assert_allclose(g_two[name]['hidden_bias'], expected,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_two[name]['input']['bias'], expected,
                               rtol=1e-5, atol=1e-6)


def test_unknown_cell_type_is_a_clear_error():
  with pytest.raises(ValueError, match='unknown cell'):
    recurrent.StackedRNN('transformer', H).init(jax.random.key(0), _inputs())
