"""nanoGPT's documented CPU recipe for character-level Tiny Shakespeare.

4 layers x 4 heads x 128 dims, block 64, batch 12, no dropout, 2000 steps of
AdamW (lr 1e-3, 100 warm-up steps, cosine to 1e-4, beta2 0.99, weight decay
0.1, clip 1.0), evaluated every 250 steps on 20 batches.

Steps of a few milliseconds run 10 to a jit call (`steps_per_call`), the
same updates with less overhead per step (benchmarks/RESULTS.md).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.num_layers, c.num_heads, c.embed_dim = 4, 4, 128
  c.block_size, c.batch_size, c.dropout_rate = 64, 12, 0.0
  c.num_train_steps, c.learning_rate, c.min_learning_rate = 2000, 1e-3, 1e-4
  c.warmup_steps, c.eval_every, c.eval_steps = 100, 250, 20
  c.steps_per_call = 10
  return c
