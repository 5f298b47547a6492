"""`udpos_bilstm` with ELMo: each word's embedding and character features
are joined by the learned scalar mix of the frozen layers of the
`udpos_bilm` bi-LM (Peters et al. 2018, who add ELMo to the input of the
task model the same way). The vocabulary is the bi-LM's, which is
`udpos_bilstm`'s (every training word); everything else is
`udpos_bilstm`'s, so the difference between the two runs is ELMo's.

Run `./launch.sh train udpos_bilm` first.
"""

import os

from experiments.configs import base, udpos_bilstm


def get_config():
  c = udpos_bilstm.get_config()
  c.elmo_bilm = os.path.join(base.RUNS_DIR, 'udpos_bilm')
  c.frozen_params = 'elmo/bilm'
  return c
