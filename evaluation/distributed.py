"""Distributed evaluation without double counting: gather per-rank results and put them back in dataset order.

A `DistributedSampler` pads the index list to a multiple of the world size by repeating its first indices, so the
ranks together see some samples twice. Every rank therefore gathers its outputs with the dataset indices they
belong to, and `merge_by_index` keeps exactly one row per dataset index (the padding duplicates are dropped).
"""

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def merge_by_index(indices: Sequence[torch.Tensor], values: Sequence[torch.Tensor], dataset_len: int) -> torch.Tensor:
    """(dataset_len, ...) rows in dataset order from per-rank (indices, values); duplicates of an index are dropped."""
    all_indices, all_values = torch.cat(list(indices)).long(), torch.cat(list(values))
    if len(all_indices) != len(all_values):
        raise ValueError(f"{len(all_indices)} indices for {len(all_values)} value rows")
    if len(all_indices) and (all_indices.min() < 0 or all_indices.max() >= dataset_len):
        raise ValueError(f"indices must lie in 0..{dataset_len - 1}")
    out = all_values.new_zeros((dataset_len, *all_values.shape[1:]))
    seen = torch.zeros(dataset_len, dtype=torch.bool)
    # the first occurrence wins: later ones are the sampler's padding repeats (equal values for a deterministic model)
    first = torch.ones(len(all_indices), dtype=torch.bool)
    order = torch.argsort(all_indices, stable=True)
    sorted_indices = all_indices[order]
    first[order[1:]] = sorted_indices[1:] != sorted_indices[:-1]
    out[all_indices[first]] = all_values[first]
    seen[all_indices[first]] = True
    if not seen.all():
        raise ValueError(f"dataset indices {(~seen).nonzero().squeeze(1)[:10].tolist()} were computed by no rank")
    return out


def gather_in_dataset_order(local_indices: torch.Tensor, local_values: torch.Tensor, dataset_len: int) -> torch.Tensor:
    """All ranks' rows in dataset order (every rank gets the result); without a process group, just this rank's."""
    if not (dist.is_available() and dist.is_initialized()):
        return merge_by_index([local_indices], [local_values], dataset_len)
    world = dist.get_world_size()
    # DistributedSampler gives every rank the same count, so plain all_gather (equal shapes) works.
    gathered_indices = [torch.empty_like(local_indices) for _ in range(world)]
    gathered_values = [torch.empty_like(local_values) for _ in range(world)]
    dist.all_gather(gathered_indices, local_indices)
    dist.all_gather(gathered_values, local_values)
    return merge_by_index(gathered_indices, gathered_values, dataset_len)


def distributed_map(
    encode: Callable[[list[int]], torch.Tensor], dataset_len: int, batch_size: int = 128, shuffle: bool = False
) -> torch.Tensor:
    """`encode(list of dataset indices) -> rows` sharded over the ranks by a DistributedSampler, gathered in order."""
    if dist.is_available() and dist.is_initialized():
        sampler = DistributedSampler(range(dataset_len), shuffle=shuffle, drop_last=False)
        local = list(sampler)
    else:
        local = list(range(dataset_len))
    rows = [encode(local[s : s + batch_size]) for s in range(0, len(local), batch_size)]
    return gather_in_dataset_order(torch.tensor(local, dtype=torch.long), torch.cat(rows), dataset_len)
