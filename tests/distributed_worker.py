"""Run under torchrun (gloo, CPU): each process takes its slice of one global batch, runs two pre-training steps'
forward/backward, full and locked-text, and rank 0 writes the process-mean losses and gradients for
tests/test_distributed.py."""

import sys

import torch
import torch.distributed as dist

from wvlp.modeling import WVLPConfig, WVLPForPreTraining

from tests.helpers import VIT, locked_text_batch, tiny_batch, tiny_config_kwargs

GLOBAL_BATCH = 8


def build_model() -> WVLPForPreTraining:
    """The same tiny model (ViT tower: LayerNorm, no batch statistics) in every process."""
    torch.manual_seed(0)
    config = WVLPConfig(**tiny_config_kwargs(vision_config=VIT, imc_loss_weight=1.0, queue_size=32))
    return WVLPForPreTraining(config).train()


def run_steps(model: WVLPForPreTraining, batch: dict, local: slice) -> list[dict]:
    """Two forward/backward passes (the second sees a filled queue); per step the losses and gradients."""
    results = []
    for step in range(2):
        model.zero_grad()
        torch.manual_seed(100 + step)  # the ITM negative sampler draws on rank 0 (and in the single process)
        out = model(**{k: v[local] for k, v in batch.items()})
        out.loss.backward()
        terms = {k: v.detach().clone() for k, v in out.items() if k.endswith("loss")}
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append({"losses": terms, "grads": grads})
        with torch.no_grad():
            model.momentum_update()
    return results


def global_batches() -> dict[str, dict]:
    """The global batch of a full step and of a locked-text step (cached pooled text instead of tokens)."""
    batch = tiny_batch(GLOBAL_BATCH, seed=3)
    return {"full": batch, "locked-text": locked_text_batch(batch, seed=4)}


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    per = GLOBAL_BATCH // world
    local = slice(rank * per, (rank + 1) * per)
    results = {kind: run_steps(build_model(), batch, local) for kind, batch in global_batches().items()}
    for result in results["full"] + results["locked-text"]:  # what DDP does: average gradients (and the losses)
        for tensor in list(result["losses"].values()) + list(result["grads"].values()):
            dist.all_reduce(tensor)
            tensor /= world
    if rank == 0:
        torch.save(results, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
