"""UPOS tagging of UD English-Atis (lower-cased flight queries, CC BY-SA)
with the udpos_bilstm tagger. 4,274 training sentences make 133 batches of
32 an epoch; 20 epochs.
"""

from experiments.configs import udpos_bilstm


def get_config():
  c = udpos_bilstm.get_config()
  c.corpus = 'ud_english_atis'
  c.num_train_steps = 2660  # 20 epochs
  c.eval_every = 665  # 5 epochs
  c.eval_steps = 18  # the whole validation split
  c.log_every = 133
  return c
