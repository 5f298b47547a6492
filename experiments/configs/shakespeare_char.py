"""nanoGPT's GPU recipe for character-level Tiny Shakespeare (a baby GPT).

6 layers x 6 heads x 384 dims, block 256, batch 64, dropout 0.2, 5000 steps
of AdamW (lr 1e-3, 100 warm-up steps, cosine to 1e-4, beta2 0.99).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.num_layers, c.num_heads, c.embed_dim = 6, 6, 384
  c.block_size, c.batch_size, c.dropout_rate = 256, 64, 0.2
  c.num_train_steps, c.learning_rate, c.min_learning_rate = 5000, 1e-3, 1e-4
  c.warmup_steps, c.eval_every, c.eval_steps = 100, 250, 200
  return c
