"""ELMo's bi-directional LSTM LM for the tagger: `sst2_bilm`'s model on the
training sentences of UD English-LinES, tags ignored (64,684 words in
3,457 sentences, far from the billion words of Peters et al. 2018, but
the only unlabelled text here in the treebank's domain and casing).

The vocabulary is every training word (the tagger's own `min_count` of 1),
so `udpos_bilstm_elmo` tags with exactly `udpos_bilstm`'s vocabulary.
Heavy dropout for so little text, and 5 epochs: with a 20-epoch schedule
the dev perplexity was 538 after 5 epochs and 572 after 10. This preset's
run: 620.7 (12-03). `eval_perplexity` is on the treebank's dev sentences.
"""

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.task, c.model, c.corpus = 'bilm', 'bilm', 'ud_english_lines'
  c.min_count = 1
  c.hidden_size, c.num_layers = 256, 2
  c.dropout_rate, c.init_scale = 0.5, 0.05
  c.learning_rate, c.min_learning_rate = 2e-3, 2e-4
  c.weight_decay, c.grad_clip_norm = 0.0, 1.0
  c.warmup_steps = 100
  c.batch_size = 32
  c.num_epochs = 5  # 108 batches an epoch
  c.eval_every = 108
  c.eval_steps = 35  # the whole dev split
  c.log_every = 108
  c.checkpoint_every = 540
  c.cpu_devices = 1
  return c
