"""Pre-training losses of WVLP, open_clip style: small pure functions, one per term, each returning a tensor.

Distributed convention: every term is computed by each process for its *local* rows against *global* columns
(features gathered from all processes), and normalised by the *global* number of rows. The mean over processes of
the per-process losses (what DDP's gradient averaging optimises) then equals the loss of one process holding the
global batch, and so do the gradients.
"""

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F


def world_info() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(tensor: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenates `tensor` from all processes along dim 0 (rank order); `with_grad` keeps autograd through the gather."""
    _, world_size = world_info()
    if world_size == 1:
        return tensor
    if with_grad:
        # The backward of this all_gather sums the gradients that every process sends to each slice.
        return torch.cat(dist_fn.all_gather(tensor), dim=0)
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


def global_mean(loss_sum: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """Turns a local sum over `count` items into this process's share of the global mean (see the module docstring)."""
    _, world_size = world_info()
    count = torch.as_tensor(count, dtype=torch.float32, device=loss_sum.device)
    if world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return loss_sum * world_size / count.clamp(min=1.0)


def positive_targets(
    row_keys: torch.Tensor, col_keys: torch.Tensor, col_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-positive targets: column j is a positive of row i when their keys match; each row sums to 1 (or 0 if none)."""
    positives = (row_keys[:, None] == col_keys[None, :]).float()
    if col_valid is not None:
        positives = positives * col_valid[None, :].float()
    return positives / positives.sum(dim=1, keepdim=True).clamp(min=1.0)


def soft_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over rows of the cross-entropy between soft `targets` and softmax(`logits`)."""
    log_probs = F.log_softmax(logits, dim=1)
    return -(targets * log_probs.masked_fill(targets == 0, 0.0)).sum()


def contrastive_loss(
    rows: torch.Tensor,
    columns: torch.Tensor,
    hard_targets: torch.Tensor,
    temperature: torch.Tensor,
    *,
    column_valid: torch.Tensor | None = None,
    teacher_rows: torch.Tensor | None = None,
    alpha: float = 0.0,
    row_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """One direction of a (momentum-distilled) contrastive loss, as this process's share of the global mean.

    rows: (n, d) student embeddings of local items; columns: (m, d) gathered teacher embeddings (+ queue);
    hard_targets: (n, m) rows summing to 1; column_valid: (m,) False for columns to ignore (empty queue slots);
    teacher_rows: (n, d) teacher embeddings of the rows, whose softmax over the columns is mixed into the targets with
    weight `alpha` (ALBEF momentum distillation); row_valid: (n,) False for rows to leave out (padding).
    Similarities and the softmax run in fp32 even under autocast.
    """
    rows, columns = rows.float(), columns.float()
    logits = rows @ columns.t() / temperature
    targets = hard_targets
    if column_valid is not None:
        logits = logits.masked_fill(~column_valid[None, :], float("-inf"))
    if teacher_rows is not None and alpha > 0:
        with torch.no_grad():
            teacher_logits = teacher_rows.float() @ columns.t() / temperature
            if column_valid is not None:
                teacher_logits = teacher_logits.masked_fill(~column_valid[None, :], float("-inf"))
            targets = alpha * F.softmax(teacher_logits, dim=1) + (1 - alpha) * hard_targets
    if row_valid is not None:
        logits, targets = logits[row_valid], targets[row_valid]
    return global_mean(soft_cross_entropy_sum(logits, targets), logits.shape[0])


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temperature: torch.Tensor,
    *,
    category_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric in-batch ITC of a plain dual encoder (no teacher, no queue); category-aware when ids are given."""
    image_embeds_global = gather_features(image_embeds, with_grad=True)
    text_embeds_global = gather_features(text_embeds, with_grad=True)
    rank, _ = world_info()
    n = image_embeds.shape[0]
    local = slice(rank * n, rank * n + n)
    if category_ids is None:
        keys = torch.arange(image_embeds_global.shape[0], device=image_embeds.device)
    else:
        keys = gather_features(category_ids)
    targets = positive_targets(keys[local], keys)
    # All processes hold the global similarity matrix; each contributes its rows, so gradients flow through the gather.
    return (
        contrastive_loss(image_embeds_global[local], text_embeds_global, targets, temperature)
        + contrastive_loss(text_embeds_global[local], image_embeds_global, targets, temperature)
    ) / 2


def itm_loss(itm_logits: torch.Tensor, itm_labels: torch.Tensor, *, valid: torch.Tensor) -> torch.Tensor:
    """Image-text matching cross-entropy over the valid pairs, as this process's share of the global mean."""
    losses = F.cross_entropy(itm_logits.float(), itm_labels, reduction="none")
    return global_mean((losses * valid).sum(), valid.sum())


def mlm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> torch.Tensor:
    """Masked-LM cross-entropy at the masked positions (logits: (n, V), labels: (n,)), soft targets from the teacher."""
    targets = F.one_hot(labels, logits.shape[-1]).float()
    if teacher_logits is not None and alpha > 0:
        targets = alpha * F.softmax(teacher_logits.float(), dim=-1) + (1 - alpha) * targets
    return global_mean(soft_cross_entropy_sum(logits.float(), targets), labels.numel())


def sample_hard_negatives(
    similarity: torch.Tensor, category_ids: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row, draws a column with probability softmax(similarity) over columns of *another* category.

    Returns (indices, valid): rows whose batch holds no other category get valid=False. Sampled once on rank 0 and
    broadcast, so every process (and a single process with the global batch) uses the same negatives.
    """
    different = category_ids[:, None] != category_ids[None, :]
    weights = F.softmax(similarity.float(), dim=1) * different
    valid = weights.sum(dim=1) > 0
    weights = torch.where(valid[:, None], weights + 1e-12 * different, torch.ones_like(weights))
    indices = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    _, world_size = world_info()
    if world_size > 1:
        dist.broadcast(indices, src=0)
    return indices, valid
