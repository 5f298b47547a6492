"""`sst2_ulmfit`'s classifier and 1,000 labelled sentences, from random
weights: the baseline that LM pre-training must beat. Every layer trains
from the first step at one rate (discriminative rates and gradual
unfreezing only make sense for pre-trained layers); the vocabulary is the
1,000 sentences' own words.
"""

from experiments.configs import sst2_ulmfit


def get_config():
  c = sst2_ulmfit.get_config()
  c.pretrained_lm = ''
  c.min_count = 1
  c.layer_lr_decay, c.unfreeze_every_epochs = 0.0, 0
  return c
