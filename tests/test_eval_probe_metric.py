"""Linear probe, the `evaluate` metric module (offline, same numbers) and distributed de-duplication."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from wvlp.evaluation.distributed import merge_by_index
from wvlp.evaluation.linear_probe import linear_probe
from wvlp.evaluation.retrieval import rank_scores, rerank_top_k, retrieval_metrics
from wvlp.evaluation.zero_shot import zero_shot_metrics

METRIC_DIR = Path(__file__).resolve().parent.parent / "evaluation" / "metrics" / "wvlp_retrieval"


def test_linear_probe_beats_chance_on_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(5, 12, generator=g)
    train_y, test_y = torch.arange(400) % 5, torch.arange(100) % 5
    train_x = centres[train_y] + torch.randn(400, 12, generator=g)
    test_x = centres[test_y] + torch.randn(100, 12, generator=g)
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert result["train_samples"] == 400 and result["top1"] > 0.9  # chance is 0.2
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(train_x, train_y[:3], test_x, test_y)


def test_evaluate_module_loads_offline_and_returns_the_same_numbers():
    import evaluate

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest before any hub import: a download would fail
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (6, 14)).astype(float)  # ties
    itm = rng.random((6, 14))
    text_groups = [0, 0, 1, 2, 2, 2, 3, 3, 4, 5, 5, 1, 4, 0]
    out = evaluate.load(str(METRIC_DIR), "retrieval").compute(
        predictions=scores, references=list(range(6)), text_groups=text_groups, itm_k=4, itm_scores=itm
    )
    i2t = rank_scores(scores, np.arange(6), text_groups, k=10)
    t2i = rank_scores(scores.T, text_groups, np.arange(6), k=10)
    assert out["itc"] == pytest.approx(retrieval_metrics(i2t.ranks, t2i.ranks))
    i2t_itm = rerank_top_k(i2t, np.arange(6), text_groups, 4, lambda q, g: itm[q, g])
    t2i_itm = rerank_top_k(t2i, text_groups, np.arange(6), 4, lambda q, g: itm[g, q])
    assert out["itm"] == pytest.approx(retrieval_metrics(i2t_itm.ranks, t2i_itm.ranks))
    logits = rng.random((8, 3)).astype(np.float32)
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    zero_shot = evaluate.load(str(METRIC_DIR), "zero_shot").compute(
        predictions=logits, references=labels, classnames=["a", "b", "c"], holdout=[2]
    )
    expected, _ = zero_shot_metrics(torch.from_numpy(logits), labels, ["a", "b", "c"], {2})
    assert zero_shot.pop("per_class") == pytest.approx(expected.pop("per_class"))
    assert zero_shot == pytest.approx(expected)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("length,world", [(10, 3), (7, 4), (2, 3), (8, 2)])
def test_padding_duplicates_of_a_distributed_sampler_are_not_counted(length, world, shuffle):
    per_rank = [
        list(DistributedSampler(range(length), num_replicas=world, rank=r, shuffle=shuffle, seed=1))
        for r in range(world)
    ]
    assert sum(map(len, per_rank)) >= length  # the sampler pads with repeats
    indices = [torch.tensor(ix) for ix in per_rank]
    values = [10.0 * torch.tensor(ix, dtype=torch.float32)[:, None] for ix in per_rank]  # "model output" per sample
    merged = merge_by_index(indices, values, length)
    assert merged.squeeze(1).tolist() == [10.0 * i for i in range(length)]
    with pytest.raises(ValueError, match="computed by no rank"):
        merge_by_index(indices[:1], values[:1], length)
