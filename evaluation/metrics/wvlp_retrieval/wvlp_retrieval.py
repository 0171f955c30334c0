"""`evaluate` metric module of WVLP: retrieval (R@1/5/10, RSUM, ranks) and zero-shot (top-1/top-5, per class).

Load it from this folder, offline (no Hub download):

    metric = evaluate.load("evaluation/metrics/wvlp_retrieval", "retrieval")
    metric.compute(predictions=image_to_text_scores, references=image_groups, text_groups=text_groups, itm_k=0)
    metric = evaluate.load("evaluation/metrics/wvlp_retrieval", "zero_shot")
    metric.compute(predictions=logits, references=labels, classnames=[...])

It is a thin wrapper: the numbers come from `wvlp.evaluation.retrieval` and `wvlp.evaluation.zero_shot`, the functions that
`wvlp evaluate` uses and the test suite checks (the `wvlp` package must be importable).
"""

import datasets
import evaluate
import numpy as np
import torch

from wvlp.evaluation.retrieval import rank_scores, rerank_top_k, retrieval_metrics
from wvlp.evaluation.zero_shot import zero_shot_metrics

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
retrieval:
    predictions: one row per image, its similarity to every text (an images x texts ITC matrix).
    references: the group id of each image (its index for caption retrieval, its class for class-level).
    text_groups: the group id of each text; a text is a correct answer for the images of its group.
    itm_scores (optional): an images x texts matrix of ITM scores, used to re-rank the top `itm_k` of each query.
    itm_k (optional, default 0): ITM re-ranking depth.
    Returns {"itm_k", "itc": {...}, "itm": {...}} with i2t/t2i R@1/5/10 (fractions), rsum, mean/median rank (1-based).
zero_shot:
    predictions: one row of class logits per image. references: the true label of each image.
    classnames (optional): names for per-class accuracy. holdout (optional): label ids held out in pre-training.
    Returns top1, top5, per_class, seen_top1, unseen_top1, harmonic.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WvlpRetrieval(evaluate.Metric):
    """Retrieval and zero-shot metrics of WVLP (config "retrieval" or "zero_shot")."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in ("retrieval", "zero_shot", "default"):
            raise ValueError(f"config {self.config_name!r}: choose 'retrieval' or 'zero_shot'")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self, predictions, references, text_groups=None, itm_scores=None, itm_k: int = 0, classnames=None, holdout=None
    ) -> dict:
        scores = torch.as_tensor(np.asarray(predictions, dtype=np.float32))
        if self.config_name == "zero_shot":
            names = classnames or [str(i) for i in range(scores.shape[1])]
            return zero_shot_metrics(scores, np.asarray(references), names, set(holdout or ()))[0]
        if text_groups is None:
            raise ValueError("retrieval needs text_groups (the group id of every text column)")
        image_groups = np.asarray(references, np.int64)
        k = max(10, itm_k)
        i2t = rank_scores(scores, image_groups, text_groups, k=k)
        t2i = rank_scores(scores.T, text_groups, image_groups, k=k)
        out = {"itm_k": itm_k, "itc": retrieval_metrics(i2t.ranks, t2i.ranks)}
        if itm_k:
            if itm_scores is None:
                raise ValueError(f"itm_k={itm_k} needs itm_scores (an images x texts matrix)")
            itm = np.asarray(itm_scores, dtype=np.float64)
            i2t_itm = rerank_top_k(
                i2t, image_groups, text_groups, min(itm_k, i2t.topk.shape[1]), lambda q, g: itm[q, g]
            )
            t2i_itm = rerank_top_k(
                t2i, text_groups, image_groups, min(itm_k, t2i.topk.shape[1]), lambda q, g: itm[g, q]
            )
            out["itm"] = retrieval_metrics(i2t_itm.ranks, t2i_itm.ranks)
        return out
