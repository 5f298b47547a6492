"""Where the repository and its presets are, and the smallest GPT the
tests launch on the command line."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'experiments', 'configs')
CPU_PRESET = os.path.join(CONFIG_DIR, 'shakespeare_char_cpu.py')
# shakespeare_char_cpu shrunk to a 1-layer, 32-wide GPT reading batches of 4
# windows of 16 characters: seconds to train a few steps.
TINY_GPT = ['--config.num_layers=1', '--config.embed_dim=32',
            '--config.num_heads=2', '--config.block_size=16',
            '--config.batch_size=4']
