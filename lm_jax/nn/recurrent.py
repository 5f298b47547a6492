"""Recurrent cells and the layers that unroll them: Elman RNN, GRU, LSTM,
unidirectional, bi-directional and stacked.

A cell splits its work in two. `project(inputs)` multiplies the inputs of
every time step by the input kernel at once, one large matmul over
`[batch, length, features]`; `step(carry, projected)` then does only what
truly depends on the previous step, the recurrent matmul and the gates,
inside `nn.scan`. That hoisting is most of the speed of a recurrent layer
on CPU, where the per-step matmuls are small.

Variable lengths are explicit: a layer takes `lengths` `[batch]`, holds
each sequence's carry fixed once its length is passed (so the final carry
is the one after its last real token), zeroes outputs at padding, and the
backward direction reverses each sequence within its own length, so padding
never reaches it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.nn import fused_lstm
from lm_jax.nn.dropout import Dropout

Array = jax.Array
Carry = Any  # an Array, or a tuple of Arrays for the LSTM's (c, h)
Initializer = Callable[..., Array]

_default_kernel_init = nn.initializers.lecun_normal()


class _Cell(nn.Module):
  """What every cell shares: input projection and the one-step call.

  Attributes:
    features: hidden size H.
    kernel_init: initialiser of the input kernel `[in, gates * H]`.
    recurrent_init: initialiser of the recurrent kernel `[H, gates * H]`.
    bias_init: initialiser of the bias `[gates * H]`.
    dtype: computation dtype (parameters stay float32).
    dot_general: the input projection's matmul (`lm_jax.nn.precision`);
      None for `lax.dot_general`. The per-step recurrent matmul is too small
      for anything but float32 to pay.
  """

  features: int
  kernel_init: Initializer = _default_kernel_init
  recurrent_init: Initializer = nn.initializers.orthogonal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any = jnp.float32
  dot_general: Optional[Callable[..., Array]] = None

  num_gates = 1
  recurrent_bias = False  # the input projection's bias is enough

  def setup(self):
    width = self.num_gates * self.features
    self.input = nn.Dense(width, dtype=self.dtype,
                          kernel_init=self.kernel_init,
                          bias_init=self.bias_init,
                          dot_general=self.dot_general)
    self.recurrent = nn.Dense(width, use_bias=self.recurrent_bias,
                              dtype=self.dtype,
                              kernel_init=self.recurrent_init,
                              bias_init=self.bias_init)

  def project(self, inputs: Array) -> Array:
    """`[..., in]` -> `[..., gates * H]`: input kernel and bias, for every
    time step at once."""
    return self.input(inputs)

  def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
    """One time step from raw inputs `[batch, in]`, with flax cells' call
    signature (not their whole interface: `flax.linen.RNN` needs more):
    `(carry, inputs) -> (carry, output [batch, H])`."""
    return self.step(carry, self.project(inputs))

  def step(self, carry: Carry, projected: Array) -> tuple[Carry, Array]:
    raise NotImplementedError

  def initial_carry(self, batch_size: int) -> Carry:
    """Zeros: `[batch, H]`, or `(c, h)` for the LSTM."""
    return jnp.zeros((batch_size, self.features), jnp.float32)


class ElmanCell(_Cell):
  """h' = tanh(W x + U h + b) (Elman 1990): the plain RNN whose gradients
  vanish or explode over long spans."""

  def step(self, carry: Array, projected: Array) -> tuple[Array, Array]:
    """`projected` `[batch, H]` -> (h', h')."""
    h = jnp.tanh(projected + self.recurrent(carry.astype(self.dtype)))
    h = h.astype(jnp.float32)
    return h, h


class GRUCell(_Cell):
  """Gated recurrent unit, gates ordered (r, z, n): the reset-after variant
  of cuDNN, PyTorch's `nn.GRU` and flax's `GRUCell`.

  r = σ(W_r x + U_r h + b_r), z = σ(W_z x + U_z h + b_z),
  n = tanh(W_n x + b_n + r ⊙ (U_n h + c_n)), h' = (1 - z) ⊙ n + z ⊙ h.
  Cho et al. 2014 (eq. 8) apply the reset gate before the product instead,
  tanh(W x + U (r ⊙ h)); the two agree only where r = 1.
  The recurrent bias c is applied to all three gates; only c_n is not
  redundant with b (flax's `GRUCell` keeps that one alone).
  """

  num_gates = 3
  recurrent_bias = True  # c_n sits inside r ⊙ (...), so it is not redundant

  def step(self, carry: Array, projected: Array) -> tuple[Array, Array]:
    """`projected` `[batch, 3H]` -> (h', h')."""
    recurrent = self.recurrent(carry.astype(self.dtype))
    x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
    r = nn.sigmoid(x_r + h_r)
    z = nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = ((1.0 - z) * n + z * carry).astype(jnp.float32)
    return h, h


class LSTMCell(_Cell):
  """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget
  gate of Gers et al. 2000); one fused matmul for the gates (i, f, g, o).

  c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c'); the carry is (c, h).

  Attributes:
    forget_bias: added to the forget gate's pre-activation (Jozefowicz et
      al. 2015 recommend 1 so that early on the cell remembers; Zaremba et
      al.'s recipe uses 0).
    second_bias: a second gate bias `hidden_bias` `[4H]`, beside the input
      projection's, as Torch's and PyTorch's LSTMs have (b_ih and b_hh).
      The same function, but both take the gates' bias gradient, so under
      plain SGD the gates' bias moves twice as fast (Zaremba et al. trained
      so). It joins the hoisted input projection, so the fused recurrence
      needs no bias of its own.
  """

  forget_bias: float = 0.0
  second_bias: bool = False
  num_gates = 4

  def setup(self):
    super().setup()
    if self.second_bias:
      self.hidden_bias = self.param('hidden_bias', self.bias_init,
                                    (self.num_gates * self.features,))

  def project(self, inputs: Array) -> Array:
    projected = super().project(inputs)
    if self.second_bias:
      projected = projected + self.hidden_bias.astype(projected.dtype)
    return projected

  def step(self, carry: tuple[Array, Array], projected: Array
           ) -> tuple[tuple[Array, Array], Array]:
    """`projected` `[batch, 4H]` -> ((c', h'), h')."""
    c, h = carry
    gates = projected + self.recurrent(h.astype(self.dtype))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f + self.forget_bias) * c + nn.sigmoid(i) * jnp.tanh(g)
    c = c.astype(jnp.float32)
    h = (nn.sigmoid(o) * jnp.tanh(c)).astype(jnp.float32)
    return (c, h), h

  def initial_carry(self, batch_size: int) -> tuple[Array, Array]:
    zeros = jnp.zeros((batch_size, self.features), jnp.float32)
    return zeros, zeros

  def recurrent_kernel(self) -> Array:
    """The recurrent kernel `[H, 4H]`, for `lm_jax.nn.fused_lstm`."""
    # Dense creates its kernel when first called; XLA drops this product.
    self.recurrent(jnp.zeros((1, self.features), self.dtype))
    return self.recurrent.variables['params']['kernel']


CELLS = {'rnn': ElmanCell, 'gru': GRUCell, 'lstm': LSTMCell}


def lengths_of(ids: Array) -> Array:
  """int32 `[batch]` true lengths of `[batch, length]` ids padded with 0."""
  return jnp.sum(ids != 0, axis=1).astype(jnp.int32)


def reverse_within_lengths(x: Array, lengths: Optional[Array]) -> Array:
  """Reverses each row's first `lengths[b]` steps, leaving padding in place.

  Args:
    x: `[batch, length, ...]`.
    lengths: `[batch]` true lengths, or None for all full.
  """
  if lengths is None:
    return x[:, ::-1]
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(
      x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _scan_step(cell: _Cell, carry: Carry, xs: tuple[Array, Array]
               ) -> tuple[Carry, Array]:
  projected, live = xs
  new_carry, y = cell.step(carry, projected)
  # Past a sequence's end its carry stays as it was and its output is 0.
  keep = lambda new, old: jnp.where(live[:, None], new, old)
  return jax.tree.map(keep, new_carry, carry), jnp.where(live[:, None], y, 0)


class RNN(nn.Module):
  """Unrolls a cell over time with `nn.scan`.

  Attributes:
    cell: the cell (its parameters are shared by every step).
    reverse: read each sequence from its last real token to its first.
    unroll: time steps per scan iteration (XLA loop unrolling).
    fused: run a float32 LSTM on XLA's CPU backend through
      `lm_jax.nn.fused_lstm`, one custom call for the whole batch's
      sequences (where it cannot be compiled, and for other cells, dtypes
      and backends, the scan). It has first derivatives only: set False to
      take second ones (a Hessian-vector product, say).
  """

  cell: _Cell
  reverse: bool = False
  unroll: int = 1
  fused: bool = True

  def _use_fused(self, projected: Array) -> bool:
    return (self.fused and isinstance(self.cell, LSTMCell)
            and jnp.dtype(self.cell.dtype) == jnp.float32
            and projected.dtype == jnp.float32
            and jax.default_backend() == 'cpu' and fused_lstm.available())

  def __call__(self, inputs: Array, lengths: Optional[Array] = None,
               initial_carry: Optional[Carry] = None
               ) -> tuple[Carry, Array]:
    """Runs the cell over `inputs`.

    Args:
      inputs: `[batch, length, in]`.
      lengths: `[batch]` int true lengths; None means every step is real.
        Lengths over `length` count as `length`.
      initial_carry: the carry before the first step; None for zeros.

    Returns:
      (final carry, outputs `[batch, length, H]`), outputs in input order.
    """
    batch, length = inputs.shape[:2]
    if lengths is not None:
      # Past the end, the reversal's gather would read NaN fill.
      lengths = jnp.clip(lengths, 0, length)
    if initial_carry is None:
      initial_carry = self.cell.initial_carry(batch)
    projected = self.cell.project(inputs)
    if self.reverse:
      projected = reverse_within_lengths(projected, lengths)
    steps = (jnp.full((batch,), length, jnp.int32) if lengths is None
             else lengths.astype(jnp.int32))
    if self._use_fused(projected):
      carry, outputs = fused_lstm.lstm_recurrence(
          projected, self.cell.recurrent_kernel(), *initial_carry, steps,
          self.cell.forget_bias)
    else:
      live = jnp.arange(length)[None, :] < steps[:, None]
      scan = nn.scan(_scan_step, variable_broadcast='params',
                     split_rngs={'params': False}, in_axes=1, out_axes=1,
                     unroll=self.unroll)
      carry, outputs = scan(self.cell, initial_carry, (projected, live))
    if self.reverse:
      outputs = reverse_within_lengths(outputs, lengths)
    return carry, outputs


class StackedRNN(nn.Module):
  """Layers of (bi-directional) recurrent networks with dropout between them.

  A bi-directional layer runs a forward and a backward RNN over the same
  inputs and concatenates their outputs, `[batch, length, 2H]`; the next
  layer reads that.

  Attributes:
    cell_type: 'rnn', 'gru' or 'lstm'.
    features: hidden size H of every layer (and direction).
    num_layers: how many layers.
    bidirectional: add a backward direction to every layer.
    dropout_rate: dropout on each layer's outputs but the last (the
      non-recurrent connections, as Zaremba et al. 2014 apply it).
    forget_bias: the LSTM's forget-gate bias.
    second_bias: LSTMs with a second gate bias (`LSTMCell.second_bias`).
    kernel_init, recurrent_init, bias_init: the cells' initialisers.
    unroll: time steps per scan iteration.
    fused: LSTMs through `lm_jax.nn.fused_lstm` where it applies (`RNN`).
    dtype: computation dtype.
    dot_general: the cells' input projections' matmul (`_Cell`).
  """

  cell_type: str
  features: int
  num_layers: int = 1
  bidirectional: bool = False
  dropout_rate: float = 0.0
  forget_bias: float = 0.0
  second_bias: bool = False
  kernel_init: Initializer = _default_kernel_init
  recurrent_init: Initializer = nn.initializers.orthogonal()
  bias_init: Initializer = nn.initializers.zeros_init()
  unroll: int = 1
  fused: bool = True
  dtype: Any = jnp.float32
  dot_general: Optional[Callable[..., Array]] = None

  def _cell_class(self) -> type[_Cell]:
    if self.cell_type not in CELLS:
      raise ValueError(f'unknown cell {self.cell_type!r}; known: '
                       f'{sorted(CELLS)}')
    return CELLS[self.cell_type]

  def _cell(self, name: str) -> _Cell:
    kwargs = dict(features=self.features, kernel_init=self.kernel_init,
                  recurrent_init=self.recurrent_init,
                  bias_init=self.bias_init, dtype=self.dtype,
                  dot_general=self.dot_general, name=name)
    if self.cell_type == 'lstm':
      kwargs.update(forget_bias=self.forget_bias,
                    second_bias=self.second_bias)
    elif self.second_bias:
      raise ValueError(f'lstm_second_bias is for LSTM cells, not '
                       f'{self.cell_type!r}')
    return self._cell_class()(**kwargs)

  @property
  def directions(self) -> int:
    return 2 if self.bidirectional else 1

  def initial_carry(self, batch_size: int) -> list[Carry]:
    """Zeros, one carry per layer and direction (layer-major)."""
    cell = self._cell_class()(features=self.features, parent=None)
    return [cell.initial_carry(batch_size)
            for _ in range(self.num_layers * self.directions)]

  @nn.compact
  def __call__(self, inputs: Array, lengths: Optional[Array] = None,
               initial_carry: Optional[Sequence[Carry]] = None,
               train: bool = False) -> tuple[list[Carry], list[Array]]:
    """Runs every layer.

    Args:
      inputs: `[batch, length, in]`.
      lengths: `[batch]` true lengths, or None.
      initial_carry: from `initial_carry` or a previous call (truncated
        BPTT); None for zeros.
      train: apply dropout.

    Returns:
      (final carries in `initial_carry`'s layout, each layer's outputs
      `[batch, length, directions * H]`, before dropout).
    """
    if initial_carry is None:
      initial_carry = self.initial_carry(inputs.shape[0])
    carries, layer_outputs = [], []
    x = inputs
    for layer in range(self.num_layers):
      outputs = []
      for d in range(self.directions):
        rnn = RNN(self._cell(f'layer{layer}_{"bwd" if d else "fwd"}'),
                  reverse=bool(d), unroll=self.unroll, fused=self.fused)
        carry, y = rnn(x, lengths, initial_carry[layer * self.directions + d])
        carries.append(carry)
        outputs.append(y)
      y = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
      layer_outputs.append(y)
      x = y
      if layer < self.num_layers - 1:
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
    return carries, layer_outputs


def uniform_init(scale: float) -> Initializer:
  """U(-scale, scale), the initialisation of Zaremba et al. 2014."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init

