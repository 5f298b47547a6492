"""ptb_lstm_small's recipe and budget with plain Elman (tanh) cells: the
network without gates whose gradients vanish over long spans.

One change: SGD at 0.25, not 1.0. At 1.0 (or 0.5) the tanh RNN's loss
here climbed to 16-19 (11) nats within 300 steps and stayed there; 0.25 is
the largest of 1.0, 0.5 and 0.25 that trains.
"""

from experiments.configs import ptb_lstm_small


def get_config():
  c = ptb_lstm_small.get_config()
  c.cell = 'rnn'
  c.lstm_second_bias = False  # an LSTM's only
  c.learning_rate = 0.25
  return c
