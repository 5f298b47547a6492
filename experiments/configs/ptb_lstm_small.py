"""Zaremba et al. 2014, "small": a 2 x 200 LSTM word LM on Penn Treebank.

Unroll 35, batch 20, SGD at 1.0 halved every epoch after the 4th, 13 epochs,
gradient norm clipped at 5 (of the loss summed over time), every weight
U(-0.1, 0.1), no dropout. Paper: valid 120.7, test 114.5. The unroll is issue
3's; the authors' Lua code and TensorFlow's PTB tutorial (`SmallConfig`:
valid 121.39, test 115.91) unroll this model 20 steps, so each of their
gradients sums 20 steps' losses where ours sums 35.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.corpus, c.tokenizer = 'ptb', 'word'
  c.model, c.cell = 'rnn_lm', 'lstm'
  c.embed_dim = c.hidden_size = 200
  c.num_layers, c.dropout_rate = 2, 0.0
  c.init_scale, c.forget_bias = 0.1, 0.0
  # Two gate biases, as the authors' Torch LSTM (a Linear for the input and
  # one for the state, each with a bias) and PyTorch's nn.LSTM have them:
  # under plain SGD the gates' bias then learns twice as fast. Seeds 0-4:
  # test 111.43, 112.25, 112.36, 111.87, 111.09 (mean 111.80); with one bias
  # 113.59, 114.27, 112.73, 113.22, 112.95 (mean 113.35; README).
  c.lstm_second_bias = True
  c.lm_batching, c.block_size, c.batch_size = 'contiguous', 35, 20
  c.optimizer, c.learning_rate, c.grad_clip_norm = 'sgd', 1.0, 5.0
  c.normalize_loss_by = 'sequence'
  c.schedule, c.warmup_steps = 'epoch_decay', 0
  c.lr_decay_start_epoch, c.lr_decay_factor = 4, 0.5
  c.num_epochs = 13
  c.eval_every = 1327  # once an epoch (1327 batches)
  c.eval_steps = 30
  c.log_every = 100
  # One XLA CPU device whose matmuls use every core: a batch of 20 streams
  # is too small to split, the recurrence is sequential anyway.
  c.cpu_devices = 1
  # Per-array SGD updates: raveling 4.7 M gradients into one vector cost
  # 3-6 ms of a 60 ms step here (benchmarks/RESULTS.md).
  c.optimizer_flatten = False
  # The 10k-word softmax layer with its bias folded into the product and its
  # kernel's gradient in XLA's faster GEMM form: 56-59 ms a step against
  # 69-70 with flax's Dense (benchmarks/RESULTS.md).
  c.folded_output = True
  c.checkpoint_every = 1327
  return c
