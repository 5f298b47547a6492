"""ELMo's bi-directional LSTM LM (Peters et al. 2018, at a CPU's scale) on
the SST-2 training sentences, labels ignored: forward and backward 2-layer
LSTMs of 256 units sharing the word embedding and the softmax.

The vocabulary is the words seen twice. Batches of 64 sentences bucketed by
length, Adam, 2 epochs; `eval_perplexity` is on the SST-2 dev sentences.
`sst2_bilstm_elmo` reads this run's workdir.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'bilm', 'bilm', 'sst2'
  c.min_count = 2
  c.hidden_size, c.num_layers = 256, 2
  c.forget_bias = 1.0  # fixed in lm_jax.models.elmo.BiLM
  c.dropout_rate, c.init_scale = 0.1, 0.05
  c.learning_rate, c.min_learning_rate = 2e-3, 2e-4
  c.weight_decay, c.grad_clip_norm = 0.0, 1.0
  c.warmup_steps = 100
  c.batch_size = 64
  c.num_epochs = 2
  c.eval_every = 526
  c.eval_steps = 14  # the whole dev split
  c.log_every = 100
  c.checkpoint_every = 526
  c.cpu_devices = 1
  return c
