"""BLEU (Papineni et al. 2002) as sacreBLEU computes it (Post 2018).

Translations are scored detokenised, against the raw reference sentences,
with sacreBLEU's own '13a' tokenisation (the WMT `mteval-v13a` rules) and
no lower-casing, so figures are comparable across papers and tokenisers.
A translation task reports the test split's corpus BLEU as `eval_bleu`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class BleuResult:
  """Corpus BLEU and the figures it is made of.

  Attributes:
    score: BLEU, 0-100.
    precisions: modified 1- to 4-gram precisions, percent.
    brevity_penalty: exp(1 - ref_len / hyp_len) when shorter, else 1.
    hyp_len: hypothesis tokens (13a).
    ref_len: reference tokens (13a).
    signature: sacreBLEU's signature of the settings, for reports.
  """

  score: float
  precisions: tuple[float, ...]
  brevity_penalty: float
  hyp_len: int
  ref_len: int
  signature: str


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str],
                tokenize: str = '13a') -> BleuResult:
  """Corpus BLEU of detokenised `hypotheses` against one reference each.

  Args:
    hypotheses: system outputs, one per sentence, detokenised.
    references: the raw reference sentences, aligned with `hypotheses`.
    tokenize: sacreBLEU's tokeniser ('13a' is the WMT standard).
  """
  from sacrebleu.metrics import BLEU  # pylint: disable=g-import-not-at-top
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses against '
                     f'{len(references)} references')
  metric = BLEU(tokenize=tokenize)
  result = metric.corpus_score(list(hypotheses), [list(references)])
  return BleuResult(score=float(result.score),
                    precisions=tuple(float(p) for p in result.precisions),
                    brevity_penalty=float(result.bp),
                    hyp_len=int(result.sys_len), ref_len=int(result.ref_len),
                    signature=str(metric.get_signature()))
