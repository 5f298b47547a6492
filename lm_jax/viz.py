"""Pictures: attention heatmaps (the alignment figures of Bahdanau et al.
2015, one panel per map), drawn with matplotlib's Agg backend so no display
is needed."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def attention_heatmap(weights: np.ndarray, source_labels: Sequence[str],
                      target_labels: Sequence[str], path: str,
                      titles: Optional[Sequence[str]] = None,
                      columns: int = 0, title: str = '') -> str:
  """Writes a PNG of attention weights, one heatmap per map.

  Row i of a map is the attention over the source while the decoder
  produces target token i, so a monotone translation shows a diagonal.

  Args:
    weights: `[maps, target_length, source_length]` (or one map,
      `[target_length, source_length]`), rows summing to 1.
    source_labels: `source_length` tick labels (x axis).
    target_labels: `target_length` tick labels (y axis).
    path: the PNG to write.
    titles: one title per map.
    columns: panels per row (0: up to 4 for many maps, else all in one).
    title: the figure's title.

  Returns:
    `path`.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  weights = np.asarray(weights, np.float32)
  if weights.ndim == 2:
    weights = weights[None]
  maps, rows, cols = weights.shape
  if (rows, cols) != (len(target_labels), len(source_labels)):
    raise ValueError(f'weights of {rows} x {cols} against '
                     f'{len(target_labels)} target and {len(source_labels)} '
                     'source labels')
  columns = columns or (maps if maps <= 4 else min(maps, 8))
  grid_rows = math.ceil(maps / columns)
  cell = 0.28  # inches per token
  width = max(cols * cell + 1.2, 2.5)
  height = max(rows * cell + 1.2, 2.0)
  fig, axes = plt.subplots(grid_rows, columns,
                           figsize=(width * columns, height * grid_rows),
                           squeeze=False, layout='constrained')
  for index, ax in enumerate(axes.flat):
    if index >= maps:
      ax.axis('off')
      continue
    image = ax.imshow(weights[index], cmap='gray_r', vmin=0.0, vmax=1.0,
                      aspect='auto')
    ax.set_xticks(range(cols))
    ax.set_xticklabels(source_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(rows))
    # Target tokens label the first panel of each row only.
    ax.set_yticklabels(target_labels if index % columns == 0 else [],
                       fontsize=8)
    if titles:
      ax.set_title(titles[index], fontsize=9)
  fig.colorbar(image, ax=axes, shrink=0.6)
  if title:
    fig.suptitle(title)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return path
