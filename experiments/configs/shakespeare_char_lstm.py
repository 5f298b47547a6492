"""A character-level LSTM on Tiny Shakespeare (Karpathy's char-rnn): 2 x 256,
dropout 0.2, truncated BPTT over 64 contiguous characters, Adam; sample it
with ./launch.sh sample --workdir runs/shakespeare_char_lstm."""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.model, c.cell = 'rnn_lm', 'lstm'
  c.embed_dim = c.hidden_size = 256
  c.num_layers, c.dropout_rate = 2, 0.2
  c.init_scale, c.forget_bias = 0.0, 1.0
  c.lm_batching, c.block_size, c.batch_size = 'contiguous', 64, 32
  c.learning_rate, c.min_learning_rate = 2e-3, 2e-4
  c.warmup_steps, c.weight_decay, c.grad_clip_norm = 50, 0.0, 5.0
  c.num_train_steps = 2000
  c.eval_every, c.eval_steps = 500, 20
  c.cpu_devices = 1
  return c
