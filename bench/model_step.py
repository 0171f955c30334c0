"""One optimisation step of WVLPForPreTraining (all default losses) vs a plain ITC-only dual-encoder step.

Default size (EfficientNet-Lite0 + MiniLM-L6 shapes, random weights: speed does not depend on the values), CPU,
batch 32; median of 10 timed steps after 2 warm-up steps, both models measured in this one run.
Usage: python bench/model_step.py [--batch-size 32] [--image-size 96] [--length 32] [--steps 10]
"""

import argparse
import statistics
import time

import torch

from wvlp.modeling import WVLPConfig, WVLPForPreTraining


def make_batch(batch_size: int, image_size: int, length: int, knowledge: int) -> dict:
    """A synthetic batch with every input the default objective uses (10 categories, 15% MLM masking)."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 30000, (batch_size, length), generator=g)
    masked = torch.rand(batch_size, length, generator=g) < 0.15
    return dict(
        pixel_values=torch.randn(batch_size, 3, image_size, image_size, generator=g),
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        category_ids=torch.arange(batch_size) % 10,
        mlm_input_ids=input_ids.masked_fill(masked, 103),
        mlm_labels=input_ids.masked_fill(~masked, -100),
        knowledge_input_ids=torch.randint(1000, 30000, (batch_size, knowledge, length), generator=g),
        knowledge_attention_mask=torch.ones(batch_size, knowledge, length, dtype=torch.long),
    )


def time_steps(step, steps: int) -> float:
    """Median seconds of `steps` calls after two warm-up calls."""
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--knowledge", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as train/run.py: denormal activations make CPU steps erratically slow
    torch.manual_seed(0)
    config = WVLPConfig(vision_config=dict(image_size=args.image_size))
    model = WVLPForPreTraining(config).train()
    batch = make_batch(args.batch_size, args.image_size, args.length, args.knowledge)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def full_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
        model.momentum_update()

    student = model.wvlp

    def itc_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        student(
            pixel_values=batch["pixel_values"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            category_ids=batch["category_ids"],
            return_loss=True,
        ).loss.backward()
        optimizer.step()

    full = time_steps(full_step, args.steps)
    itc = time_steps(itc_step, args.steps)
    n = args.batch_size
    print(
        f"threads={torch.get_num_threads()} batch={n} image={args.image_size}px text={args.length} tokens "
        f"knowledge={args.knowledge}/description"
    )
    print(f"full pre-training step (ITC+ITM+MLM+knowledge, EMA, queue): {full:.3f} s  {n / full:.1f} samples/s")
    print(f"plain ITC-only dual-encoder step:                           {itc:.3f} s  {n / itc:.1f} samples/s")
    print(f"ratio full/ITC-only time: {full / itc:.2f}x  (throughput ratio {itc / full:.2f})")


if __name__ == "__main__":
    main()
