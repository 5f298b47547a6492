"""ptb_lstm_small's recipe and budget with GRU cells (the reset-after
variant), for the RNN / GRU / LSTM comparison on Penn Treebank."""

from experiments.configs import ptb_lstm_small


def get_config():
  c = ptb_lstm_small.get_config()
  c.cell = 'gru'
  c.lstm_second_bias = False  # an LSTM's only
  return c
