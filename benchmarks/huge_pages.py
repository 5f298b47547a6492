"""Benchmarks run with the allocator setting `./launch.sh` exports.

`./launch.sh` sets `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` so that glibc
serves large buffers (BERT's embedding gradient, a 10k-word softmax's
logits) from transparent huge pages instead of faulting them in 4 KB at a
time on every step. Benchmark scripts are also run directly with a venv's
python; those whose buffers are that large (the GPT, LSTM and BERT
comparisons with PyTorch) call `rerun_with_huge_pages()` first, so that both
sides are timed under the setting runs get.
Measured on a 2-core CPU without it: ptb_lstm_small's step 116.5 ms against
90 ms (lm_jax), 68.6 against 58.2 ms (PyTorch); see RESULTS.md.
"""

import os
import sys


def rerun_with_huge_pages() -> None:
  """Re-executes this script with the setting, unless GLIBC_TUNABLES is set
  already (glibc reads it only when a process starts)."""
  if 'GLIBC_TUNABLES' not in os.environ:
    os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.hugetlb=1'
    os.execv(sys.executable, [sys.executable] + sys.argv)
