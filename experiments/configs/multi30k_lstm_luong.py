"""LSTM encoder-decoder with Luong (general) attention and input feeding
on Multi30k, German -> English.

Luong et al. (2015), global attention with the 'general' score h_t W_a h_s,
the attentional state tanh(W_c [c_t; h_t]) fed to the next step; here with
a bi-directional encoder of 512 units per direction and one decoder layer
(the paper stacks four LSTMs). The other settings are
`multi30k_gru_bahdanau`'s.
"""

from experiments.configs import multi30k_gru_bahdanau


def get_config():
  c = multi30k_gru_bahdanau.get_config()
  c.cell, c.rnn_attention = 'lstm', 'luong_general'
  return c
