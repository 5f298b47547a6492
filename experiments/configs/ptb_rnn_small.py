"""ptb_lstm_small's recipe and budget with plain Elman (tanh) cells: the
network without gates whose gradients vanish over long spans."""

from experiments.configs import ptb_lstm_small


def get_config():
  c = ptb_lstm_small.get_config()
  c.cell = 'rnn'
  return c
