"""GRU encoder-decoder without attention on Multi30k, German -> English.

The context-vector model of Cho et al. (2014), as in bentrevett's
"Learning Phrase Representations" notebook, with a bi-directional encoder:
everything the decoder learns of the source passes through one 512-dim
vector, fed to every decoder step and to the output layer. The other
settings are `multi30k_gru_bahdanau`'s.
"""

from experiments.configs import multi30k_gru_bahdanau


def get_config():
  c = multi30k_gru_bahdanau.get_config()
  c.rnn_attention = 'none'
  return c
