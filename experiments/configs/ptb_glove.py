"""GloVe on Penn Treebank.

The reference implementation's settings for a small corpus: 100
dimensions, a symmetric window of 10 words weighted 1/distance, min_count
5, f(x) = min(1, (x / 100) ** 0.75), AdaGrad, 50 passes over the non-zero
entries; the vectors kept are word + context vectors. The entries are
shuffled each epoch and taken 65,536 at a time; each step's AdaGrad update
follows the gradient of the whole objective J estimated from the batch, with
rate 0.1 (the reference updates after every entry, at 0.05).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'embeddings', 'glove', 'ptb'
  c.embed_dim, c.window, c.min_count = 100, 10, 5
  c.glove_x_max, c.glove_alpha = 100.0, 0.75
  c.batch_size = 65536
  # 50 epochs: PTB's matrix has 2.90 M non-zero entries, 45 batches.
  c.num_train_steps = 50 * 45
  c.optimizer, c.adagrad_initial = 'adagrad', 0.0
  c.schedule, c.warmup_steps = 'constant', 0
  c.learning_rate = 0.1
  c.grad_clip_norm = 0.0
  # One XLA CPU device: the step is row gathers and scatters, which a
  # second device only burdens with an all-reduce of the whole tables.
  c.num_devices = c.cpu_devices = 1
  c.eval_every = c.checkpoint_every = 450
  c.eval_steps, c.log_every = 4, 90
  return c
