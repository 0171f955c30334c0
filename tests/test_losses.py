"""Loss functions against plain-loop references written here."""

import math

import torch

from wvlp.modeling import WVLPForPreTraining
from wvlp.modeling.losses import contrastive_loss, positive_targets, sample_hard_negatives

from tests.helpers import tiny_batch


def loop_contrastive(rows, columns, row_cats, col_cats, col_valid, temperature, teacher_rows=None, alpha=0.0):
    """Category-aware soft-target cross-entropy, one scalar at a time."""
    total = 0.0
    for i in range(len(rows)):

        def log_softmax(vectors):
            scores = [
                sum(a * b for a, b in zip(vectors[i], columns[j])) / temperature if col_valid[j] else None
                for j in range(len(columns))
            ]
            top = max(s for s in scores if s is not None)
            norm = top + math.log(sum(math.exp(s - top) for s in scores if s is not None))
            return [s - norm if s is not None else None for s in scores]

        student = log_softmax(rows)
        positives = [1.0 if col_valid[j] and col_cats[j] == row_cats[i] else 0.0 for j in range(len(columns))]
        hard = [p / sum(positives) for p in positives]
        targets = hard
        if teacher_rows is not None:
            teacher = log_softmax(teacher_rows)
            targets = [
                alpha * (math.exp(t) if t is not None else 0.0) + (1 - alpha) * h for t, h in zip(teacher, hard)
            ]
        total -= sum(t * s for t, s in zip(targets, student) if t > 0)
    return total / len(rows)


def test_contrastive_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    teacher = torch.nn.functional.normalize(rows + 0.1 * torch.randn(5, 8, generator=g), dim=1)
    columns = torch.nn.functional.normalize(torch.randn(9, 8, generator=g), dim=1)
    row_cats = torch.tensor([0, 1, 1, 2, 0])
    col_cats = torch.tensor([0, 1, 1, 2, 0, 2, 1, -1, -1])  # last two: empty queue slots
    col_valid = col_cats >= 0
    temperature = torch.tensor(0.07)
    targets = positive_targets(row_cats, col_cats, col_valid)
    for alpha in (0.0, 0.4):
        got = contrastive_loss(
            rows, columns, targets, temperature, column_valid=col_valid, teacher_rows=teacher, alpha=alpha
        )
        want = loop_contrastive(
            rows.tolist(),
            columns.tolist(),
            row_cats.tolist(),
            col_cats.tolist(),
            col_valid.tolist(),
            0.07,
            teacher.tolist() if alpha else None,
            alpha,
        )
        assert abs(got.item() - want) < 1e-4, (alpha, got.item(), want)


def test_same_category_pairs_are_positives_not_negatives():
    targets = positive_targets(torch.tensor([3, 5]), torch.tensor([3, 3, 5, 7]))
    assert torch.equal(targets, torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_model_itc_equals_loop_reference(tiny_config):
    tiny_config.pretraining_config.imc_loss_weight = 0.0
    model = WVLPForPreTraining(tiny_config).eval()
    batch = tiny_batch(knowledge=0)
    with torch.no_grad():
        model.momentum_update(momentum=0.5)  # teacher == student would hide a student/teacher swap
        model.wvlp.vision_proj.weight.add_(0.05)
        out = model(**batch, alpha=0.4)
        img = model.wvlp.get_image_features(batch["pixel_values"]).pooler_output
        txt = model.wvlp.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
        img_m = model.teacher.get_image_features(batch["pixel_values"]).pooler_output
        txt_m = model.teacher.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
    cats = batch["category_ids"].tolist()
    # An empty queue: its slots are masked out, so the reference sees only the batch's columns.
    t = model.wvlp.temperature().item()
    i2t = loop_contrastive(img.tolist(), txt_m.tolist(), cats, cats, [True] * 6, t, img_m.tolist(), 0.4)
    t2i = loop_contrastive(txt.tolist(), img_m.tolist(), cats, cats, [True] * 6, t, txt_m.tolist(), 0.4)
    assert abs(out.itc_loss.item() - (i2t + t2i) / 2) < 1e-4


def test_hard_negatives_never_share_the_category():
    g = torch.Generator().manual_seed(1)
    for trial in range(200):
        n = int(torch.randint(2, 12, (1,), generator=g))
        cats = torch.randint(0, int(torch.randint(1, 4, (1,), generator=g)), (n,), generator=g)
        similarity = torch.randn(n, n, generator=g) * 10
        indices, valid = sample_hard_negatives(similarity, cats, generator=g)
        for i in range(n):
            others = (cats != cats[i]).any().item()
            assert valid[i].item() == others
            if others:
                assert cats[indices[i]] != cats[i], (trial, i)


def test_hard_negatives_prefer_the_most_similar_other_category():
    cats = torch.tensor([0, 0, 1, 2])
    similarity = torch.zeros(4, 4)
    similarity[:, 3] = 30.0  # the hardest negative for rows 0-2
    similarity[3, 0] = 30.0
    indices, _ = sample_hard_negatives(similarity, cats, generator=torch.Generator().manual_seed(0))
    assert indices.tolist() == [3, 3, 3, 0]
