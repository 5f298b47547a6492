"""A 2-layer LSTM language model on the SST-2 training sentences, labels
ignored: the in-domain pre-training of ULMFiT (Howard & Ruder 2018) and of
Dai & Le 2015, from which `sst2_ulmfit` fine-tunes a classifier.

The sentences, one a line, are read as contiguous streams (truncated BPTT,
unroll 35); the vocabulary is the words seen twice, '<pad>' at id 0 so the
classifier can pad with it. Dropout 0.5 between layers and on the
embeddings and outputs (Zaremba et al.'s medium LSTM), the softmax tied to
the embeddings (Press & Wolf 2017; ULMFiT's AWD-LSTM ties them too), Adam
with cosine decay, 4 epochs. Its valid perplexity is on the SST-2 dev
sentences: 287.4 tied, 342.4 untied (12-03); classifiers fine-tuned
from the tied LM score 1.5-1.7 points higher (README).
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.corpus, c.tokenizer, c.min_count = 'sst2', 'word', 2
  c.model, c.cell = 'rnn_lm', 'lstm'
  c.embed_dim = c.hidden_size = 256
  c.num_layers, c.dropout_rate = 2, 0.5
  c.tie_embeddings = True
  c.init_scale, c.forget_bias = 0.05, 1.0
  c.lm_batching, c.block_size, c.batch_size = 'contiguous', 35, 32
  c.learning_rate, c.min_learning_rate = 3e-3, 3e-4
  c.weight_decay, c.grad_clip_norm = 0.0, 1.0
  c.warmup_steps = 100
  c.num_epochs = 4
  c.eval_every = 500
  c.eval_steps = 20
  c.log_every = 100
  c.checkpoint_every = 500
  c.cpu_devices = 1
  return c
