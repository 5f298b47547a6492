"""Zaremba et al. 2014, "medium": 2 x 650 LSTM, dropout 0.5, 39 epochs, lr 1
divided by 1.2 every epoch after the 6th, weights U(-0.05, 0.05). Paper:
valid 86.2, test 82.7. Sized for GPU hosts (about 10x the small model's
work per token)."""

from experiments.configs import ptb_lstm_small


def get_config():
  c = ptb_lstm_small.get_config()
  c.embed_dim = c.hidden_size = 650
  c.dropout_rate = 0.5
  c.init_scale = 0.05
  c.lr_decay_start_epoch, c.lr_decay_factor = 6, 1 / 1.2
  c.num_epochs = 39
  c.cpu_devices = 0  # accelerator hosts: every device
  return c
