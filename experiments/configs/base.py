"""Defaults every preset starts from. A preset overrides a few fields.

Keys every preset shares: num_train_steps, batch_size (global), learning_rate,
seed, eval_every, eval_steps, checkpoint_every, data_dir.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # What to train.
  c.task = 'lm'
  c.model = 'gpt'
  c.corpus = 'tiny_shakespeare'
  c.tokenizer = 'char'
  c.data_dir = ''   # raw corpora; '' means $LM_JAX_DATA
  c.cache_dir = ''  # prepared tfds datasets; '' means ~/.cache/lm_jax

  # Model.
  c.num_layers = 4
  c.num_heads = 4
  c.embed_dim = 128
  c.mlp_ratio = 4
  c.block_size = 64
  c.dropout_rate = 0.0
  c.positional = 'learned'  # or 'sinusoidal'
  c.use_bias = False
  c.activation = 'gelu'
  c.compute_dtype = 'float32'  # or 'bfloat16' (params stay float32)

  # n-gram models (task 'ngram'): estimated by counting, no optimiser.
  c.ngram_order = 5
  c.ngram_smoothing = 'mkn'  # or 'kn', 'add_k', 'mle'
  c.ngram_k = 1.0  # add-k
  c.ngram_discount = 0.0  # 'kn' with one fixed discount; 0: estimated

  # Optimisation.
  c.optimizer = 'adamw'
  c.learning_rate = 1e-3
  c.min_learning_rate = 1e-4
  c.schedule = 'cosine'  # or 'constant', 'inverse_sqrt', 'linear', 'epoch_decay'
  c.warmup_steps = 100
  c.decay_steps = 0  # 0: num_train_steps
  c.lr_decay_start_epoch = 4  # 'epoch_decay': epochs at the full rate
  c.lr_decay_factor = 0.5  # 'epoch_decay': multiplier per further epoch
  c.adagrad_initial = 0.1  # 'adagrad': initial accumulator value
  c.beta1 = 0.9
  c.beta2 = 0.99
  c.weight_decay = 0.1
  c.grad_clip_norm = 1.0
  c.grad_accum_steps = 1
  c.batch_size = 12
  c.num_train_steps = 2000
  c.num_epochs = 0  # > 0: num_train_steps = num_epochs x the task's epoch
  c.normalize_loss_by = 'token'  # or 'sequence' (loss summed over time)
  c.seed = 0

  # Evaluation, logging, checkpoints.
  c.eval_every = 250
  c.eval_steps = 20
  c.final_eval_full = True  # the last evaluation covers the whole split
  c.log_every = 50
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.async_checkpoint = True
  c.profile_steps = ''  # 'START:STOP' writes a jax.profiler trace

  # Devices and hosts.
  c.num_devices = 0  # 0: every device
  c.cpu_devices = 0  # XLA CPU devices; 0: one per core (batch permitting)
  c.coordinator_address = ''  # multi-host: host:port of process 0
  c.num_processes = 0
  c.process_id = -1
  c.multihost = False
  return c
