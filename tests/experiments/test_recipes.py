"""Full training recipes (slow: run with ./launch.sh test-slow).

These train a preset to the end on the real corpus and check its final
figure against a regression bound. The bound sits above the seed-to-seed
spread measured for the recipe (README results table), so a failure means
the recipe got worse, not an unlucky seed.
"""

import pytest

from experiments.configs import shakespeare_char_cpu
from lm_jax.train import loop


@pytest.mark.slow
def test_nanogpt_cpu_recipe_reaches_its_loss(shared_data_dir, tmp_path):
  """nanoGPT's CPU recipe: whole-split val loss 1.89-1.92 over seeds 0-7
  (seed 0, this run: 1.9130; README). A guard against regressions, not
  issue 2's target of 1.90."""
  config = shakespeare_char_cpu.get_config()
  config.data_dir = shared_data_dir
  config.cache_dir = str(tmp_path / 'cache')

  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))

  assert results['eval_loss'] < 1.93
